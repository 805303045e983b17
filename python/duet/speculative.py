"""Collaborative decoding: the small model drafts a token tree, the large model
verifies every node in one pass, both caches keep the accepted path.

Invariant (greedy): the emitted tokens are exactly those of target-only greedy
decoding, because every emitted token is the target's own choice after a prefix
the target itself accepted."""
from __future__ import annotations

import heapq
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol

import numpy as np

from duet.compute_token import ComputeToken
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
    provisional: int = 0           # nodes drafted while the target verified
    reused: int = 0                # of those, nodes a later round started from (not drafted again)
    solo: int = 0                  # target-only steps the fallback took instead of rounds
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
                "provisional": self.provisional, "reused": self.reused, "solo": self.solo,
                "draft_seconds": self.draft_seconds,
                "verify_seconds": self.verify_seconds, "prompt_seconds": self.prompt_seconds,
                "accepted_by_source": dict(self.accepted_by_source)}


def softmax(logits: np.ndarray) -> np.ndarray:
    # In the logits' float32: the probabilities only shape the tree, and float64
    # over a 152k vocabulary (a partial draft head's -inf rows included) took
    # 0.65-0.85 ms of a 12-15 ms draft step (session 32).
    e = np.exp(logits - np.max(logits))
    e /= e.sum()
    return e


def priced_step(policy: FallbackPolicy | None, step: Callable[[], np.ndarray]) -> np.ndarray:
    """Runs a draft step, step() -> logits; the policy learns its time (None: a
    step no round waits for, which costs nothing)."""
    start = time.perf_counter()
    logits = step()
    if policy is not None:
        policy.observe_draft_step(time.perf_counter() - start)
    return logits


class Drafter(Protocol):
    """What the loop needs of a drafter. Optional: `cache` (a KVCache the prompt must
    fit in), and for the compute-IO pipeline `model` and
    `draft_provisionally(stop, max_nodes) -> int`."""

    def start(self, prompt: list[int]) -> None: ...

    def draft(self, root_token: int, root_position: int, policy: FallbackPolicy) -> TokenTree: ...

    def commit(self, tree: TokenTree, verdict: Verdict) -> int | None: ...

    def skip(self, root_token: int, verdict: Verdict) -> None:
        """The target decoded root_token alone (the policy's solo fallback)."""


