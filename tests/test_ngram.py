"""The n-gram store against a plain reference: windows counted by brute force."""
from __future__ import annotations

import collections
import json
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from duet.ngram_store import NGramStore, NGramStoreError


def reference_counts(tokens: list[int], key_length: int, depth: int) -> collections.Counter:
    """(key, continuation prefix) -> occurrences, by brute force over every window."""
    counts = collections.Counter()
    for end in range(key_length - 1, len(tokens) - 1):
        key = tuple(tokens[end - key_length + 1:end + 1])
        continuation = tokens[end + 1:end + 1 + depth]
        for n in range(1, len(continuation) + 1):
            counts[key, tuple(continuation[:n])] += 1
    return counts


def store_counts(store: NGramStore, kind: str) -> collections.Counter:
    counts = collections.Counter()
    for key, entry in store.keys.items():
        stack = [((), entry.root)]
        while stack:
            path, node = stack.pop()
            for token, child in (node.children or {}).items():
                value = getattr(child, kind)
                if value:
                    counts[key, path + (token,)] = value
                stack.append((path + (token,), child))
    return counts


def expected(tokens, store):
    total = collections.Counter()
    for n in store.key_lengths:
        total += reference_counts(tokens, n, store.depth)
    return total


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=0, max_size=40), st.integers(1, 4), st.lists(st.integers(1, 5)))
def test_counts_match_brute_force_whatever_the_chunking(tokens, depth, chunks):
    prompt_store = NGramStore(depth=depth)
    prompt_store.add_prompt(tokens)
    assert store_counts(prompt_store, "prompt") == expected(tokens, prompt_store)

    output_store = NGramStore(depth=depth)
    position = 0
    for size in chunks * 20:  # feed the output in uneven blocks
        output_store.add_output(tokens[position:position + size])
        position += size
    output_store.add_output(tokens[position:])
    assert store_counts(output_store, "output") == expected(tokens, output_store)
    assert store_counts(output_store, "prompt") == collections.Counter()


def test_output_after_prompt_counts_windows_from_the_prompts_last_token_on():
    store = NGramStore(key_lengths=(1,), depth=3)
    store.add_prompt([1, 2, 3])
    store.add_output([4, 5])
    out = store_counts(store, "output")
    # Windows starting in the prompt before its last token are prompt windows only.
    assert out == collections.Counter({((3,), (4,)): 1, ((3,), (4, 5)): 1, ((4,), (5,)): 1})


def test_ranking_puts_prompt_counts_before_output_counts():
    store = NGramStore(key_lengths=(1,), depth=2)
    store.add_output([7, 1] * 30)      # after 7: token 1, 30 times, as output
    store.start_request()
    store.add_prompt([7, 2])           # after 7: token 2, once, in the prompt
    ranked = store.continuations([7])
    assert [token for token, _, _ in ranked] == [2, 1]
    assert ranked[0][1:] == (1, 0) and ranked[1][1:] == (0, 30)
    store.start_request()              # the prompt is forgotten, output counts stay
    assert store.continuations([7]) == [(1, 0, 30)]


