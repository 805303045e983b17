"""duet.sampling against direct numpy computations of each filter."""
import math

import numpy as np
import pytest

from duet.sampling import Sampler, draw

# Probabilities 0.5, 0.3, 0.15, 0.05 in a shuffled order, as logits.
KNOWN_PROBS = np.array([0.15, 0.5, 0.05, 0.3])
KNOWN_LOGITS = np.log(KNOWN_PROBS) + 3.0


def support(probs):
    return set(np.flatnonzero(probs).tolist())


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def random_logits(seed, n=200):
    return np.random.default_rng(seed).standard_normal(n) * 2.5


def test_greedy_is_argmax():
    for seed in range(10):
        logits = random_logits(seed)
        sampler = Sampler(temperature=0, top_k=5, top_p=0.5, seed=seed)
        assert sampler.sample(logits) == int(np.argmax(logits))
        np.testing.assert_array_equal(sampler.probabilities(logits), np.eye(logits.size)[np.argmax(logits)])


def test_greedy_ties_take_lowest_index():
    logits = np.array([0.0, 2.0, -1.0, 2.0, 2.0])
    assert Sampler(temperature=0).sample(logits) == 1


def test_plain_sampling_distribution_is_softmax_over_temperature():
    logits = random_logits(1)
    for temperature in [0.3, 1.0, 2.0]:
        np.testing.assert_allclose(Sampler(temperature=temperature).probabilities(logits), softmax(logits / temperature))


def test_seeded_runs_reproduce():
    logits = random_logits(2)
    first = Sampler(temperature=0.8, top_p=0.95, seed=7)
    a = [first.sample(logits) for _ in range(50)]
    again = Sampler(temperature=0.8, top_p=0.95, seed=7)
    assert a == [again.sample(logits) for _ in range(50)]
    other = Sampler(temperature=0.8, top_p=0.95, seed=8)
    assert a != [other.sample(logits) for _ in range(50)]


@pytest.mark.parametrize("k", [1, 3, 17, 199])
def test_top_k_keeps_the_k_largest(k):
    logits = random_logits(k)
    probs = Sampler(top_k=k).probabilities(logits)
    assert support(probs) == set(np.argsort(-logits)[:k].tolist())
    kept = list(support(probs))
    np.testing.assert_allclose(probs[kept], softmax(logits[kept]))


def test_top_k_ties_keep_lower_ids():
    logits = np.array([1.0, 3.0, 2.0, 3.0, 3.0])
    assert support(Sampler(top_k=2).probabilities(logits)) == {1, 3}


@pytest.mark.parametrize("top_p,expected", [(0.4, {1}), (0.7, {1, 3}), (0.85, {1, 3, 0}), (0.99, {0, 1, 2, 3})])
def test_top_p_keeps_smallest_set_reaching_p(top_p, expected):
    assert support(Sampler(top_p=top_p).probabilities(KNOWN_LOGITS)) == expected


@pytest.mark.parametrize("top_p", [0.1, 0.5, 0.9, 0.97])
def test_top_p_against_reference(top_p):
    logits = random_logits(3)
    probs = softmax(logits)
    order = np.argsort(-probs)
    cumulative = np.cumsum(probs[order])
    n_kept = int(np.argmax(cumulative >= top_p)) + 1
    assert support(Sampler(top_p=top_p).probabilities(logits)) == set(order[:n_kept].tolist())


@pytest.mark.parametrize("min_p,expected", [(0.05, {0, 1, 2, 3}), (0.2, {0, 1, 3}), (0.5, {1, 3}), (0.9, {1})])
def test_min_p_keeps_tokens_near_the_top(min_p, expected):
    assert support(Sampler(min_p=min_p).probabilities(KNOWN_LOGITS)) == expected


def test_filters_run_before_temperature():
    """The support is chosen at temperature 1; the temperature only reshapes it."""
    logits = random_logits(4)
    for kwargs in [dict(top_p=0.6), dict(min_p=0.1), dict(top_k=10, top_p=0.9, min_p=0.05)]:
        cold = Sampler(temperature=1.0, **kwargs).probabilities(logits)
        hot = Sampler(temperature=5.0, **kwargs).probabilities(logits)
        kept = sorted(support(cold))
        assert support(hot) == set(kept)
        np.testing.assert_allclose(hot[kept], softmax(logits[kept] / 5.0))


def test_filters_chain_in_order():
    """top-p sees only what top-k kept, min-p only what top-p kept."""
    logits = random_logits(5)
    chained = support(Sampler(top_k=20, top_p=0.5, min_p=0.3).probabilities(logits))
    after_k = np.argsort(-logits)[:20]
    p = softmax(logits[after_k])
    n_kept = int(np.argmax(np.cumsum(p) >= 0.5)) + 1
    after_p = after_k[:n_kept]
    q = softmax(logits[after_p])
    assert chained == set(after_p[q >= 0.3 * q.max()].tolist())


def test_minus_inf_logits_are_never_chosen():
    logits = np.array([-np.inf, 0.0, -np.inf, 0.5, -np.inf])
    sampler = Sampler(temperature=1.5, seed=0)
    assert support(sampler.probabilities(logits)) == {1, 3}
    assert {sampler.sample(logits) for _ in range(200)} == {1, 3}


def chi2_critical(dof, z=3.09):
    """Wilson-Hilferty approximation of the chi-square quantile at z (3.09: p = 0.999)."""
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


@pytest.mark.parametrize("kwargs", [dict(temperature=1.0), dict(temperature=0.7, top_k=8), dict(top_p=0.9, min_p=0.02)])
def test_empirical_frequencies_match_probabilities(kwargs):
    logits = random_logits(6, n=30)
    sampler = Sampler(seed=123, **kwargs)
    probs = sampler.probabilities(logits)
    n_draws = 40000
    counts = np.bincount([sampler.sample(logits) for _ in range(n_draws)], minlength=logits.size)
    assert np.all(counts[probs == 0] == 0)
    kept = probs > 0
    expected = probs[kept] * n_draws
    statistic = float(((counts[kept] - expected) ** 2 / expected).sum())
    assert statistic < chi2_critical(int(kept.sum()) - 1)


def test_draw_never_picks_zero_mass_tokens_even_at_u_near_one():
    class AlmostOne:
        def random(self):
            return np.nextafter(1.0, 0.0)

    probs = np.array([0.2, 0.8, 0.0, 0.0])
    assert draw(probs, AlmostOne()) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(temperature=-0.1),
        dict(temperature=float("nan")),
        dict(temperature=float("inf")),
        dict(top_k=-1),
        dict(top_k=2.5),
        dict(top_p=0.0),
        dict(top_p=1.1),
        dict(min_p=-0.1),
        dict(min_p=1.5),
    ],
)
def test_bad_parameters_raise(kwargs):
    with pytest.raises(ValueError):
        Sampler(**kwargs)


@pytest.mark.parametrize(
    "logits", [np.zeros((2, 3)), np.zeros(0), np.array([0.0, np.nan]), np.array([0.0, np.inf]), np.full(3, -np.inf)]
)
def test_bad_logits_raise(logits):
    with pytest.raises(ValueError):
        Sampler(seed=0).sample(logits)