class TreeDrafter:
    """The small model's side. Its cache holds the committed text, then the rows of
    the tree nodes it ran this round. Tokens committed but not yet run through it
    wait in `pending`. Nodes it drafted while the target verified (provisionally)
    survive a round when the target's own next token is one of them: the tree is
    then re-rooted there and drafting goes on from what is already run."""

    def __init__(self, model: Model, cache: KVCache, branch_threshold: float = 0.3, max_children: int = 2):
        self.model = model
        self.cache = cache
        self.branch_threshold = branch_threshold  # a second candidate this likely opens a branch
        self.max_children = max_children
        self.pending: list[int] = []
        self.tree: TokenTree | None = None
        self.slots: dict[int, int] = {}  # tree node -> cache slot of its row
        self.open: list[tuple[float, int, int, float]] = []  # heap of (-cumulative, parent, token, prob)
        self.root_position = 0

    def candidates(self, probs: np.ndarray) -> list[tuple[int, float]]:
        """The likeliest next token, plus others likely enough to open a branch."""
        # No argpartition over the vocabulary: with a partial draft head most
        # probabilities are exact zeros, and those ties make it ~25 ms a call, as
        # long as the drafter's step. Few tokens pass the threshold (probabilities sum to 1).
        best = int(np.argmax(probs))
        others = np.flatnonzero(probs >= self.branch_threshold)
        others = others[others != best]
        others = others[np.argsort(-probs[others], kind="stable")][: self.max_children - 1]
        return [(best, float(probs[best]))] + [(int(t), float(probs[t])) for t in others]

    def _open_children(self, node: int, probs: np.ndarray) -> None:
        for token, p in self.candidates(probs):
            heapq.heappush(self.open, (-(self.tree.cumulative[node] * p), node, token, p))

    def start(self, prompt: list[int]) -> None:
        """A new request: the prompt's tokens this cache lacks run with the first root."""
        self.pending = list(prompt[self.cache.n:-1])
        self.tree = None

    def abandon(self) -> None:
        """Drops a carried tree (its root included): another drafter drafts this round,
        and the committed tokens will reach this cache through `pending`."""
        if self.tree is not None:
            self.cache.trim(self.slots[0])
            self.tree = None

    def release(self, text: list[int]) -> None:
        """Empties its cache and gives that memory back (a parked drafter's budget
        has no room for it); text, the committed tokens before the next root, runs
        again when it next drafts."""
        self.tree = None
        self.cache.release()
        self.pending = list(text)

    def skip(self, root_token: int, verdict: Verdict) -> None:
        """The target decoded root_token alone: it joins the tokens to run later."""
        self.abandon()
        self.pending.append(root_token)

    def catch_up(self) -> None:
        """Runs the pending tokens now (the prompt, target-only steps), so that a
        round's time measures drafting, not what came before it."""
        if self.pending and self.tree is None:
            self.model.prefill(self.pending, self.cache)
            self.pending = []

    def begin_round(self, root_token: int, root_position: int, policy: FallbackPolicy) -> None:
        """Begins a round at root_token: reuses the carried subtree if it is rooted
        there, else runs the pending tokens and the root (the root alone is a
        draft step the round waits for, and is priced as one)."""
        self.root_position = root_position
        if self.tree is not None and self.tree.root_token == root_token and not self.pending:
            return
        tokens = self.pending + [root_token]
        self.pending = []
        # Decode order: these are mostly a few committed tokens, and the decoded
        # rows' GEMV reads each weight row once for them all, where the prompt
        # order's kernels do not (the 0.5B after 300 tokens: one token 13.2 -> 11.9
        # ms, two 17.8 -> 15.0). The longer runs after trie-only rounds or parking
        # were no slower in it (64 tokens 249 -> 238 ms, 200: 807 -> 739). A
        # drafter's order is free: its logits only shape the tree. (The engine's
        # drafter is any_order, which overrides this and takes the GEMV for these
        # few rows too; this is the order of a drafter left in llama.cpp's.)
        logits = priced_step(policy if len(tokens) == 1 else None,
                             lambda: self.model.prefill(tokens, self.cache, prompt=False))
        self.tree, self.slots, self.open = TokenTree(root_token), {0: self.cache.n - 1}, []
        self._open_children(0, softmax(logits))

    def best_open(self) -> tuple[float, int] | None:
        """(cumulative probability, depth) of the likeliest open candidate."""
        if not self.open:
            return None
        neg_cum, parent, _, _ = self.open[0]
        return -neg_cum, self.tree.depths[parent] + 1

    def grow_one(self, policy: FallbackPolicy | None = None) -> None:
        """Takes the likeliest open candidate into the tree and runs it; policy: the
        one to price the step (None: a step the round does not wait for)."""
        _, parent, token, p = heapq.heappop(self.open)
        node = self.tree.add(token, parent, p)
        if node in self.slots:  # already run (the same candidate opened twice)
            return
        mask = np.zeros((1, self.cache.n + 1), dtype=np.uint8)
        mask[0, : self.slots[0] + 1] = 1  # the committed text, root included
        ancestor = self.tree.parents[node]
        while ancestor > 0:
            mask[0, self.slots[ancestor]] = 1
            ancestor = self.tree.parents[ancestor]
        mask[0, self.cache.n] = 1
        position = np.array([self.root_position + self.tree.depths[node]], dtype=np.int32)
        self.slots[node] = self.cache.n
        logits = priced_step(policy, lambda: self.model.forward([token], self.cache, positions=position, mask=mask)[0])
        self._open_children(node, softmax(logits))

    def draft(self, root_token: int, root_position: int, policy: FallbackPolicy,
              extend: Callable[[TokenTree], None] | None = None) -> TokenTree:
        """Best-first growth until the policy says verify; returns the tree to
        verify. The likeliest open candidates join it as leaves the small model has
        not run, where their verification pays (policy.leaf_floor): drafting them
        cost nothing. extend(tree) may add more such nodes (another drafter's
        branches) first."""
        self.begin_round(root_token, root_position, policy)
        while (best := self.best_open()) is not None and not policy.should_verify(best[0], best[1], len(self.tree)):
            self.grow_one(policy)
        for neg_cumulative, parent, token, p in heapq.nsmallest(self.max_children, self.open):
            if len(self.tree) <= policy.max_nodes and -neg_cumulative >= policy.leaf_floor:
                self.tree.add(token, parent, p)
        if extend is not None:
            extend(self.tree)
        # The verifier gets a copy: this tree keeps growing while it verifies.
        return self.tree.copy()

    def draft_provisionally(self, stop: Callable[[], bool], max_nodes: int) -> int:
        """Keeps growing the tree while the target verifies the copy it was given,
        until stop() or max_nodes; returns how many nodes it ran."""
        grown = 0
        while not stop() and self.open and len(self.tree) < max_nodes:
            self.grow_one()
            grown += 1
        return grown

    def commit(self, verified: TokenTree, verdict: Verdict) -> int:
        """Keeps the rows of the committed tokens and, if the target's own next
        token is a node already run (drafted provisionally), that node's subtree,
        which the next round then starts from. Returns the nodes carried over.
        `verified` is the tree draft() returned: node indices agree with this
        drafter's own tree, which may have grown since."""
        tree, root_slot = self.tree, self.slots[0]
        carry = tree.child(verdict.accepted_nodes[-1], verdict.tokens[-1])
        if carry is not None and carry not in self.slots:
            carry = None
        kept = [n for n in verdict.accepted_nodes if n in self.slots]
        if carry is not None:
            subtree, mapping = tree.subtree(carry)
            kept += [n for n in mapping if n in self.slots]
        kept.sort(key=self.slots.__getitem__)
        self.cache.keep(root_slot, [self.slots[n] - root_slot for n in kept])
        if carry is None:
            self.tree = None
            self.pending = [tree.tokens[n] for n in verdict.accepted_nodes if n not in self.slots]
            return 0
        new_slot = {n: root_slot + i for i, n in enumerate(kept)}
        self.slots = {mapping[n]: new_slot[n] for n in mapping if n in new_slot}
        scale = tree.cumulative[carry] or 1.0
        self.open = [(neg / scale, mapping[parent], token, p) for neg, parent, token, p in self.open
                     if parent in mapping]
        heapq.heapify(self.open)
        self.tree = subtree
        self.pending = []
        return len(self.slots)


