"""Tree drafting, verification and the compute-IO pipeline on tiny models: every
accelerated path emits exactly target-only greedy decoding's tokens."""
from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from duet import _core
from duet.generate import decode_tokens
from duet.gguf_file import GGUFFile
from duet.model import Model
from duet.policy import FallbackPolicy
from duet.sampling import Sampler
from duet.speculative import (HEAD_BATCH, SpeculativeStats, TreeDrafter, TreeLogits, TreeVerifier, greedy_choice,
                              sampled_choice, softmax, speculative_generate)
from duet.token_tree import TokenTree, verify_greedy, verify_sampled
from tiny_models import write_tiny_model

PROMPT = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120]
N_TOKENS = 40


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spec")
    pool = _core.ThreadPool(2)
    target = Model(GGUFFile(write_tiny_model(folder / "t.gguf", n_layer=3, weight_type="Q8_0", seed=3)), pool)
    draft = Model(GGUFFile(write_tiny_model(folder / "d.gguf", n_layer=1, weight_type="Q4_K", seed=3)), pool)
    return target, draft


def reference(target: Model) -> list[int]:
    cache = target.new_cache(256)
    return list(decode_tokens(target, cache, PROMPT, N_TOKENS, Sampler(temperature=0), lambda t: False))


class SlowVerifier(TreeVerifier):
    """Sleeps before verifying, as a streamed target waits for its weights, so the
    drafter gets time to draft provisionally."""

    def verify(self, tree, choose):
        time.sleep(0.02)
        return super().verify(tree, choose)


@pytest.mark.parametrize("pipeline", [False, True])
@pytest.mark.parametrize("draft_is_target", [False, True])
@pytest.mark.parametrize("alpha", [0.01, 0.3])
def test_greedy_output_is_target_only_output(models, pipeline, draft_is_target, alpha):
    target, draft = models
    draft = target if draft_is_target else draft
    stats = SpeculativeStats()
    verifier_type = SlowVerifier if pipeline else TreeVerifier
    out = [t for t, _ in speculative_generate(
        verifier_type(target, target.new_cache(256)), TreeDrafter(draft, draft.new_cache(256)), PROMPT, N_TOKENS,
        FallbackPolicy(alpha=alpha, max_nodes=12), lambda t: False, stats=stats, pipeline=pipeline)]
    assert out == reference(target)
    assert stats.emitted == N_TOKENS and stats.passes < N_TOKENS
    if pipeline:
        assert stats.provisional > 0
    if draft_is_target:  # a drafter identical to the target: its likeliest branch is always right
        assert stats.mean_accepted > 1
        if pipeline:  # ... so provisional drafts below it are confirmed and carried over
            assert stats.reused > 0


class SlowDrafter(TreeDrafter):
    """Sleeps in every draft step, the root's too: drafting that costs more than it saves."""

    def begin_round(self, root_token, root_position, policy):
        time.sleep(0.02)
        super().begin_round(root_token, root_position, policy)

    def grow_one(self, policy=None):
        time.sleep(0.02)
        super().grow_one(policy)


class VerySlowVerifier(TreeVerifier):
    """A pass that costs the same whatever the tree, as a streamed target's does."""

    def verify(self, tree, choose):
        time.sleep(0.05)
        return super().verify(tree, choose)

    def step(self, root, choose):
        time.sleep(0.05)
        return super().step(root, choose)


@pytest.mark.parametrize("pipeline", [False, True])
def test_solo_fallback_takes_over_where_drafting_does_not_pay(models, pipeline):
    target, _ = models
    stats = SpeculativeStats()
    policy = FallbackPolicy(max_nodes=6, solo_fallback=True, probe_tokens=8)
    drafter = SlowDrafter(target, target.new_cache(256))  # right every time, but slow
    out = [t for t, _ in speculative_generate(TreeVerifier(target, target.new_cache(256)), drafter, PROMPT, N_TOKENS,
                                              policy, lambda t: False, stats=stats, pipeline=pipeline)]
    assert out == reference(target)
    assert stats.solo > N_TOKENS // 2 and stats.passes >= 2  # the first round, then probes
    assert stats.drafted < 3 * stats.passes  # priced, slow steps leave the trees small


def test_solo_fallback_keeps_drafting_where_it_pays(models):
    target, _ = models
    stats = SpeculativeStats()
    policy = FallbackPolicy(max_nodes=6, solo_fallback=True, probe_tokens=8)
    out = [t for t, _ in speculative_generate(VerySlowVerifier(target, target.new_cache(256)),
                                              TreeDrafter(target, target.new_cache(256)), PROMPT, N_TOKENS, policy,
                                              lambda t: False, stats=stats)]
    assert out == reference(target)
    assert 1 <= stats.solo <= 1 + N_TOKENS // 8  # the first comparison and the probes only


