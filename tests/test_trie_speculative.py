"""Trie drafts through the speculative loop: greedy output identical to target-only
decoding (duet.generate.decode_tokens), with trie tokens actually accepted."""
from __future__ import annotations

import numpy as np
import pytest

from duet import _core
from duet.generate import decode_tokens
from duet.gguf_file import GGUFFile
from duet.model import Model
from duet.ngram_store import NGramStore
from duet.policy import FallbackPolicy
from duet.sampling import Sampler
from duet.speculative import SpeculativeStats, TreeDrafter, TreeVerifier, speculative_generate
from duet.token_tree import TokenTree, Verdict, likeliest_branch
from duet.tokenizer import Tokenizer
from duet.trie_drafter import MergedDrafter, TrieDrafter
from tiny_models import write_tiny_model

N_CTX = 256
N_TOKENS = 60
REPEATING_TEXT = "def add(a, b):\n    return a + b\n\ndef add(a, b):\n    return a + b\n\ndef add(a, b):\n"
# Target weights: seed 3 switches token part way, so some trie drafts get rejected.
TARGETS = [(3, "Q8_0"), (3, "Q4_K"), (2, "Q6_K")]


@pytest.fixture(scope="module")
def pool():
    return _core.ThreadPool(1)


@pytest.fixture(scope="module", params=TARGETS, ids=lambda p: f"seed{p[0]}-{p[1]}")
def target(request, tmp_path_factory, pool):
    seed, weight_type = request.param
    path = tmp_path_factory.mktemp("target") / "target.gguf"
    return Model(GGUFFile(write_tiny_model(path, seed=seed, weight_type=weight_type)), pool)


@pytest.fixture(scope="module")
def small(tmp_path_factory, pool):
    """A draft model with the same vocabulary and different weights."""
    path = tmp_path_factory.mktemp("small") / "small.gguf"
    return Model(GGUFFile(write_tiny_model(path, seed=7, n_layer=1, weight_type="Q4_0")), pool)


def prompt_of(model: Model) -> list[int]:
    return Tokenizer.from_metadata(model.gguf.metadata).encode(REPEATING_TEXT)


def never_stop(token: int) -> bool:
    return False


def target_only(model: Model, prompt: list[int]) -> list[int]:
    return list(decode_tokens(model, model.new_cache(N_CTX), prompt, N_TOKENS, Sampler(temperature=0), never_stop))


def speculative(model: Model, drafter, prompt: list[int], stats: SpeculativeStats,
                policy: FallbackPolicy | None = None) -> list[int]:
    verifier = TreeVerifier(model, model.new_cache(N_CTX))
    return [token for token, _ in speculative_generate(verifier, drafter, prompt, N_TOKENS,
                                                       policy or FallbackPolicy(), never_stop, stats=stats)]


class RecordingDrafter:
    """Passes everything through to a drafter and keeps the emitted tokens of every verdict."""

    def __init__(self, inner):
        self.inner = inner
        self.committed: list[int] = []

    @property
    def cache(self):
        return self.inner.cache

    def start(self, prompt):
        self.inner.start(prompt)

    def draft(self, root_token, root_position, policy):
        return self.inner.draft(root_token, root_position, policy)

    def commit(self, tree, verdict):
        self.committed += verdict.tokens
        self.inner.commit(tree, verdict)

    def skip(self, root_token, verdict):
        self.committed += verdict.tokens
        self.inner.skip(root_token, verdict)


def test_trie_alone_is_lossless_and_accepts_trie_tokens(target):
    prompt = prompt_of(target)
    stats = SpeculativeStats()
    out = speculative(target, TrieDrafter(NGramStore(), max_nodes=8), prompt, stats)
    assert out == target_only(target, prompt)
    assert stats.accepted_by_source.get("trie", 0) > 0
    assert stats.passes < N_TOKENS
    assert set(stats.accepted_by_source) == {"trie"}


