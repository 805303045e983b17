"""An n-gram store over token ids: what followed a context of the last one or two
tokens, as a trie of continuations up to `depth` tokens deep (Lookahead's forest
of tries, one per context key).

Each trie node counts how often its path followed the key, separately for the
current request's prompt and for generated output. Prompt counts rank first: text
the user just gave is the best guide to what will be copied next; output counts
persist across the requests of a session and can be saved and loaded. Branch
shares (a node's pseudo-probability) use both counts together, so that where the
output departs from the prompt (an edit: a renamed identifier) the output's way
opens a branch of its own instead of staying buried under the prompt's.

Memory is bounded by `max_entries` trie nodes. Whole keys are evicted least
recently used: code repeats what was written recently (identifiers, the lines
being edited), the current prompt's keys are always recent, and LRU costs O(1)
per access. A key that alone grows past `max_key_entries` (a context such as an
indent that precedes everything) has its counts halved and its zero-count nodes
dropped until it fits, so its frequent continuations survive."""
from __future__ import annotations

import heapq
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterator, Sequence

from duet.token_tree import TokenTree

FORMAT_NAME = "duet-ngram-store"
FORMAT_VERSION = 1
# Approximate CPython cost of one node (object with slots, its children dict,
# its slot in the parent's dict) and of one key (tuple, LRU entry); checked
# against tracemalloc in the tests.
NODE_BYTES = 200
KEY_BYTES = 200


class NGramStoreError(ValueError):
    """A store file that is not a valid duet n-gram store."""


class TrieNode:
    __slots__ = ("children", "prompt", "output")

    def __init__(self) -> None:
        self.children: dict[int, TrieNode] | None = None  # token -> node
        self.prompt = 0  # times this path followed its key in the current prompt
        self.output = 0  # times it followed its key in generated output

    @property
    def count(self) -> int:
        return self.prompt + self.output

    def child(self, token: int) -> TrieNode | None:
        return None if self.children is None else self.children.get(token)

    def add_child(self, token: int) -> TrieNode:
        if self.children is None:
            self.children = {}
        node = self.children[token] = TrieNode()
        return node


class KeyTrie:
    """The continuations of one context key, and how many nodes they hold."""
    __slots__ = ("root", "size")

    def __init__(self) -> None:
        self.root = TrieNode()
        self.size = 1  # nodes, the root included