class FlagRecorder:
    """Wraps a model's run_layers to record, per position run, whether it ran as a
    prompt token."""

    def __init__(self, model: Model, monkeypatch):
        self.flags: dict[int, set[int]] = {}
        run_layers = model.run_layers

        def recording(x, positions, cache, mask, prompt=None):
            for i, position in enumerate(positions):
                self.flags.setdefault(int(position), set()).add(0 if prompt is None else int(prompt[i]))
            return run_layers(x, positions, cache, mask, prompt)
        monkeypatch.setattr(model, "run_layers", recording)


@pytest.mark.parametrize("pipeline", [False, True])
def test_prompt_tokens_run_as_prompt_tokens_on_every_path(models, monkeypatch, pipeline):
    """llama.cpp sums a prompt token's attention in another order than a decoded
    token's, and so does duet: plain decoding and tree verification must give each
    position the same kind, the prompt's last token (the first tree's root) included."""
    target, draft = models
    plain = FlagRecorder(target, monkeypatch)
    list(decode_tokens(target, target.new_cache(256), PROMPT, N_TOKENS, Sampler(temperature=0), lambda t: False))
    expected = {position: {int(position < len(PROMPT))} for position in plain.flags}
    assert plain.flags == expected and len(expected) >= len(PROMPT) + N_TOKENS - 1
    monkeypatch.undo()
    tree = FlagRecorder(target, monkeypatch)
    verifier_type = SlowVerifier if pipeline else TreeVerifier
    list(speculative_generate(verifier_type(target, target.new_cache(256)), TreeDrafter(draft, draft.new_cache(256)),
                              PROMPT, N_TOKENS, FallbackPolicy(), lambda t: False, pipeline=pipeline))
    assert all(tree.flags[position] == {int(position < len(PROMPT))} for position in tree.flags)


def test_drafter_runs_the_prompt_as_a_prompt_and_round_starts_as_decoded_tokens(models, monkeypatch):
    """A round starts by running the committed tokens the drafter lacks (the root,
    leaves it did not run): few rows, which the decode order's GEMV reads the
    weights once for, where the prompt order's kernels do not."""
    target, draft = models
    drafted = FlagRecorder(draft, monkeypatch)
    list(speculative_generate(TreeVerifier(target, target.new_cache(256)), TreeDrafter(draft, draft.new_cache(256)),
                              PROMPT, N_TOKENS, FallbackPolicy(), lambda t: False))
    assert all(drafted.flags[position] == {int(position < len(PROMPT))} for position in drafted.flags)
    assert len(drafted.flags) >= len(PROMPT) + N_TOKENS - 1


def test_prefilled_prefix_is_continued(models):
    target, draft = models
    t_cache, d_cache = target.new_cache(256), draft.new_cache(256)
    target.prefill(PROMPT[:5], t_cache)
    draft.prefill(PROMPT[:3], d_cache)
    out = [t for t, _ in speculative_generate(TreeVerifier(target, t_cache), TreeDrafter(draft, d_cache), PROMPT,
                                              N_TOKENS, FallbackPolicy(), lambda t: False)]
    assert out == reference(target)


def test_context_too_small_is_refused(models):
    target, draft = models
    with pytest.raises(ValueError, match="context size"):
        list(speculative_generate(TreeVerifier(target, target.new_cache(48)), TreeDrafter(draft, draft.new_cache(48)),
                                  PROMPT, 30, FallbackPolicy(max_nodes=8), lambda t: False))


@pytest.mark.parametrize("max_children, expected", [(1, [9]), (2, [9, 4]), (3, [9, 4, 7])])
def test_draft_candidates_are_the_likeliest_then_those_over_the_threshold(max_children, expected):
    """Most of a partial head's probabilities are zeros; a tie at the threshold goes to the lower id."""
    probs = np.zeros(1000)
    probs[[9, 4, 7, 500, 3]] = [0.32, 0.31, 0.31, 0.05, 0.01]
    drafter = TreeDrafter(model=None, cache=None, branch_threshold=0.3, max_children=max_children)
    assert [token for token, _ in drafter.candidates(probs)] == expected
    drafter.branch_threshold = 0.9  # the likeliest token is a candidate whatever its probability
    assert drafter.candidates(probs) == [(9, 0.32)]


def tree_of(paths: list[list[int]]) -> TokenTree:
    tree = TokenTree(root_token=1)
    for path in paths:
        node = 0
        for token in path:
            node = tree.add(token, node, 0.5)
    return tree


def test_tree_mask_and_positions():
    tree = tree_of([[5, 6], [7]])  # nodes: 0 root, 1=5, 2=6 (below 5), 3=7 (below root)
    mask = tree.mask(n_past=2)
    assert mask.tolist() == [[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 1]]
    assert tree.positions(10).tolist() == [10, 11, 12, 11]


