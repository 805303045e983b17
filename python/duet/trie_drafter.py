"""Drafts from an n-gram store, for duet.speculative.speculative_generate: alone
with the target (no draft model), or merged into the small model's tree.

Retrieval costs no model pass, so the trie drafter does not follow the policy's
adaptive threshold (LLMCad's alpha trades drafting cost against acceptance; here
drafting is free and a rejected branch costs only verification rows). It obeys
the policy's caps on depth and tree size, and its own count thresholds."""
from __future__ import annotations

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
    max_nodes) after a pass that accepted a node only the trie proposed, and halves
    (down to one) after a pass that did not. On text that repeats nothing the trie's
    branches are rejected rows the target still computes (measured: tree + trie
    0.89x tree alone on plain HumanEval at 1 GiB with a fixed share); where the text
    repeats, the share stays high."""

    def __init__(self, tree_drafter: TreeDrafter, trie_drafter: TrieDrafter, trie_only_depth: int | None = 4):
        self.tree_drafter = tree_drafter
        self.trie_drafter = trie_drafter
        self.trie_only_depth = trie_only_depth  # None: the small model always drafts
        self.model_drafted = False  # whether the small model drafted this round
        self.trie_share = trie_drafter.max_nodes  # trie nodes the next merged tree may take

    @property
    def cache(self):
        return self.tree_drafter.cache

    @property
    def model(self):
        return self.tree_drafter.model

    @property
    def steps(self) -> int:
        return self.tree_drafter.steps

    def start(self, prompt: list[int]) -> None:
        self.tree_drafter.start(prompt)
        self.trie_drafter.start(prompt)

    def draft(self, root_token: int, root_position: int, policy: FallbackPolicy) -> TokenTree:
        if self.trie_only_depth is not None:
            trie_tree = self.trie_drafter.draft(root_token, root_position, policy)
            if branch_length(trie_tree, 0) >= self.trie_only_depth:
                self.model_drafted = False
                self.tree_drafter.abandon()
                return trie_tree
        self.model_drafted = True
        # The trie's branches go into the small model's own tree before it is
        # frozen for verification, so node numbers agree on both sides.
        return self.tree_drafter.draft(
            root_token, root_position, policy,
            extend=lambda tree: self.trie_drafter.draft(root_token, root_position, policy, tree=tree,
                                                        max_nodes=self.trie_share))

    def skip(self, root_token: int, verdict: Verdict) -> None:
        self.tree_drafter.skip(root_token, verdict)
        self.trie_drafter.skip(root_token, verdict)

    def catch_up(self) -> None:
        self.tree_drafter.catch_up()

    def draft_provisionally(self, stop, max_nodes: int) -> int:
        return self.tree_drafter.draft_provisionally(stop, max_nodes) if self.model_drafted else 0

    def commit(self, tree: TokenTree, verdict: Verdict) -> int:
        carried = 0
        if self.model_drafted:
            carried = self.tree_drafter.commit(tree, verdict)
            self.trie_share_adapt(tree, verdict)
        else:
            # The small model ran nothing this round: the root and the accepted
            # tokens precede the next root in its cache.
            self.tree_drafter.pending += [tree.root_token] + verdict.tokens[:-1]
        self.trie_drafter.commit(tree, verdict)
        return carried

    def trie_share_adapt(self, tree: TokenTree, verdict: Verdict) -> None:
        trie_helped = any(tree.sources[node] == "trie" for node in verdict.accepted_nodes[1:])
        if trie_helped:
            self.trie_share = min(self.trie_drafter.max_nodes, 2 * self.trie_share)
        else:
            self.trie_share = max(1, self.trie_share // 2)