def test_start_request_drops_prompt_only_nodes():
    store = NGramStore(depth=3)
    store.add_prompt([1, 2, 3, 4, 5])
    assert len(store) > 0
    store.start_request()
    assert len(store) == 0 and not store.keys


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=300), st.integers(20, 80))
def test_entries_never_exceed_the_cap(tokens, cap):
    store = NGramStore(depth=4, max_entries=cap, max_key_entries=cap // 2)
    for i in range(0, len(tokens), 7):
        store.add_output(tokens[i:i + 7])
        assert store.n_entries <= cap
        assert store.n_entries == sum(count_nodes(entry.root) for entry in store.keys.values())
        assert all(entry.size <= cap // 2 for entry in store.keys.values())
    store.start_request()
    store.add_prompt(tokens)
    assert store.n_entries <= cap


def count_nodes(root) -> int:
    stack, n = [root], 0
    while stack:
        node = stack.pop()
        n += 1
        stack.extend((node.children or {}).values())
    return n


def test_least_recently_used_key_is_evicted_first():
    store = NGramStore(key_lengths=(1,), depth=1, max_entries=6, max_key_entries=2)
    store.add_prompt([10, 11])             # key 10
    store.add_prompt([20, 21])             # key 20
    store.add_prompt([30, 31])             # key 30: 6 entries, full
    store.draft_tree(10, [], max_nodes=1)  # touches key 10, so 20 is now the oldest
    store.add_prompt([40, 41])
    assert set(store.keys) == {(10,), (30,), (40,)}


def test_a_hot_key_keeps_its_frequent_continuations():
    store = NGramStore(key_lengths=(1,), depth=1, max_entries=1000, max_key_entries=5)
    store.add_output([0, 9] * 20)  # key 0 -> 9, many times
    for other in range(1, 8):      # key 0 -> rare tokens, once each
        store.add_output([0, 100 + other])
    assert store.keys[(0,)].size <= 5
    assert store.continuations([0])[0][0] == 9


def test_draft_tree_shape_depth_and_budget():
    store = NGramStore(key_lengths=(1, 2), depth=6, min_share=0.2)
    # After 5: "1 2 3 4" three times, "7 8" twice; after "9 5" only "7 8".
    store.add_prompt([5, 1, 2, 3, 4, 0] * 3 + [9, 5, 7, 8, 0] * 2)
    tree = store.draft_tree(5, [0], max_nodes=32)
    paths = {tuple(tree.tokens[i] for i in tree.path(leaf)[1:]) for leaf in range(len(tree)) if not tree.children(leaf)}
    # The 2-token key (0, 5) says 1 for sure, then splits at the store's depth; the
    # 1-token key (5) adds 7 8 0, seen twice, and stops where it was seen once.
    assert paths == {(1, 2, 3, 4, 0, 5), (1, 2, 3, 4, 0, 9), (7, 8, 0)}
    assert tree.cumulative[1] == pytest.approx(1.0)
    assert all(source == "trie" for source in tree.sources[1:])
    assert max(tree.depths) <= store.depth
    # The 2-token key (9, 5) only ever saw 7 8: the tree follows it alone within a budget of 2.
    narrow = store.draft_tree(5, [9], max_nodes=2)
    assert narrow.tokens == [5, 7, 8]
    # A cap of K nodes holds, and the likeliest branch comes first.
    small = store.draft_tree(5, [0], max_nodes=3)
    assert len(small) == 4 and small.tokens[1:] == [1, 2, 3]


def test_draft_tree_stops_where_counts_split():
    store = NGramStore(key_lengths=(1,), depth=5, min_share=0.4)
    # After 1 always 2; after 2 one of four different tokens.
    store.add_prompt([1, 2, 10, 0, 1, 2, 11, 0, 1, 2, 12, 0, 1, 2, 13, 0])
    tree = store.draft_tree(1, [], max_nodes=10)
    assert tree.tokens == [1, 2]
    assert tree.cumulative[1] == pytest.approx(1.0)
    loose = NGramStore(key_lengths=(1,), depth=5, min_share=0.2)
    loose.add_prompt([1, 2, 10, 0, 1, 2, 11, 0, 1, 2, 12, 0, 1, 2, 13, 0])
    tree = loose.draft_tree(1, [], max_nodes=10)
    shares = sorted(tree.cumulative[i] for i in tree.children(1))
    assert shares == pytest.approx([0.25] * 4)


def test_cumulative_is_the_product_of_count_shares():
    store = NGramStore(key_lengths=(1,), depth=3, min_share=0.0)
    store.add_prompt([1, 2, 3, 0, 1, 2, 4, 0, 1, 2, 3, 0, 1, 5, 0])
    tree = store.draft_tree(1, [], max_nodes=10)
    node = {tuple(tree.tokens[i] for i in tree.path(n)[1:]): n for n in range(len(tree))}
    assert tree.cumulative[node[2,]] == pytest.approx(3 / 4)
    assert tree.cumulative[node[2, 3]] == pytest.approx(3 / 4 * 2 / 3)


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    store = NGramStore(depth=4, max_entries=500)
    store.add_output(rng.integers(0, 20, 400).tolist())
    store.add_prompt([1, 2, 3])  # prompt counts are not saved
    path = tmp_path / "store.json"
    store.save(path)
    loaded = NGramStore.load(path)
    assert loaded.config() == store.config()
    assert store_counts(loaded, "output") == store_counts(store, "output")
    assert list(loaded.keys) == [k for k, e in store.keys.items() if e.root.output]
    assert not list(tmp_path.glob(".*tmp"))


def test_save_replaces_atomically_and_leaves_no_temp_on_failure(tmp_path, monkeypatch):
    store = NGramStore()
    store.add_output([1, 2, 3, 1, 2])
    path = tmp_path / "store.json"
    store.save(path)
    before = path.read_bytes()

    def broken_dump(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(json, "dump", broken_dump)
    store.add_output([9, 9, 9])
    with pytest.raises(OSError):
        store.save(path)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("content", [
    b"\x00\x01garbage",
    b'{"format": "something-else", "version": 1}',
    b'[1, 2, 3]',
    b'{"format": "duet-ngram-store", "version": 99, "config": {}, "keys": []}',
    b'{"format": "duet-ngram-store", "version": 1, "config": {"depth": 2}, "keys": [[[1], [2, 1, 5, 3]]]}',
    b'{"format": "duet-ngram-store", "version": 1, "config": {"depth": 2}, "keys": [[[1], [2, 3, 5, 1]]]}',
    b'{"format": "duet-ngram-store", "version": 1, "config": {"depth": 2}, "keys": [[[1], [2, 1, 5]]]}',
    b'{"format": "duet-ngram-store", "version": 1, "config": {"bogus": 2}, "keys": []}',
])
def test_load_rejects_corrupt_or_foreign_files(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(NGramStoreError):
        NGramStore.load(path)


def test_load_rejects_a_truncated_save(tmp_path):
    store = NGramStore()
    store.add_output(list(range(50)) * 2)
    path = tmp_path / "store.json"
    store.save(path)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(NGramStoreError):
        NGramStore.load(path)


def test_nbytes_tracks_the_memory_actually_held():
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 5000, 20_000).tolist()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    store = NGramStore(depth=4, max_entries=1_000_000)
    store.add_output(tokens)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert store.n_entries > 50_000
    assert 0.5 < store.nbytes / held < 2.0


@pytest.mark.parametrize("kwargs", [{"key_lengths": ()}, {"key_lengths": (0,)}, {"depth": 0},
                                    {"max_entries": 10, "max_key_entries": 20}, {"min_share": 1.5}])
def test_bad_configuration_is_refused(kwargs):
    with pytest.raises(ValueError):
        NGramStore(**kwargs)
