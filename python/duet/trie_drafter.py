"""Drafts from an n-gram store, for duet.speculative.speculative_generate: alone
with the target (no draft model), or merged into the small model's tree.

Retrieval costs no model pass, so the trie drafter does not follow the policy's
adaptive threshold (LLMCad's alpha trades drafting cost against acceptance; here
drafting is free and a rejected branch costs only verification rows). It obeys
the policy's caps on depth and tree size, and its own count thresholds."""
from __future__ import annotations

import time

from duet.drafter_parking import DrafterParking
from duet.ngram_store import NGramStore
from duet.policy import FallbackPolicy
from duet.speculative import TreeDrafter
from duet.token_tree import TokenTree, Verdict, branch_length, likeliest_branch


class TrieDrafter:
    """Drafts the store's continuations of the last tokens; feeds it what the target emits."""

    cache = None  # no model, no KV cache

    def __init__(self, store: NGramStore, max_nodes: int = 16):
        if max_nodes < 1:
            raise ValueError(f"max_nodes must be at least 1, got {max_nodes}")
        self.store = store
        self.max_nodes = max_nodes
        self.context: list[int] = []  # the tokens before the next root (the store keys on its tail)

    def start(self, prompt: list[int]) -> None:
        """A new request: the store forgets the last prompt and learns this one."""
        self.store.start_request()
        self.store.add_prompt(prompt)
        self.context = list(prompt[-self.context_length():-1])

    def context_length(self) -> int:
        return max(self.store.key_lengths)

    def draft(self, root_token: int, root_position: int, policy: FallbackPolicy,
              tree: TokenTree | None = None, max_nodes: int | None = None) -> TokenTree:
        """The retrieved tree below root_token. tree: add the branches into this tree
        (another drafter's) instead, with the trie's own node budget (max_nodes, at
        most self.max_nodes) and depth: a model drafter may have used all of the
        policy's, and these nodes cost no drafting."""
        if tree is not None:
            budget = self.max_nodes if max_nodes is None else min(max_nodes, self.max_nodes)
            return self.store.draft_tree(root_token, self.context, max_nodes=budget, tree=tree)
        budget = min(self.max_nodes, policy.max_nodes)
        tree = self.store.draft_tree(root_token, self.context, max_nodes=budget, max_depth=policy.max_depth)
        return self.extend_likeliest(tree, budget, policy.max_depth)

    def extend_likeliest(self, tree: TokenTree, max_nodes: int, max_depth: int) -> TokenTree:
        """Retrieves again below the likeliest branch's leaf, from the tokens that lead
        to it, while nodes and depth are left: a stored continuation stops at the
        store's depth, a stretch copied from the prompt does not."""
        while len(tree) - 1 < max_nodes:
            path = likeliest_branch(tree)
            leaf, size = path[-1], len(tree)
            if leaf == 0 or tree.depths[leaf] >= max_depth:
                break
            context = self.context + [tree.root_token] + [tree.tokens[n] for n in path[1:-1]]
            self.store.draft_tree(tree.tokens[leaf], context[-self.context_length():], max_nodes=max_nodes + 1 - size,
                                  max_depth=max_depth, tree=tree, below=leaf)
            if len(tree) == size:
                break
        return tree

    def passes_to_emit(self, root_token: int, tokens: list[int], policy: FallbackPolicy) -> float:
        """How many passes the trie alone would have taken to emit `tokens` after
        root_token, drafting as it would have before each (called before commit):
        each pass emits its tree's path along them plus the target's next token.
        A last pass whose path runs past the end of `tokens` counts for the share
        it emits of what its branch would have: counted whole, a round of 25 tokens
        that the trie copies in about 4 passes came out a quarter dearer."""
        saved = self.context
        try:
            passes, done, root = 0.0, 0, root_token
            while done < len(tokens):
                tree, left = self.draft(root, 0, policy), tokens[done:]
                matched, node = path_along(tree, left)
                if matched == len(left):
                    return passes + matched / (branch_length(tree, node) + 1)
                self.context = (self.context + [root] + left[:matched])[-self.context_length():]
                root, done, passes = left[matched], done + matched + 1, passes + 1
        finally:
            self.context = saved
        return passes

    def skip(self, root_token: int, verdict: Verdict) -> None:
        self.commit(TokenTree(root_token), verdict)

    def commit(self, tree: TokenTree, verdict: Verdict) -> None:
        self.store.add_output(verdict.tokens)
        # The root was already emitted (or was the prompt's last token); the last
        # emitted token becomes the next root.
        self.context = (self.context + [tree.root_token] + verdict.tokens[:-1])[-self.context_length():]


