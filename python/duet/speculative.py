"""Collaborative decoding: the small model drafts a token tree, the large model
verifies every node in one pass, both caches keep the accepted path.

Invariant (greedy): the emitted tokens are exactly those of target-only greedy
decoding, because every emitted token is the target's own choice after a prefix
the target itself accepted."""
from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol

import numpy as np

from duet.kv_cache import KVCache
from duet.model import Model
from duet.policy import FallbackPolicy
from duet.token_tree import TokenTree, Verdict, verify_greedy, verify_sampled


@dataclass
class SpeculativeStats:
    passes: int = 0                # target verification passes
    drafted: int = 0               # draft tokens put in trees
    accepted: int = 0              # draft tokens the target accepted
    emitted: int = 0               # tokens emitted (accepted + one of the target's own per pass)
    draft_seconds: float = 0.0
    verify_seconds: float = 0.0
    prompt_seconds: float = 0.0
    accepted_per_pass: list[int] = field(default_factory=list)
    accepted_by_source: dict[str, int] = field(default_factory=dict)  # accepted draft tokens per tree source

    @property
    def mean_accepted(self) -> float:
        return self.accepted / self.passes if self.passes else 0.0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    def as_dict(self) -> dict:
        return {"passes": self.passes, "drafted": self.drafted, "accepted": self.accepted, "emitted": self.emitted,
                "mean_accepted_per_pass": self.mean_accepted, "acceptance_rate": self.acceptance_rate,
                "draft_seconds": self.draft_seconds, "verify_seconds": self.verify_seconds,
                "prompt_seconds": self.prompt_seconds, "accepted_by_source": dict(self.accepted_by_source)}


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - np.max(logits)
    e = np.exp(z)
    return e / e.sum()


class Drafter(Protocol):
    """What the loop needs of a drafter. Optional: `cache` (a KVCache the prompt must
    fit in) and `start(prompt)` (called once before the first draft)."""

    def draft(self, root_token: int, root_position: int, policy: FallbackPolicy) -> TokenTree: ...

    def commit(self, tree: TokenTree, verdict: Verdict) -> None: ...


class TreeDrafter:
    """The small model's side: its cache holds the committed text plus, during a
    round, the nodes it expanded. Tokens accepted but not yet run through it wait
    in `pending`."""

    def __init__(self, model: Model, cache: KVCache, branch_threshold: float = 0.3, max_children: int = 2):
        self.model = model
        self.cache = cache
        self.branch_threshold = branch_threshold  # a second candidate this likely opens a branch
        self.max_children = max_children
        self.pending: list[int] = []
        self.slots: dict[int, int] = {}  # tree node -> cache slot, this round

    def start_round(self, root_token: int) -> tuple[TokenTree, np.ndarray]:
        """Runs the pending tokens and the root; returns a fresh tree and the root's distribution."""
        tokens = self.pending + [root_token]
        self.pending = []
        self.round_start = self.cache.n
        logits = self.model.prefill(tokens, self.cache)
        self.slots = {0: self.cache.n - 1}
        return TokenTree(root_token), softmax(logits)

    def expand(self, tree: TokenTree, node: int, root_position: int) -> np.ndarray:
        """Runs node through the small model under the tree mask; returns its distribution."""
        n_prefix = self.slots[0] + 1
        mask = np.zeros((1, self.cache.n + 1), dtype=np.uint8)
        mask[0, :n_prefix] = 1
        ancestor = tree.parents[node]
        while ancestor > 0:
            mask[0, self.slots[ancestor]] = 1
            ancestor = tree.parents[ancestor]
        mask[0, self.cache.n] = 1
        position = np.array([root_position + tree.depths[node]], dtype=np.int32)
        self.slots[node] = self.cache.n
        logits = self.model.forward([tree.tokens[node]], self.cache, positions=position, mask=mask)[0]
        return softmax(logits)

    def candidates(self, probs: np.ndarray) -> list[tuple[int, float]]:
        """The likeliest next token, plus others likely enough to open a branch."""
        top = np.argpartition(probs, -self.max_children)[-self.max_children:]
        top = top[np.argsort(-probs[top], kind="stable")]
        out = [(int(top[0]), float(probs[top[0]]))]
        out += [(int(t), float(probs[t])) for t in top[1:] if probs[t] >= self.branch_threshold]
        return out

    def draft(self, root_token: int, root_position: int, policy: FallbackPolicy) -> TokenTree:
        """Best-first growth: always extend the open candidate with the highest
        cumulative probability, until the policy says verify. Candidates left open
        join the tree as leaves: verifying them costs the target almost nothing,
        and drafting them cost nothing."""
        tree, probs = self.start_round(root_token)
        open_heap: list[tuple[float, int, int, float]] = []  # (-cumulative, parent, token, prob)
        for token, p in self.candidates(probs):
            heapq.heappush(open_heap, (-p, 0, token, p))
        while open_heap:
            neg_cum, parent, token, p = open_heap[0]
            if policy.should_verify(-neg_cum, tree.depths[parent] + 1, len(tree)):
                break
            heapq.heappop(open_heap)
            node = tree.add(token, parent, p)
            probs = self.expand(tree, node, root_position)
            for child, q in self.candidates(probs):
                heapq.heappush(open_heap, (-(tree.cumulative[node] * q), node, child, q))
        for neg_cum, parent, token, p in heapq.nsmallest(self.max_children, open_heap):
            if len(tree) < policy.max_nodes + 1:
                tree.add(token, parent, p)
        return tree

    def commit(self, tree: TokenTree, verdict: Verdict) -> None:
        """Keeps the committed rows of this round (pending tokens, root, accepted
        nodes it ran) and drops the rest. An accepted node it never ran (an open
        leaf) waits in pending; the target's own token becomes the next root."""
        root_offset = self.slots[0] - self.round_start
        keep = list(range(root_offset))  # the pending tokens run before the root
        keep += [self.slots[n] - self.round_start for n in verdict.accepted_nodes if n in self.slots]
        self.cache.keep(self.round_start, keep)
        self.pending = [tree.tokens[n] for n in verdict.accepted_nodes if n not in self.slots]