class TreeVerifier:
    """The large model's side: one forward pass over every node of the tree."""

    def __init__(self, model: Model, cache: KVCache):
        self.model = model
        self.cache = cache

    def first(self, prompt: list[int], choose: Callable[[TokenTree, np.ndarray], Verdict]) -> Verdict:
        """Runs the prompt's tokens the cache lacks, the last one included, and
        chooses the first token from its logits, as target-only decoding does: the
        first token comes as soon as the prompt is read, drafting waits for it."""
        logits = self.model.prefill(prompt[self.cache.n:], self.cache)
        return choose(TokenTree(prompt[-1]), logits[None])

    def verify(self, tree: TokenTree, choose: Callable[[TokenTree, np.ndarray], Verdict]) -> Verdict:
        n_past = self.cache.n
        hidden, _ = self.model.hidden_states(tree.tokens, self.cache, positions=tree.positions(n_past),
                                             mask=tree.mask(n_past))
        verdict = choose(tree, TreeLogits(self.model, hidden, tree))
        # Nodes are in index order in the block, so a node's index is its row offset.
        self.cache.keep(n_past, verdict.accepted_nodes)
        return verdict

    def step(self, root: int, choose: Callable[[TokenTree, np.ndarray], Verdict]) -> Verdict:
        """One target-only decoding step from root (a tree of the root alone, run as
        plain decoding runs it: causally, no mask)."""
        logits = self.model.forward([root], self.cache, logits_rows="all")
        return choose(TokenTree(root), logits)


