"""duet's Model against the plain float64 numpy forward pass (reference_model.py) on a
tiny F32 model: prompt blocks, decoded tokens and a token tree, each attending over
what the cache holds. Also the layers' kept buffers (LayerScratch)."""
import numpy as np
import pytest

from duet import _core
from duet.gguf_file import GGUFFile
from duet.kv_cache import KVCache
from duet.model import SCRATCH_KEPT_ROWS, Model
from reference_model import ReferenceQwen2
from tiny_models import write_tiny_model

TOKENS = [5, 77, 12, 140, 3, 9, 250, 31, 64, 2, 18, 111, 7]


@pytest.fixture(scope="module")
def tiny_f32(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("model") / "f32.gguf", weight_type="F32", tied=False, seed=11)


def tiny_model(path, kv_type: str = "f16") -> tuple[Model, KVCache]:
    model = Model(GGUFFile(path), _core.ThreadPool(2))
    return model, model.new_cache(256, kv_type)


def assert_close_to_reference(logits: np.ndarray, expected: np.ndarray) -> None:
    # f32 sums against float64 ones: the error seen is about 3e-7 of the largest logit.
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_prompt_blocks_and_decoded_tokens_match_the_reference(tiny_f32):
    model, cache = tiny_model(tiny_f32, "f32")
    prompt, decoded = TOKENS[:9], TOKENS[9:]
    rows = [model.forward(prompt[:4], cache, logits_rows="all", prompt=True),
            model.forward(prompt[4:], cache, logits_rows="all", prompt=True)]
    rows += [model.forward([token], cache) for token in decoded]
    assert_close_to_reference(np.concatenate(rows), ReferenceQwen2(tiny_f32).forward(TOKENS))


def test_a_token_tree_matches_the_reference(tiny_f32):
    # After a five-token prefix, a tree of four nodes: 0 and 1 are siblings, 2 is 1's
    # child and 3 is 2's. A node sees the prefix, its ancestors and itself, at the
    # position of its depth.
    model, cache = tiny_model(tiny_f32, "f32")
    prefix, tree, parents = TOKENS[:5], TOKENS[5:9], [-1, -1, 1, 2]
    model.prefill(prefix, cache)
    n = len(prefix) + len(tree)
    visible = np.tril(np.ones((n, n), dtype=bool))
    visible[len(prefix):, len(prefix):] = False
    for node in range(len(tree)):
        ancestor = node
        while ancestor >= 0:
            visible[len(prefix) + node, len(prefix) + ancestor] = True
            ancestor = parents[ancestor]
    depth = visible[len(prefix):, len(prefix):].sum(axis=1)  # 1 for a root
    positions = np.concatenate([np.arange(len(prefix)), len(prefix) - 1 + depth])
    got = model.forward(tree, cache, positions=positions[len(prefix):], mask=visible[len(prefix):].astype(np.uint8),
                        logits_rows="all")
    expected = ReferenceQwen2(tiny_f32).forward(prefix + tree, positions=positions, mask=visible)
    assert_close_to_reference(got, expected[len(prefix):])


def test_kept_buffers_give_the_bits_of_fresh_ones(tiny_f32):
    # A block after a larger one runs in buffers that hold the larger one's values:
    # every op must write its whole output, or these logits would differ.
    (kept, kept_cache), (fresh, fresh_cache) = tiny_model(tiny_f32), tiny_model(tiny_f32)
    kept.forward(TOKENS[:8], kept_cache, logits_rows=None, prompt=True)
    fresh.forward(TOKENS[:8], fresh_cache, logits_rows=None, prompt=True)
    grown = kept.scratch.nbytes
    assert grown > 0
    fresh.scratch.release()
    assert fresh.scratch.nbytes == 0
    got = kept.forward(TOKENS[8:11], kept_cache, logits_rows="all")
    assert kept.scratch.nbytes == grown  # kept, not made again
    np.testing.assert_array_equal(got, fresh.forward(TOKENS[8:11], fresh_cache, logits_rows="all"))


def test_only_long_passes_give_their_buffers_back(tiny_f32):
    model, cache = tiny_model(tiny_f32)
    model.forward(TOKENS, cache)
    kept = model.scratch.nbytes
    assert kept > 0
    model.prefill(np.resize(TOKENS, SCRATCH_KEPT_ROWS + 1), cache)
    assert model.scratch.nbytes == 0
    model.forward(TOKENS[:1], cache)
    assert 0 < model.scratch.nbytes < kept
