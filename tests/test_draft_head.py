"""The drafter's partial LM head: the scored ids get the logits of the head's rows
as held (Q4_0 where the file's type is wider, else the file's rows, bit for bit),
the rest -inf; rarer tokens the model is fed join, up to the cap; the rows go
and come back with release and load; drafting with it keeps the target's output;
a budget counts only the rows it holds."""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf import quants as gguf_quants

from duet import _core, draft_head
from duet.engine import Engine
from duet.gguf_file import GGUFFile
from duet.model import Model
from tiny_models import write_tiny_model

PROMPT = "def below_zero(operations): balance = 0 for op in operations: balance += op if balance < 0:"
Q4_0 = int(GGMLQuantizationType.Q4_0)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("head")
    target = write_tiny_model(folder / "target.gguf", n_layer=3, weight_type="Q8_0", seed=5)
    # Untied heads: a Q6_K one (wider than Q4_0: held as Q4_0) and a Q4_K one (as wide: held as it is).
    draft = write_tiny_model(folder / "draft.gguf", n_layer=1, weight_type="Q6_K", seed=5, tied=False)
    narrow = write_tiny_model(folder / "narrow.gguf", n_layer=1, weight_type="Q4_K", seed=5, tied=False)
    return target, draft, narrow


def hidden(n: int, n_embd: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, n_embd)).astype(np.float32)


def reference_logits(model: Model, ids: list[int], h: np.ndarray, flags=None) -> np.ndarray:
    """The logits of rows `ids` of the model's head converted as numpy and gguf do
    it: dequantized, then quantized to Q4_0 where that is narrower; h before the
    final norm, as Model.logits takes it."""
    head = model.gguf.tensor("output.weight")
    rows = head.data.reshape(head.shape[1], -1)[ids]
    type_id = head.type_id
    if draft_head.held_layout(head.type_id, rows.shape[1], model.config.n_embd)[0] == Q4_0:
        floats = gguf_quants.dequantize(rows, GGMLQuantizationType(head.type_id))
        rows, type_id = gguf_quants.quantize(floats, GGMLQuantizationType.Q4_0), Q4_0
    normed = _core.rms_norm(h, model.output_norm, model.config.rms_eps)
    return _core.matmul(type_id, np.ascontiguousarray(rows).reshape(-1), len(ids), model.config.n_embd, normed,
                        model.pool, "", prompt=flags)


@pytest.mark.parametrize("which, held", [(1, Q4_0), (2, int(GGMLQuantizationType.Q4_K))])
def test_scored_ids_get_the_held_rows_logits(paths, which, held):
    model = Model(GGUFFile(paths[which]), _core.ThreadPool(2))
    h = hidden(5, model.config.n_embd)
    full = model.logits(h)
    model.restrict_head(100, always=[400])
    model.draft_head.see([7, 250, 120, 250, 99999])  # an id past the vocabulary is ignored
    assert model.draft_head.type_id == held
    part = model.logits(h)
    scored = np.zeros(model.config.n_vocab, dtype=bool)
    scored[:100] = scored[[120, 250, 400]] = True
    ids = np.flatnonzero(scored).tolist()
    assert np.array_equal(part[:, scored], reference_logits(model, ids, h))
    if held != Q4_0:  # the file's own rows: the full head's logits
        assert np.array_equal(part[:, scored], full[:, scored])
    assert np.all(part[:, ~scored] == -np.inf)
    assert sorted(model.draft_head.extra_ids) == [120, 250, 400]


def test_prompt_order_rows_agree_too(paths):
    model = Model(GGUFFile(paths[1]), _core.ThreadPool(2))
    h, flags = hidden(9, model.config.n_embd), np.array([1, 1, 1, 1, 1, 1, 1, 1, 0], dtype=np.uint8)
    model.restrict_head(64)
    model.draft_head.see([300])
    assert np.array_equal(model.logits(h, flags)[:, [3, 63, 300]], reference_logits(model, [3, 63, 300], h, flags))


def test_released_rows_come_back_on_load(paths):
    model = Model(GGUFFile(paths[1]), _core.ThreadPool(1))
    model.restrict_head(50)
    model.draft_head.see([300, 120])
    h = hidden(2, model.config.n_embd)
    before = model.logits(h)
    model.draft_head.release()
    assert not model.draft_head.prefix.any()  # the pages went back: they read as zeros
    model.draft_head.load()
    assert np.array_equal(model.logits(h), before)


def test_forward_feeds_the_head_and_the_cap_holds(paths, monkeypatch):
    monkeypatch.setattr(draft_head, "MAX_EXTRA_ROWS", 3)
    model = Model(GGUFFile(paths[1]), _core.ThreadPool(1))
    model.restrict_head(16)
    model.forward([5, 300, 301, 17], model.new_cache(32), logits_rows=None)
    assert sorted(model.draft_head.extra_ids) == [17, 300, 301]
    model.forward([302, 303], model.new_cache(32), logits_rows=None)
    assert model.draft_head.extra_ids.size == 3
    assert model.draft_head.nbytes == (16 + 3) * model.draft_head.row_bytes


def test_empty_draft_vocabulary_is_refused(paths):
    model = Model(GGUFFile(paths[1]), _core.ThreadPool(1))
    with pytest.raises(ValueError, match="at least one token"):
        model.restrict_head(0)


@pytest.mark.parametrize("draft_vocab", [None, 40])
def test_a_narrow_drafter_keeps_the_targets_output(paths, draft_vocab):
    target, draft, _ = paths
    with Engine(target=target, draft=None, threads=2, n_ctx=256) as engine:
        expected = engine.generate(PROMPT, max_tokens=40).tokens
    with Engine(target=target, draft=draft, threads=2, n_ctx=256, draft_vocab=draft_vocab) as engine:
        result = engine.generate(PROMPT, max_tokens=40)
        if draft_vocab is not None:  # the prompt's rarer tokens were fed to the drafter
            prompt_ids = engine.tokenizer.encode(PROMPT)
            assert set(t for t in prompt_ids if t >= draft_vocab) <= set(engine.draft.draft_head.extra_ids)
    assert result.tokens == expected
    assert result.stats["drafted"] > 0


def test_budget_counts_the_rows_the_drafter_reads(paths, monkeypatch):
    monkeypatch.setattr(draft_head, "MAX_EXTRA_ROWS", 8)
    target, draft, _ = paths
    costs = {}
    for draft_vocab in (None, 40):
        with Engine(target=target, draft=draft, threads=1, n_ctx=256, budget="1GiB", draft_vocab=draft_vocab) as e:
            costs[draft_vocab] = e.fixed_costs()
            head = e.draft_gguf.tensor("output.weight")
            embd = e.draft_gguf.tensor("token_embd.weight")
            assert costs[draft_vocab]["drafter"] == sum(t.n_bytes for t in e.draft_gguf.tensors.values()) \
                - head.n_bytes - embd.n_bytes
    assert costs[None]["drafter head"] == head.n_bytes  # scored whole, in place
    # Q6_K rows of 256 held as Q4_0: 8 blocks of 18 bytes.
    assert costs[40]["drafter head"] == (40 + 8) * (256 // 32 * 18)