class NGramStore:
    def __init__(self, key_lengths: Sequence[int] = (1, 2), depth: int = 8, max_entries: int = 200_000,
                 max_key_entries: int | None = None, min_count: int = 1, min_share: float = 0.25,
                 short_key_min_count: int = 2):
        """key_lengths: context lengths (tokens ending at the root) that key the tries.
        depth: longest stored continuation. max_entries: cap on trie nodes overall;
        max_key_entries: cap per key (default max_entries // 8).
        min_count, min_share: retrieval stops a branch at a node seen fewer times, or
        whose share of its parent's count is smaller; short_key_min_count replaces
        min_count for keys shorter than the longest, whose single token of context
        makes one sighting weak evidence (llama.cpp's lookup gates likewise)."""
        key_lengths = tuple(sorted(set(int(n) for n in key_lengths)))
        if not key_lengths or key_lengths[0] < 1:
            raise ValueError(f"key lengths must be positive, got {key_lengths}")
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        max_key_entries = max_entries // 8 if max_key_entries is None else max_key_entries
        if max_key_entries < depth + 1 or max_entries < max_key_entries:
            raise ValueError(f"need depth + 1 <= max_key_entries <= max_entries, got depth {depth}, "
                             f"max_key_entries {max_key_entries}, max_entries {max_entries}")
        if not 0 <= min_share <= 1 or min_count < 1 or short_key_min_count < 1:
            raise ValueError(f"need min counts >= 1 and min_share in [0, 1], got {min_count}, "
                             f"{short_key_min_count}, {min_share}")
        self.key_lengths = key_lengths
        self.depth = depth
        self.max_entries = max_entries
        self.max_key_entries = max_key_entries
        self.min_count = min_count
        self.min_share = min_share
        self.short_key_min_count = short_key_min_count
        self.keys: OrderedDict[tuple[int, ...], KeyTrie] = OrderedDict()  # least recently used first
        self.n_entries = 0
        self.prompt_keys: set[tuple[int, ...]] = set()  # keys holding prompt counts
        self.tail: list[int] = []  # recent tokens whose windows are still open
        self.tail_first_start = 0  # first index of tail whose continuation counts as output

    # ---- configuration and size ---------------------------------------------------

    def config(self) -> dict:
        return {"key_lengths": list(self.key_lengths), "depth": self.depth, "max_entries": self.max_entries,
                "max_key_entries": self.max_key_entries, "min_count": self.min_count, "min_share": self.min_share,
                "short_key_min_count": self.short_key_min_count}

    @property
    def nbytes(self) -> int:
        """Approximate memory held by the tries."""
        return self.n_entries * NODE_BYTES + len(self.keys) * KEY_BYTES

    def __len__(self) -> int:
        return self.n_entries

    # ---- insertion ----------------------------------------------------------------

    def start_request(self) -> None:
        """Forgets the previous request's prompt counts and output tail; output counts stay."""
        for key in list(self.prompt_keys):
            entry = self.keys.get(key)
            if entry is not None:
                self._recount(key, entry, output_counts_only)
        self.prompt_keys.clear()
        self.tail, self.tail_first_start = [], 0

    def add_prompt(self, tokens: Sequence[int]) -> None:
        """Counts every window of the prompt as prompt evidence; later add_output
        calls continue from the prompt's last tokens."""
        tokens = [int(t) for t in tokens]
        for start in range(len(tokens) - 1):
            for key in self._keys_ending_at(tokens, start):
                self.prompt_keys.add(key)
                self._insert(key, tokens[start + 1:start + 1 + self.depth], "prompt")
        context = max(self.key_lengths)
        self.tail = tokens[-context:]
        self.tail_first_start = len(self.tail) - 1

    def add_output(self, tokens: Sequence[int]) -> None:
        """Counts newly emitted tokens as output evidence. Each new token extends the
        open windows of the last `depth` positions by one node, so calling this per
        token or per block gives the same counts."""
        context = max(self.key_lengths)
        for token in tokens:
            self.tail.append(int(token))
            end = len(self.tail) - 1
            for start in range(max(end - self.depth, self.tail_first_start), end):
                for key in self._keys_ending_at(self.tail, start):
                    self._extend(key, self.tail[start + 1:end], self.tail[end], first=start + 1 == end)
            drop = max(0, len(self.tail) - (context + self.depth))
            if drop:
                del self.tail[:drop]
                self.tail_first_start = max(0, self.tail_first_start - drop)

    def _keys_ending_at(self, tokens: Sequence[int], end: int) -> Iterator[tuple[int, ...]]:
        for n in self.key_lengths:
            if end - n + 1 >= 0:
                yield tuple(tokens[end - n + 1:end + 1])

    def _entry(self, key: tuple[int, ...]) -> KeyTrie:
        entry = self.keys.get(key)
        if entry is None:
            entry = self.keys[key] = KeyTrie()
            self.n_entries += 1
        else:
            self.keys.move_to_end(key)
        return entry

    def _insert(self, key: tuple[int, ...], continuation: Sequence[int], kind: str) -> None:
        """Counts one occurrence of key followed by continuation (a whole window)."""
        entry = self._entry(key)
        node = entry.root
        self._count(node, kind)
        for token in continuation:
            nxt = node.child(token)
            if nxt is None:
                nxt = node.add_child(token)
                entry.size += 1
                self.n_entries += 1
            node = nxt
            self._count(node, kind)
        self._enforce_limits(key, entry)

    def _extend(self, key: tuple[int, ...], path: Sequence[int], token: int, first: bool) -> None:
        """Adds one output token at the end of an open window: key, then path (counted
        already), then token. A window whose path was evicted meanwhile is dropped
        rather than resurrected with made-up counts."""
        if first:
            entry = self._entry(key)
            self._count(entry.root, "output")
        else:
            entry = self.keys.get(key)
            if entry is None:
                return
        node = entry.root
        for step in path:
            node = node.child(step)
            if node is None or node.output == 0:
                return
        nxt = node.child(token)
        if nxt is None:
            nxt = node.add_child(token)
            entry.size += 1
            self.n_entries += 1
        # A key evicted and re-created while a window was open can see windows
        # overlap; capping at the parent keeps child counts <= parent counts.
        nxt.output = min(nxt.output + 1, node.output)
        self._enforce_limits(key, entry)

    @staticmethod
    def _count(node: TrieNode, kind: str) -> None:
        if kind == "prompt":
            node.prompt += 1
        else:
            node.output += 1

    # ---- limits -------------------------------------------------------------------

    def _enforce_limits(self, key: tuple[int, ...], entry: KeyTrie) -> None:
        while entry.size > self.max_key_entries and key in self.keys:
            self._recount(key, entry, halved_counts)
        while self.n_entries > self.max_entries:
            old_key, old = self.keys.popitem(last=False)
            self.n_entries -= old.size
            self.prompt_keys.discard(old_key)

    def _recount(self, key: tuple[int, ...], entry: KeyTrie, recount: Callable[[TrieNode], tuple[int, int]]) -> None:
        """Replaces every count of a key by recount(node) -> (prompt, output) and drops
        nodes left at zero with their subtrees. Child counts never exceed their
        parent's and recount keeps that order, so a dropped subtree was at zero too."""
        removed = 0
        stack = [entry.root]
        entry.root.prompt, entry.root.output = recount(entry.root)
        while stack:
            node = stack.pop()
            if node.children is None:
                continue
            for token, child in list(node.children.items()):
                child.prompt, child.output = recount(child)
                if child.count == 0:
                    removed += subtree_size(child)
                    del node.children[token]
                else:
                    stack.append(child)
            if not node.children:
                node.children = None
        entry.size -= removed
        self.n_entries -= removed
        if entry.root.count == 0:
            del self.keys[key]
            self.n_entries -= entry.size
            self.prompt_keys.discard(key)

    # ---- retrieval ----------------------------------------------------------------

    def continuations(self, key: Sequence[int]) -> list[tuple[int, int, int]]:
        """(token, prompt count, output count) after key, best ranked first."""
        entry = self.keys.get(tuple(int(t) for t in key))
        if entry is None or entry.root.children is None:
            return []
        ranked = sorted(entry.root.children.items(), key=lambda kv: (-kv[1].prompt, -kv[1].output, kv[0]))
        return [(token, node.prompt, node.output) for token, node in ranked]

    def draft_tree(self, root_token: int, context_tail: Sequence[int], max_nodes: int = 16,
                   max_depth: int | None = None, tree: TokenTree | None = None, below: int = 0) -> TokenTree:
        """A tree of up to max_nodes new draft nodes below root_token, from the longest
        key that matches (context_tail's last tokens, then root_token), then shorter
        keys for what budget is left. Best-first by cumulative count share; a branch
        stops where a node's count or share of its parent falls under the store's
        thresholds. tree: grow into this tree (shared prefixes merge) instead of a new
        one, below its node `below` (whose token is root_token). max_depth counts from
        the tree's root."""
        tree = TokenTree(int(root_token)) if tree is None else tree
        reach = tree.depths[below] + self.depth
        max_depth = reach if max_depth is None else min(max_depth, reach)
        budget = len(tree) + max_nodes
        context = [int(t) for t in context_tail] + [int(root_token)]
        for n in reversed(self.key_lengths):
            if len(tree) >= budget:
                break
            key = tuple(context[-n:])
            entry = self.keys.get(key) if len(context) >= n else None
            if entry is not None:
                self.keys.move_to_end(key)
                min_count = self.min_count if n == self.key_lengths[-1] else self.short_key_min_count
                self._grow(tree, entry.root, budget, max_depth, min_count, below)
        return tree

    def _grow(self, tree: TokenTree, root: TrieNode, budget: int, max_depth: int, min_count: int,
              below: int) -> None:
        # (-cumulative, -prompt count, -output count, tie, parent index, token, share,
        # trie node): likeliest first; among equals prompt count first, output count second.
        heap: list[tuple[float, int, int, int, int, int, float, TrieNode]] = []
        tie = 0

        def push_children(parent_index: int, node: TrieNode) -> None:
            nonlocal tie
            if node.children is None or tree.depths[parent_index] >= max_depth:
                return
            for token, child in node.children.items():
                share = min(child.count / node.count, 1.0)
                if child.count >= min_count and share >= self.min_share:
                    tie += 1
                    heapq.heappush(heap, (-tree.cumulative[parent_index] * share, -child.prompt, -child.output,
                                          tie, parent_index, token, share, child))

        push_children(below, root)
        while heap and len(tree) < budget:
            *_, parent, token, share, node = heapq.heappop(heap)
            index = tree.add(token, parent, share, source="trie")
            push_children(index, node)

    # ---- persistence --------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Writes the output counts (prompt counts belong to one request) to path,
        atomically: a temporary file in the same folder, then a rename."""
        path = Path(path)
        payload = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "config": self.config(),
                   "keys": [[list(key), flatten_output(entry.root)] for key, entry in self.keys.items()
                            if entry.root.output > 0]}
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(temp, "w", encoding="utf-8") as f:
                json.dump(payload, f, separators=(",", ":"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike) -> NGramStore:
        """A store with the saved configuration and output counts."""
        try:
            with open(path, encoding="utf-8") as f:
                payload = json.load(f)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise NGramStoreError(f"{path}: not a duet n-gram store ({e})") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
            raise NGramStoreError(f"{path}: not a duet n-gram store (format field missing or foreign)")
        if payload.get("version") != FORMAT_VERSION:
            raise NGramStoreError(f"{path}: n-gram store version {payload.get('version')!r}, "
                                  f"this build reads {FORMAT_VERSION}")
        try:
            store = cls(**payload["config"])
            for key, flat in payload["keys"]:
                store._restore(key, flat)
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise NGramStoreError(f"{path}: corrupt n-gram store ({e})") from None
        return store

    def _restore(self, key: list, flat: list) -> None:
        key = tuple(checked_int(t, "token") for t in key)
        if len(key) not in self.key_lengths or key in self.keys:
            raise ValueError(f"unexpected or repeated key {key}")
        entry = self.keys[key] = KeyTrie()
        self.n_entries += 1
        entry.root.output = checked_int(flat[0], "count", 1)
        path = [entry.root]
        for depth, token, count in zip(flat[1::3], flat[2::3], flat[3::3]):
            depth, token, count = checked_int(depth, "depth", 1), checked_int(token, "token"), checked_int(count, "count", 1)
            if depth > len(path) or depth > self.depth:
                raise ValueError(f"node depth {depth} skips a level or exceeds {self.depth}")
            del path[depth:]
            parent = path[-1]
            if parent.child(token) is not None or count > parent.output:
                raise ValueError("a repeated child or a child counted more than its parent")
            node = parent.add_child(token)
            node.output = count
            path.append(node)
            entry.size += 1
            self.n_entries += 1
        if (len(flat) - 1) % 3:
            raise ValueError("truncated node list")
        self._enforce_limits(key, entry)


def output_counts_only(node: TrieNode) -> tuple[int, int]:
    return 0, node.output


def halved_counts(node: TrieNode) -> tuple[int, int]:
    return node.prompt // 2, node.output // 2


def subtree_size(node: TrieNode) -> int:
    size, stack = 0, [node]
    while stack:
        node = stack.pop()
        size += 1
        if node.children:
            stack.extend(node.children.values())
    return size


def flatten_output(root: TrieNode) -> list[int]:
    """[root count, then (depth, token, count) per node in preorder], nodes with an
    output count only."""
    flat = [root.output]
    stack = [(1, token, child) for token, child in sorted(root.children.items(), reverse=True)] if root.children else []
    while stack:
        depth, token, node = stack.pop()
        if node.output == 0:
            continue
        flat += [depth, token, node.output]
        if node.children:
            stack.extend((depth + 1, t, c) for t, c in sorted(node.children.items(), reverse=True))
    return flat


def checked_int(value, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} {value!r} is not an integer >= {minimum}")
    return value