def test_trie_store_persists_output_across_requests(target):
    """The next request's first draft already holds what the last request emitted
    after the same context; a store that saw only the prompt does not."""
    prompt = prompt_of(target)
    store = NGramStore()
    out = speculative(target, TrieDrafter(store, max_nodes=8), prompt, SpeculativeStats())

    def first_draft(store: NGramStore):
        drafter = TrieDrafter(store, max_nodes=32)  # room for every branch above the thresholds
        drafter.start(prompt)
        return drafter.draft(prompt[-1], len(prompt) - 1, FallbackPolicy())

    assert first_draft(store).child(0, out[0]) is not None
    assert first_draft(NGramStore()).child(0, out[0]) is None


@pytest.mark.parametrize("trie_only_depth", [None, 4])
def test_merged_is_lossless_and_keeps_the_small_models_cache_right(target, small, trie_only_depth):
    prompt = prompt_of(target)
    tree_drafter = TreeDrafter(small, small.new_cache(N_CTX))
    drafter = RecordingDrafter(MergedDrafter(tree_drafter, TrieDrafter(NGramStore(), max_nodes=8),
                                             trie_only_depth=trie_only_depth))
    stats = SpeculativeStats()
    # Small model trees shallower than the trie's reach, so that trie nodes extend
    # past them and get accepted as trie nodes.
    out = speculative(target, drafter, prompt, stats, FallbackPolicy(max_depth=6, max_nodes=6))
    assert out == target_only(target, prompt)
    assert stats.accepted_by_source.get("trie", 0) > 0
    # The small model's cache plus its pending tokens are exactly the committed
    # text before the next root, and the rows match a plain prefill of that text.
    text = prompt + drafter.committed
    cache = tree_drafter.cache
    assert text[:cache.n] + tree_drafter.pending == text[:-1]
    fresh = small.new_cache(N_CTX)
    small.prefill(text[:cache.n], fresh)
    np.testing.assert_allclose(cache.k[:, :cache.n].astype(np.float32), fresh.k[:, :cache.n].astype(np.float32),
                               atol=2e-2, rtol=2e-2)


def test_trie_nodes_accepted_below_unrun_nodes_reach_the_small_model(target, small):
    """With the small model drafting every round, accepted trie nodes it never ran
    become pending tokens and run with the next root."""
    prompt = prompt_of(target)
    tree_drafter = TreeDrafter(small, small.new_cache(N_CTX))
    drafter = RecordingDrafter(MergedDrafter(tree_drafter, TrieDrafter(NGramStore(), max_nodes=8),
                                             trie_only_depth=None))
    pending_seen = []
    original_commit = tree_drafter.commit

    def commit(tree, verdict):
        original_commit(tree, verdict)
        pending_seen.append(list(tree_drafter.pending))
    tree_drafter.commit = commit
    stats = SpeculativeStats()
    speculative(target, drafter, prompt, stats, FallbackPolicy(max_depth=6, max_nodes=6))
    assert stats.accepted_by_source.get("trie", 0) > 0
    assert any(pending_seen)


def test_tree_drafter_alone_is_still_lossless(target, small):
    prompt = prompt_of(target)
    stats = SpeculativeStats()
    out = speculative(target, TreeDrafter(small, small.new_cache(N_CTX)), prompt, stats)
    assert out == target_only(target, prompt)
    assert set(stats.accepted_by_source) <= {"draft"}


def test_trie_drafter_obeys_the_policy_caps():
    store = NGramStore(depth=8)
    store.add_prompt(list(range(20)) * 3)
    drafter = TrieDrafter(store, max_nodes=16)
    drafter.start(list(range(20)) * 3 + [0])
    tree = drafter.draft(0, 100, FallbackPolicy(max_depth=3, max_nodes=5))
    assert 1 < len(tree) <= 6 and max(tree.depths) <= 3