# Nodes whose logits one pass over the LM head computes when the verdict's walk
# reaches a node without them: as many as a GEMV takes (kMaxGemvRows), which
# reads the head once for all of them.
HEAD_BATCH = 8


class TreeLogits:
    """The target's logits after each node of a verified tree [n, n_vocab], computed
    when the verdict's walk first reads a node. A walk reads the accepted path and
    the node where it stops, while the whole head over a large tree is a large part
    of its pass (the 1.5B's 151936 Q6_K rows: 43 ms for 24 nodes against 12 ms for 8,
    one row 6 ms). A node without logits brings in, in one pass over the head, the
    HEAD_BATCH nodes of its subtree the walk is likeliest to reach, by the drafter's
    cumulative confidence. A row's logits do not depend on the rows beside it (batch
    invariance), so the verdict is the one the whole tree's logits give."""

    def __init__(self, model: Model, hidden: np.ndarray, tree: TokenTree):
        self.model = model
        self.hidden = hidden  # [n, n_embd] the last layer's output after each node
        self.tree = tree
        self.rows: dict[int, np.ndarray] = {}  # node -> [n_vocab] logits, for the nodes computed

    def __getitem__(self, node: int) -> np.ndarray:
        if node not in self.rows:
            batch = self.likeliest_below(node)
            self.rows.update(zip(batch, self.model.logits(self.hidden[batch])))
        return self.rows[node]

    def likeliest_below(self, node: int) -> list[int]:
        """node, then up to HEAD_BATCH - 1 of its descendants without logits, likeliest first."""
        _, mapping = self.tree.subtree(node)  # its keys: node and its descendants
        below = mapping.keys() - self.rows.keys() - {node}
        return [node] + heapq.nsmallest(HEAD_BATCH - 1, below, key=lambda i: (-self.tree.cumulative[i], i))


class MappedRows:
    """f(rows[node]) for the nodes a verdict's walk reads, computed as it reads them:
    the sampler's distribution over every row of a tree in float64 would take 1.2 MB
    a row with a 152k vocabulary, which a memory budget does not count."""

    def __init__(self, rows, f: Callable[[np.ndarray], object]):
        self.rows = rows  # [n, n_vocab]: an array or TreeLogits
        self.f = f

    def __getitem__(self, node: int):
        return self.f(self.rows[node])


def greedy_choice(tree: TokenTree, logits) -> Verdict:
    return verify_greedy(tree, MappedRows(logits, np.argmax))


def sampled_choice(sampler) -> Callable[[TokenTree, np.ndarray], Verdict]:
    def choose(tree: TokenTree, logits) -> Verdict:
        return verify_sampled(tree, MappedRows(logits, sampler.probabilities), sampler.rng)
    return choose


def speculative_generate(
    verifier: TreeVerifier,
    drafter: Drafter,
    prompt: list[int],
    max_tokens: int,
    policy: FallbackPolicy,
    is_stop: Callable[[int], bool],
    choose: Callable[[TokenTree, np.ndarray], Verdict] = greedy_choice,
    stats: SpeculativeStats | None = None,
    pipeline: bool = False,
) -> Iterator[tuple[int, bool]]:
    """Yields (token, from_draft) up to max_tokens, stopping after a stop token.
    Each cache may already hold a prefix of prompt[:-1] (streamed input prefilled
    while the user typed); the rest is prefilled here.

    pipeline: verify in a second thread while the drafter goes on drafting; the
    two models then share a ComputeToken, the target's calls first, so the drafter
    only computes while the target waits for weights from storage."""
    stats = stats if stats is not None else SpeculativeStats()
    if not prompt:
        raise ValueError("the prompt is empty")
    # A drafter without a model (an n-gram store) has no cache.
    caches = [verifier.cache] + ([drafter.cache] if getattr(drafter, "cache", None) is not None else [])
    room = min(cache.n_ctx for cache in caches)
    if len(prompt) + max_tokens + 2 * policy.max_nodes + 1 > room:
        raise ValueError(f"prompt ({len(prompt)} tokens) plus {max_tokens} new tokens and draft trees of "
                         f"{2 * policy.max_nodes} exceed the context size {room}")
    if any(cache.n >= len(prompt) for cache in caches):
        raise ValueError("a cache already holds the whole prompt; the last prompt token must be left to run")
    start = time.perf_counter()
    first = verifier.first(prompt, choose)
    drafter.start(prompt)
    drafter.skip(prompt[-1], first)
    policy.start_request()
    stats.prompt_seconds += time.perf_counter() - start
    stats.emitted += 1
    yield first.tokens[0], False
    if is_stop(first.tokens[0]) or max_tokens <= 1:
        return
    can_pipeline = hasattr(drafter, "draft_provisionally") and getattr(drafter, "model", None) is not None
    rounds = _pipelined_rounds if pipeline and can_pipeline else _sequential_rounds
    emitted = 1
    for verdict in rounds(verifier, drafter, first.tokens[0], policy, choose, stats):
        for i, token in enumerate(verdict.tokens):
            emitted += 1
            stats.emitted += 1
            yield token, i < len(verdict.tokens) - 1
            if is_stop(token) or emitted >= max_tokens:
                return