def test_verify_greedy_walks_the_matching_path():
    tree = tree_of([[5, 6], [7, 8]])  # root -> 5 -> 6 ; root -> 7 -> 8
    choice = np.zeros(len(tree), dtype=np.int64)
    choice[0], choice[3], choice[4] = 7, 8, 9  # target: 7, then 8, then 9
    verdict = verify_greedy(tree, choice)
    assert verdict.tokens == [7, 8, 9] and verdict.accepted_nodes == [0, 3, 4]
    choice[0] = 4  # nothing matches at the root: only the target's own token
    assert verify_greedy(tree, choice).tokens == [4]


def test_sampled_choice_computes_only_the_rows_it_walks_and_draws_as_with_all_of_them():
    tree = tree_of([[5, 6, 7], [8, 9], [10]])  # 7 nodes
    logits = np.random.default_rng(0).normal(size=(len(tree), 16)).astype(np.float32)
    logits[:, [5, 6, 7, 8, 9, 10]] += 2.0  # drafted tokens likely enough to be accepted at times
    for seed in range(40):
        whole, lazy = Sampler(temperature=0.8, top_p=0.95, seed=seed), Sampler(temperature=0.8, top_p=0.95, seed=seed)
        expected = verify_sampled(tree, np.stack([whole.probabilities(row) for row in logits]), whole.rng)
        rows = []
        counting = SimpleNamespace(rng=lazy.rng, probabilities=lambda row: rows.append(row) or lazy.probabilities(row))
        assert sampled_choice(counting)(tree, logits) == expected
        assert len(rows) <= len(expected.accepted_nodes) + 1  # a row per node walked (the last twice at worst)


def test_tree_logits_computes_a_missed_node_with_its_likeliest_descendants():
    tree = TokenTree(root_token=1)
    chain = [tree.add(10, 0, 0.9)]
    for depth in range(1, 9):
        chain.append(tree.add(10 + depth, chain[-1], 0.9))
    side = [tree.add(50 + i, chain[i], 0.05) for i in range(6)]  # one unlikely sibling below each of the first nodes
    batches = []
    head = SimpleNamespace(logits=lambda h: batches.append(h[:, 0].astype(int).tolist()) or h * 2.0)
    logits = TreeLogits(head, np.arange(len(tree), dtype=np.float32)[:, None].repeat(3, axis=1), tree)
    assert logits[0].tolist() == [0.0, 0.0, 0.0] and batches == [[0] + chain[:HEAD_BATCH - 1]]
    assert logits[chain[2]][0] == 2.0 * chain[2] and len(batches) == 1  # computed with the root
    assert logits[side[3]][0] == 2.0 * side[3]  # a leaf off the batch: its subtree is itself
    assert batches[1] == [side[3]]
    assert logits[chain[HEAD_BATCH - 1]][0] == 2.0 * chain[HEAD_BATCH - 1]
    assert batches[2] == chain[HEAD_BATCH - 1:]  # the rest of the chain; the side leaves above it are not below it
    assert len(logits.rows) == sum(map(len, batches))


@pytest.mark.parametrize("follow", [0, 5, 12])
def test_tree_verification_computes_the_rows_its_walk_reads_with_the_bits_of_all_rows(models, monkeypatch, follow):
    """A tree of the target's own greedy tokens, followed for `follow` nodes, with
    an unlikely sibling at every depth: the verdict and each computed row equal
    those of the whole tree's logits, and the head runs on fewer rows than the tree."""
    target, _ = models
    expected_tokens = reference(target)
    tree = TokenTree(root_token=PROMPT[-1])
    node = 0
    for depth, token in enumerate(expected_tokens[:13]):
        tree.add((token + 1) % target.config.n_vocab, node, 0.1)
        node = tree.add(token if depth < follow else (token + 2) % target.config.n_vocab, node, 0.9)
    past = len(PROMPT) - 1
    whole_cache, lazy_cache = target.new_cache(64), target.new_cache(64)
    for cache in (whole_cache, lazy_cache):
        target.prefill(PROMPT[:-1], cache)
    whole = target.forward(tree.tokens, whole_cache, positions=tree.positions(past), mask=tree.mask(past),
                           logits_rows="all")
    rows_run = []
    model_logits = target.logits
    monkeypatch.setattr(target, "logits", lambda h, prompt=None: rows_run.append(len(h)) or model_logits(h, prompt))
    seen = {}
    def choose(tree, logits):
        seen["logits"] = logits
        return greedy_choice(tree, logits)
    verdict = TreeVerifier(target, lazy_cache).verify(tree, choose)
    assert verdict == greedy_choice(tree, whole)
    assert verdict.tokens == expected_tokens[:1 + follow]
    assert 0 < sum(rows_run) < len(tree) and all(n <= HEAD_BATCH for n in rows_run)
    for node, row in seen["logits"].rows.items():
        assert np.array_equal(row, whole[node])


