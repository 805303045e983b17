"""A token tree of draft tokens below a root: the last accepted token, which
neither model has processed yet. Node 0 is the root; every other node has a parent
with a smaller index, so the nodes are in an order a forward pass can take."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TokenTree:
    root_token: int
    tokens: list[int] = field(default_factory=list)       # [n] token of each node; node 0 is the root
    parents: list[int] = field(default_factory=list)      # [n] parent index; -1 for the root
    depths: list[int] = field(default_factory=list)       # [n] 0 for the root
    cumulative: list[float] = field(default_factory=list)  # [n] product of draft probabilities down to the node
    sources: list[str] = field(default_factory=list)      # [n] who proposed it: "root", "draft", "trie"

    def __post_init__(self):
        if not self.tokens:
            self.tokens, self.parents, self.depths = [self.root_token], [-1], [0]
            self.cumulative, self.sources = [1.0], ["root"]

    def __len__(self) -> int:
        return len(self.tokens)

    def add(self, token: int, parent: int, probability: float, source: str = "draft") -> int:
        """Adds token below parent (or returns the existing child with that token,
        so that drafts from several sources share prefixes)."""
        existing = self.child(parent, token)
        if existing is not None:
            self.cumulative[existing] = max(self.cumulative[existing], self.cumulative[parent] * probability)
            return existing
        self.tokens.append(int(token))
        self.parents.append(parent)
        self.depths.append(self.depths[parent] + 1)
        self.cumulative.append(self.cumulative[parent] * probability)
        self.sources.append(source)
        return len(self.tokens) - 1

    def child(self, parent: int, token: int) -> int | None:
        for i in range(parent + 1, len(self.tokens)):
            if self.parents[i] == parent and self.tokens[i] == token:
                return i
        return None

    def children(self, parent: int) -> list[int]:
        return [i for i in range(parent + 1, len(self.tokens)) if self.parents[i] == parent]

    def path(self, node: int) -> list[int]:
        """Node indices from the root down to node."""
        out = []
        while node >= 0:
            out.append(node)
            node = self.parents[node]
        return out[::-1]

    def copy(self) -> "TokenTree":
        return TokenTree(self.root_token, list(self.tokens), list(self.parents), list(self.depths),
                         list(self.cumulative), list(self.sources))

    def subtree(self, node: int) -> tuple["TokenTree", dict[int, int]]:
        """The tree below node, re-rooted at it (depths and cumulative probabilities
        taken from it), and the map from old node indices to new ones."""
        mapping = {node: 0}
        out = TokenTree(self.tokens[node])
        base_depth, base_cum = self.depths[node], self.cumulative[node] or 1.0
        for i in range(node + 1, len(self.tokens)):
            if self.parents[i] in mapping:
                mapping[i] = len(out.tokens)
                out.tokens.append(self.tokens[i])
                out.parents.append(mapping[self.parents[i]])
                out.depths.append(self.depths[i] - base_depth)
                out.cumulative.append(self.cumulative[i] / base_cum)
                out.sources.append(self.sources[i])
        return out, mapping

    def positions(self, root_position: int) -> np.ndarray:
        """[n] RoPE position of each node: siblings share their depth."""
        return root_position + np.asarray(self.depths, dtype=np.int32)

    def mask(self, n_past: int, nodes: list[int] | None = None) -> np.ndarray:
        """[len(nodes), n_past + len(nodes)] uint8 visibility for a forward pass over
        `nodes` (default all, in index order) appended after n_past cache slots: each
        node sees the whole prefix, its ancestors among `nodes`, and itself."""
        nodes = list(range(len(self.tokens))) if nodes is None else nodes
        slot = {node: i for i, node in enumerate(nodes)}
        out = np.zeros((len(nodes), n_past + len(nodes)), dtype=np.uint8)
        out[:, :n_past] = 1
        for i, node in enumerate(nodes):
            while node >= 0 and node in slot:
                out[i, n_past + slot[node]] = 1
                node = self.parents[node]
        return out


@dataclass(frozen=True)
class Verdict:
    accepted_nodes: list[int]  # tree nodes on the accepted path, root first
    tokens: list[int]          # emitted tokens: the accepted draft tokens, then the target's own next token
    branch_length: int         # draft tokens on the branch the verdict followed (LLMCad's N_all)

    @property
    def n_draft_accepted(self) -> int:
        return len(self.accepted_nodes) - 1


def verify_greedy(tree: TokenTree, target_choice: np.ndarray) -> Verdict:
    """Walks down from the root while a child holds the target's choice at its
    parent. target_choice[i] is the target's argmax after node i (an array, or
    anything that gives a node's by index, read as the walk reaches the node)."""
    node, accepted = 0, [0]
    while True:
        choice = int(target_choice[node])  # read once: it may be computed as it is read
        nxt = tree.child(node, choice)
        if nxt is None:
            break
        node = nxt
        accepted.append(node)
    tokens = [tree.tokens[i] for i in accepted[1:]] + [choice]
    return Verdict(accepted, tokens, branch_length(tree, node))


def branch_length(tree: TokenTree, node: int) -> int:
    """Draft depth of the likeliest branch through node: its depth plus the
    likeliest chain of descendants below it."""
    return tree.depths[likeliest_branch(tree, node)[-1]]


def likeliest_branch(tree: TokenTree, node: int = 0) -> list[int]:
    """Node and its likeliest chain of descendants, down to a leaf."""
    out = [node]
    while kids := tree.children(out[-1]):
        out.append(max(kids, key=lambda k: tree.cumulative[k]))
    return out


def verify_sampled(tree: TokenTree, target_probs, rng: np.random.Generator) -> Verdict:
    """Speculative sampling over the tree. The drafted children of a node are fixed
    proposals (their draft distribution is a point mass), so a child with token x is
    accepted with probability p(x) under the target's distribution p; on rejection
    x is removed from p and p renormalised (the residual), and the next child is
    tried. If none is accepted the target's token is drawn from the residual. The
    emitted token thus follows p exactly. target_probs: [n, vocab], rows sum to 1
    (an array, or anything that gives a node's row by index)."""
    node, accepted = 0, [0]
    while True:
        p = target_probs[node].astype(np.float64).copy()
        kids = sorted(tree.children(node), key=lambda k: -tree.cumulative[k])
        chosen = None
        for kid in kids:
            token = tree.tokens[kid]
            if rng.random() < p[token]:
                chosen = kid
                break
            remaining = 1.0 - p[token]
            p[token] = 0.0
            if remaining <= 0.0:
                break
            p /= remaining
        if chosen is None:
            total = p.sum()
            bonus = int(rng.choice(p.size, p=p / total)) if total > 0 else int(np.argmax(target_probs[node]))
            tokens = [tree.tokens[i] for i in accepted[1:]] + [bonus]
            return Verdict(accepted, tokens, branch_length(tree, node))
        node = chosen
        accepted.append(node)