def test_trie_drafter_follows_a_copied_stretch_past_the_stores_depth():
    """The store keeps continuations 4 deep; retrieved again from the end of its
    likeliest branch, the draft follows the prompt's text as deep as the policy lets it."""
    text = list(range(10, 40))
    drafter = TrieDrafter(NGramStore(depth=4), max_nodes=12)
    drafter.start(text + text[:3])
    tree = drafter.draft(text[2], 100, FallbackPolicy(max_depth=10, max_nodes=12))
    branch = likeliest_branch(tree)
    assert [tree.tokens[n] for n in branch[1:]] == text[3:13]
    assert len(tree) - 1 <= 12


def test_trie_only_context_check_still_refuses_overflow(target):
    with pytest.raises(ValueError, match="context size"):
        speculative_generate(TreeVerifier(target, target.new_cache(40)), TrieDrafter(NGramStore()),
                             prompt_of(target), 30, FallbackPolicy(), never_stop).__next__()


class SlowVerifier(TreeVerifier):
    """Waits before verifying, as a streamed target waits for its weights, so that
    the small model drafts provisionally meanwhile."""

    def verify(self, tree, choose):
        import time

        time.sleep(0.02)
        return super().verify(tree, choose)


@pytest.mark.parametrize("trie_only_depth", [None, 2])
def test_merged_drafter_in_the_pipeline_is_lossless(target, small, trie_only_depth):
    prompt = prompt_of(target)
    drafter = MergedDrafter(TreeDrafter(small, small.new_cache(N_CTX)), TrieDrafter(NGramStore(), max_nodes=8),
                            trie_only_depth=trie_only_depth)
    stats = SpeculativeStats()
    verifier = SlowVerifier(target, target.new_cache(N_CTX))
    out = [t for t, _ in speculative_generate(verifier, drafter, prompt, N_TOKENS, FallbackPolicy(), never_stop,
                                              stats=stats, pipeline=True)]
    assert out == target_only(target, prompt)
    assert stats.provisional > 0


def test_merged_trie_share_halves_after_misses_and_doubles_after_a_hit():
    merged = MergedDrafter(tree_drafter=None, trie_drafter=TrieDrafter(NGramStore(), max_nodes=8))
    tree = TokenTree(5)
    model_node = tree.add(6, 0, 0.9, "draft")
    trie_node = tree.add(7, 0, 0.4, "trie")
    shares = []
    for accepted in ([0, model_node], [0], [0, model_node], [0, model_node], [0, trie_node], [0, trie_node]):
        merged.trie_share_adapt(tree, Verdict(accepted_nodes=accepted, tokens=[1] * len(accepted),
                                              branch_length=1))
        shares.append(merged.trie_share)
    assert shares == [4, 2, 1, 0, 1, 2]


def test_merged_trie_share_comes_back_when_the_tries_own_tree_would_have_gone_further():
    """With no trie node in the tree, the round's own trie tree is the probe: a share
    of none grows again once that tree follows the target past the accepted path."""
    merged = MergedDrafter(tree_drafter=None, trie_drafter=TrieDrafter(NGramStore(), max_nodes=8))
    merged.trie_share = 0
    tree = TokenTree(5)
    model_node = tree.add(6, 0, 0.9, "draft")
    own = TokenTree(5)
    own.add(7, own.add(6, 0, 1.0, "trie"), 1.0, "trie")
    merged._trie_tree = own
    # The target took 6 (accepted) then 8: the trie's 6 -> 7 goes no further than the tree.
    merged.trie_share_adapt(tree, Verdict(accepted_nodes=[0, model_node], tokens=[6, 8], branch_length=1))
    assert merged.trie_share == 0
    # The target took 6 then 7: the trie's own tree had the next token too.
    merged.trie_share_adapt(tree, Verdict(accepted_nodes=[0, model_node], tokens=[6, 7], branch_length=1))
    assert merged.trie_share == 1