def test_verify_sampled_follows_the_target_distribution():
    """Over many draws, the first emitted token is distributed as the target's p,
    whatever the drafted children are."""
    rng = np.random.default_rng(0)
    vocab = 6
    p = np.array([0.05, 0.4, 0.1, 0.25, 0.15, 0.05])
    tree = tree_of([[1], [3], [5]])
    probs = np.tile(p, (len(tree), 1))
    counts = np.zeros(vocab)
    n = 40000
    for _ in range(n):
        counts[verify_sampled(tree, probs, rng).tokens[0]] += 1
    expected = p * n
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 20.5  # p = 0.001 for 5 degrees of freedom


def test_sampled_collaborative_decoding_follows_the_target_distribution(models):
    """Temperature 1 on a tiny pair: the token after a tree's root, drawn through the
    tree with the residual rule, is distributed as the target's own softmax."""
    target, draft = models
    past = len(PROMPT) - 1
    cache = target.new_cache(64)
    target.prefill(PROMPT[:-1], cache)
    p = Sampler(temperature=1.0).probabilities(target.forward(PROMPT[-1:], cache)[0])
    top = np.argsort(-p)[:6]
    counts = np.zeros(len(top) + 1)
    n = 1500
    verifier = TreeVerifier(target, cache)
    drafter = TreeDrafter(draft, draft.new_cache(64))
    drafter.start(PROMPT)
    drafter.catch_up()
    for seed in range(n):
        verifier.cache.trim(past)
        drafter.cache.trim(past)
        drafter.start(PROMPT)
        tree = drafter.draft(PROMPT[-1], past, FallbackPolicy(max_nodes=6))
        assert len(tree) > 1
        token = verifier.verify(tree, sampled_choice(Sampler(temperature=1.0, seed=seed))).tokens[0]
        hits = np.flatnonzero(top == token)
        counts[hits[0] if hits.size else -1] += 1
    expected = np.append(p[top], 1 - p[top].sum()) * n
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 22.5  # p = 0.001 for 6 degrees of freedom


class PricingRecorder(FallbackPolicy):
    """Records the draft steps priced."""

    def __post_init__(self):
        super().__post_init__()
        self.priced: list[float] = []

    def observe_draft_step(self, seconds):
        self.priced.append(seconds)
        super().observe_draft_step(seconds)


def test_only_the_steps_a_round_waits_for_are_priced(models):
    """The policy prices the draft steps run before the pass, the root's included;
    steps drafted provisionally during the pass cost no stall, and counting them
    would make trees grow too deep."""
    _, draft = models
    policy = PricingRecorder(max_nodes=6)
    drafter = TreeDrafter(draft, draft.new_cache(64))
    drafter.start(PROMPT)
    drafter.catch_up()  # the prompt: a batched pass, not a step
    drafter.draft(PROMPT[-1], len(PROMPT) - 1, policy)
    run = len(drafter.slots)
    assert len(policy.priced) == run > 1 and min(policy.priced) > 0
    assert drafter.draft_provisionally(lambda: False, len(drafter.tree) + 3) > 0
    assert len(drafter.slots) > run and len(policy.priced) == run


def test_leaves_join_undrafted_only_where_their_verification_pays(models):
    _, draft = models
    trees = []
    for priced in (False, True):
        policy = FallbackPolicy(max_nodes=6, solo_fallback=True, smoothing=1.0)
        if priced:  # a node adds 10 ms to a 1 ms pass: only the surest pay
            policy.observe_solo(1e-3)
            policy.observe_round(1.0, 1, 3, 1e-3 + 2 * 0.01)
            assert policy.leaf_floor == pytest.approx(0.9)
        drafter = TreeDrafter(draft, draft.new_cache(64))
        drafter.start(PROMPT)
        trees.append(drafter.draft(PROMPT[-1], len(PROMPT) - 1, policy))
    free, priced = trees
    assert len(priced) < len(free)
    assert all(priced.cumulative[n] >= 0.9 for n in range(1, len(priced)))


def test_draft_softmax_matches_float64_and_gives_unscored_tokens_nothing():
    rng = np.random.default_rng(3)
    logits = np.full(151936, -np.inf, dtype=np.float32)  # a partial draft head: most tokens unscored
    logits[:65536] = rng.normal(0, 4, 65536).astype(np.float32)
    logits[7] = 40.0
    probs = softmax(logits)
    exact = np.exp(logits.astype(np.float64) - 40.0)
    exact /= exact.sum()
    assert probs.dtype == np.float32 and np.all(probs[65536:] == 0)
    np.testing.assert_allclose(probs, exact, rtol=1e-5, atol=1e-9)
    assert probs.sum() == pytest.approx(1.0, abs=1e-6) and int(np.argmax(probs)) == 7