class TreeVerifier:
    """The large model's side: one forward pass over every node of the tree."""

    def __init__(self, model: Model, cache: KVCache):
        self.model = model
        self.cache = cache

    def verify(self, tree: TokenTree, choose: Callable[[TokenTree, np.ndarray], Verdict]) -> Verdict:
        n_past = self.cache.n
        logits = self.model.forward(tree.tokens, self.cache, positions=tree.positions(n_past),
                                    mask=tree.mask(n_past), logits_rows="all")
        verdict = choose(tree, logits)
        # Nodes are in index order in the block, so a node's index is its row offset.
        self.cache.keep(n_past, verdict.accepted_nodes)
        return verdict


def greedy_choice(tree: TokenTree, logits: np.ndarray) -> Verdict:
    return verify_greedy(tree, np.argmax(logits, axis=1))


def sampled_choice(sampler) -> Callable[[TokenTree, np.ndarray], Verdict]:
    def choose(tree: TokenTree, logits: np.ndarray) -> Verdict:
        probs = np.stack([sampler.probabilities(row) for row in logits])
        return verify_sampled(tree, probs, sampler.rng)
    return choose


def start_drafter(drafter, prompt: list[int]) -> None:
    """Tells the drafter the prompt before the first draft: through its `start(prompt)`
    hook when it has one, else (TreeDrafter) as pending tokens that run with the
    first root, after what its cache already holds."""
    hook = getattr(drafter, "start", None)
    if hook is not None:
        hook(prompt)
    else:
        drafter.pending = list(prompt[drafter.cache.n:-1])


def speculative_generate(
    verifier: TreeVerifier,
    drafter: Drafter,
    prompt: list[int],
    max_tokens: int,
    policy: FallbackPolicy,
    is_stop: Callable[[int], bool],
    choose: Callable[[TokenTree, np.ndarray], Verdict] = greedy_choice,
    stats: SpeculativeStats | None = None,
) -> Iterator[tuple[int, bool]]:
    """Yields (token, from_draft) up to max_tokens, stopping after a stop token.
    Each cache may already hold a prefix of prompt[:-1] (streamed input prefilled
    while the user typed); the rest is prefilled here."""
    stats = stats if stats is not None else SpeculativeStats()
    if not prompt:
        raise ValueError("the prompt is empty")
    # A drafter without a model (an n-gram store) has no cache.
    caches = [verifier.cache] + ([drafter.cache] if getattr(drafter, "cache", None) is not None else [])
    room = min(cache.n_ctx for cache in caches)
    if len(prompt) + max_tokens + policy.max_nodes + 1 > room:
        raise ValueError(f"prompt ({len(prompt)} tokens) plus {max_tokens} new tokens and a draft tree of "
                         f"{policy.max_nodes} exceed the context size {room}")
    if any(cache.n >= len(prompt) for cache in caches):
        raise ValueError("a cache already holds the whole prompt; the last prompt token must be left to run")
    start = time.perf_counter()
    if verifier.cache.n < len(prompt) - 1:
        verifier.model.prefill(prompt[verifier.cache.n:-1], verifier.cache)
    start_drafter(drafter, prompt)
    stats.prompt_seconds += time.perf_counter() - start
    root, emitted = prompt[-1], 0
    while True:
        start = time.perf_counter()
        tree = drafter.draft(root, verifier.cache.n, policy)
        middle = time.perf_counter()
        verdict = verifier.verify(tree, choose)
        drafter.commit(tree, verdict)
        stats.draft_seconds += middle - start
        stats.verify_seconds += time.perf_counter() - middle
        policy.update(verdict.n_draft_accepted, verdict.branch_length)
        stats.passes += 1
        stats.drafted += len(tree) - 1
        stats.accepted += verdict.n_draft_accepted
        stats.accepted_per_pass.append(verdict.n_draft_accepted)
        for node in verdict.accepted_nodes[1:]:
            source = tree.sources[node]
            stats.accepted_by_source[source] = stats.accepted_by_source.get(source, 0) + 1
        for i, token in enumerate(verdict.tokens):
            emitted += 1
            stats.emitted += 1
            yield token, i < len(verdict.tokens) - 1
            if is_stop(token) or emitted >= max_tokens:
                return
        root = verdict.tokens[-1]
