"""The fallback policy: LLMCad's alpha rule and the cost floor from measured rounds."""
from __future__ import annotations

import pytest

from duet.policy import FallbackPolicy


def test_alpha_halves_after_a_wholly_right_branch_and_becomes_the_wrong_fraction_otherwise():
    policy = FallbackPolicy(alpha=0.2)
    policy.update(5, 5)
    assert policy.alpha == pytest.approx(0.1)
    policy.update(1, 4)
    assert policy.alpha == pytest.approx(0.75)
    policy.update(0, 0)  # nothing drafted: nothing learnt
    assert policy.alpha == pytest.approx(0.75)


def test_cost_floor_is_the_draft_step_over_the_time_per_token():
    policy = FallbackPolicy(smoothing=1.0)  # no running mean: the last round decides
    policy.observe_round(0.03, 1.2, 12)     # 0.1 s per token, 0.03 s per draft step
    assert policy.cost_floor == pytest.approx(0.3)
    policy.observe_round(None, 0.5, 1)      # no step this round: the last step time stays
    assert policy.cost_floor == pytest.approx(0.06)
    policy.observe_round(0.5, 0.5, 1)       # drafting dearer than a token: capped
    assert policy.cost_floor == pytest.approx(0.9)


def test_rounds_are_folded_into_running_means():
    policy = FallbackPolicy(smoothing=0.5)
    policy.observe_round(0.02, 1.0, 10)
    policy.observe_round(0.04, 1.0, 2)
    assert policy.cost_floor == pytest.approx(0.03 * 6 / 1.0)


def test_should_verify_below_the_floor_or_past_the_caps():
    policy = FallbackPolicy(alpha=0.01, max_depth=4, max_nodes=6, smoothing=1.0)
    assert not policy.should_verify(0.2, 1, 2)
    policy.observe_round(0.03, 1.2, 12)
    assert policy.should_verify(0.2, 1, 2) and not policy.should_verify(0.35, 1, 2)
    assert policy.should_verify(0.9, 5, 2) and policy.should_verify(0.9, 1, 7)


@pytest.mark.parametrize("bad", [dict(alpha=0.0), dict(alpha=1.0), dict(max_depth=0), dict(max_nodes=0)])
def test_bad_policy_arguments(bad):
    with pytest.raises(ValueError):
        FallbackPolicy(**bad)


def test_solo_fallback_measures_both_modes_then_keeps_the_faster_and_probes_the_other():
    policy = FallbackPolicy(solo_fallback=True, probe_tokens=4, smoothing=1.0)
    assert policy.drafting()                 # nothing measured: draft first
    policy.observe_round(0.01, 0.3, 3)       # 0.1 s per token drafting
    assert not policy.drafting()             # then one target-only step
    policy.observe_solo(0.05)                # 0.05 s per token alone: solo pays
    modes = []
    for _ in range(16):
        drafting = policy.drafting()
        modes.append(drafting)
        if drafting:
            policy.observe_round(0.01, 0.3, 3)
        else:
            policy.observe_solo(0.05)
    # Four tokens in the preferred mode, then one round of the other; the probe
    # changed nothing, so the next one comes after eight.
    assert modes == [False] * 4 + [True] + [False] * 8 + [True] + [False] * 2


def test_a_probe_that_changes_the_choice_switches_modes():
    policy = FallbackPolicy(solo_fallback=True, probe_tokens=2, smoothing=1.0)
    policy.observe_round(0.01, 0.3, 3)
    policy.observe_solo(0.05)
    policy.observe_solo(0.05)
    policy.observe_solo(0.05)
    assert policy.drafting()                 # the probe round
    policy.observe_round(0.01, 0.3, 10)      # the text became easy: 0.03 s per token
    assert policy.drafting() and policy.drafting_pays()


def test_without_solo_fallback_every_round_drafts():
    policy = FallbackPolicy(smoothing=1.0)
    policy.observe_round(0.01, 1.0, 1)
    policy.observe_solo(0.001)
    assert policy.drafting()


def test_a_request_starts_with_a_round_even_where_solo_pays():
    policy = FallbackPolicy(solo_fallback=True, smoothing=1.0)
    policy.observe_round(0.01, 1.0, 1)
    policy.observe_solo(0.01)
    assert not policy.drafting()
    policy.start_request()
    assert policy.drafting() and not policy.drafting()