def _record(stats: SpeculativeStats, tree: TokenTree, verdict: Verdict, policy: FallbackPolicy) -> None:
    policy.update(verdict.n_draft_accepted, verdict.branch_length)
    stats.passes += 1
    stats.drafted += len(tree) - 1
    stats.accepted += verdict.n_draft_accepted
    for node in verdict.accepted_nodes[1:]:
        source = tree.sources[node]
        stats.accepted_by_source[source] = stats.accepted_by_source.get(source, 0) + 1


def _rounds(verifier, drafter, root, policy, choose, stats, verify) -> Iterator[Verdict]:
    """Draft, verify, commit, repeat, or a target-only step where the policy finds
    that drafting does not pay. verify(tree) -> verdict is where the two modes
    differ; timing, the cost model and the statistics are shared."""
    # Tokens the drafter has not run (the prompt, target-only steps) run before the
    # round is timed: its time is the policy's measure of drafting.
    catch_up = True
    while True:
        if not policy.drafting():
            start = time.perf_counter()
            verdict = verifier.step(root, choose)
            drafter.skip(root, verdict)
            policy.observe_solo(time.perf_counter() - start)
            stats.solo += 1
            catch_up = True
        else:
            if catch_up and hasattr(drafter, "catch_up"):
                drafter.catch_up()
            catch_up = False
            verdict = _round(verifier, drafter, root, policy, stats, verify)
        yield verdict
        root = verdict.tokens[-1]


def _round(verifier, drafter, root, policy, stats, verify) -> Verdict:
    start = time.perf_counter()
    tree = drafter.draft(root, verifier.cache.n, policy)
    middle = time.perf_counter()
    verdict = verify(tree)
    stats.reused += drafter.commit(tree, verdict) or 0
    end = time.perf_counter()
    stats.draft_seconds += middle - start
    stats.verify_seconds += end - middle
    policy.observe_round(end - start, len(verdict.tokens), len(tree), end - middle)
    _record(stats, tree, verdict, policy)
    return verdict


def _sequential_rounds(verifier, drafter, root, policy, choose, stats) -> Iterator[Verdict]:
    yield from _rounds(verifier, drafter, root, policy, choose, stats, lambda tree: verifier.verify(tree, choose))


def _pipelined_rounds(verifier, drafter, root, policy, choose, stats) -> Iterator[Verdict]:
    token = ComputeToken()
    saved = (verifier.model.compute, verifier.model.urgent, drafter.model.compute, drafter.model.urgent)
    verifier.model.compute, verifier.model.urgent = token, True
    drafter.model.compute, drafter.model.urgent = token, False
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="duet-verify") as executor:
            def verify(tree: TokenTree) -> Verdict:
                pending = executor.submit(verifier.verify, tree, choose)
                stats.provisional += drafter.draft_provisionally(pending.done, 2 * policy.max_nodes)
                return pending.result()

            yield from _rounds(verifier, drafter, root, policy, choose, stats, verify)
    finally:
        verifier.model.compute, verifier.model.urgent, drafter.model.compute, drafter.model.urgent = saved