class MergedDrafter:
    """The small model's tree with the trie's branches added, one verification pass.
    When the trie alone is confident far enough (its likeliest branch at least
    `trie_only_depth` deep), the small model does not draft this round: copying
    from the prompt needs no model, and the small model's sequential passes would
    cost more than they add. Its cache then catches up through `pending`, in one
    batched pass with the next round. Trie nodes the small model never ran wait in
    TreeDrafter.pending too, when accepted.

    The trie's share of a merged tree adapts: it doubles (up to the trie drafter's
    max_nodes) after a pass where the trie helped, and halves (down to none) after a
    pass where it did not. The trie helped when the pass accepted a node only the trie
    proposed, or when the trie's own tree for the round (drafted every round, for
    trie_only_depth) follows the target's tokens past the accepted path: so a share
    of none still notices when the text starts to repeat, and on text that repeats
    nothing the merged tree is the small model's alone. Rejected trie branches are
    rows the target still computes (measured: tree + trie 0.89x tree alone on plain
    HumanEval at 1 GiB with a fixed share; session 19, with a share of at least
    one node, 0.94x in the median of five runs with as many passes).

    With `parking` (a streamed target), every round is trie-only while the small
    model is parked, and each round's rate goes to the parking, which decides
    when to park or unpark (drafter_parking.py)."""

    def __init__(self, tree_drafter: TreeDrafter, trie_drafter: TrieDrafter, trie_only_depth: int | None = 4,
                 parking: DrafterParking | None = None):
        self.tree_drafter = tree_drafter
        self.trie_drafter = trie_drafter
        self.trie_only_depth = trie_only_depth  # None: the small model always drafts
        self.parking = parking
        self.model_drafted = False  # whether the small model drafted this round
        self.trie_share = trie_drafter.max_nodes  # trie nodes the next merged tree may take
        self._started = self._drafted = 0.0       # perf_counter at this round's start and at its tree's
        self._policy: FallbackPolicy | None = None  # this round's, for the trie's replay (_observe)
        self._trie_tree: TokenTree | None = None  # the trie's own tree for this round (trie_share_adapt)
        self.text: list[int] = []  # the committed tokens before the next root (a released cache's refill)

    @property
    def cache(self):
        return self.tree_drafter.cache

    @property
    def model(self):
        return self.tree_drafter.model

    def start(self, prompt: list[int]) -> None:
        self.tree_drafter.start(prompt)
        self.trie_drafter.start(prompt)
        self.text = list(prompt[:-1])

    def draft(self, root_token: int, root_position: int, policy: FallbackPolicy) -> TokenTree:
        self._started, self._policy = time.perf_counter(), policy
        trie_tree = self._trie_tree = self.trie_drafter.draft(root_token, root_position, policy)
        trie_only = self.parked or (self.trie_only_depth is not None
                                    and branch_length(trie_tree, 0) >= self.trie_only_depth)
        self.model_drafted = not trie_only
        if trie_only:
            self.tree_drafter.abandon()
            tree = trie_tree
        else:
            # The trie's branches go into the small model's own tree before it is
            # frozen for verification, so node numbers agree on both sides.
            extend = None if self.trie_share == 0 else (
                lambda tree: self.trie_drafter.draft(root_token, root_position, policy, tree=tree,
                                                     max_nodes=self.trie_share))
            tree = self.tree_drafter.draft(root_token, root_position, policy, extend=extend)
        self._drafted = time.perf_counter()
        return tree

    def skip(self, root_token: int, verdict: Verdict) -> None:
        self.tree_drafter.skip(root_token, verdict)
        self.trie_drafter.skip(root_token, verdict)
        self.text.append(root_token)

    @property
    def parked(self) -> bool:
        """Whether the small model is parked (it neither drafts nor catches up)."""
        return self.parking is not None and self.parking.parked

    def catch_up(self) -> None:
        if not self.parked:
            self.tree_drafter.catch_up()

    def draft_provisionally(self, stop, max_nodes: int) -> int:
        return self.tree_drafter.draft_provisionally(stop, max_nodes) if self.model_drafted else 0

    def commit(self, tree: TokenTree, verdict: Verdict) -> int:
        carried, committed = 0, [tree.root_token] + verdict.tokens[:-1]
        if self.model_drafted:
            carried = self.tree_drafter.commit(tree, verdict)
            self.trie_share_adapt(tree, verdict)
        else:
            # The small model ran nothing this round: the root and the accepted
            # tokens precede the next root in its cache.
            self.tree_drafter.pending += committed
        self.text += committed
        if self.parking is not None:
            self._observe(tree.root_token, verdict)
            if self.parked and self.cache.n:
                self.tree_drafter.release(self.text)
        self.trie_drafter.commit(tree, verdict)
        return carried

    def _observe(self, root_token: int, verdict: Verdict) -> None:
        now = time.perf_counter()
        if self.model_drafted:
            trie_passes = self.trie_drafter.passes_to_emit(root_token, verdict.tokens, self._policy)
            self.parking.observe_model_round(len(verdict.tokens), now - self._started, trie_passes,
                                             now - self._drafted)
        else:
            self.parking.observe_trie_round(len(verdict.tokens), now - self._started)

    def trie_share_adapt(self, tree: TokenTree, verdict: Verdict) -> None:
        accepted = verdict.accepted_nodes[1:]
        trie_helped = any(tree.sources[node] == "trie" for node in accepted) or (
            self._trie_tree is not None and path_along(self._trie_tree, verdict.tokens)[0] > len(accepted))
        if trie_helped:
            self.trie_share = min(self.trie_drafter.max_nodes, max(1, 2 * self.trie_share))
        else:
            self.trie_share //= 2


def path_along(tree: TokenTree, tokens: list[int]) -> tuple[int, int]:
    """How many of tokens, from the first, lie on one path down from the tree's
    root, and the node that path reaches."""
    node = 0
    for matched, token in enumerate(tokens):
        below = tree.child(node, token)
        if below is None:
            return matched, node
        node = below
    return len(tokens), node
