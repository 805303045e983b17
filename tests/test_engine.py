"""The engine on tiny models: collaborative decoding is lossless, streaming the
target under a budget changes nothing, bad input is refused clearly."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from duet import _core
from duet.engine import Engine
from duet.gguf_file import GGUFFile
from duet.memory import memory_usage, reset_peak
from duet.model import Model, layer_shape
from duet.policy import FallbackPolicy
from duet.weight_store import BudgetTooSmallError, Segment, StreamedLayers, layer_segments, plan_memory
from test_speculative import FlagRecorder
from tiny_models import write_tiny_model

PROMPT = "def below_zero(operations): balance = 0 for op in operations: balance += op if balance < 0:"


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pair")
    target = write_tiny_model(folder / "target.gguf", n_layer=4, weight_type="Q8_0", seed=1)
    draft = write_tiny_model(folder / "draft.gguf", n_layer=1, weight_type="Q4_0", seed=1)
    return target, draft


def target_only(target, **options) -> list[int]:
    with Engine(target=target, draft=None, threads=2, n_ctx=256) as engine:
        return engine.generate(PROMPT, max_tokens=48, **options).tokens


class UnpricedPolicy(FallbackPolicy):
    """Drafts down to alpha and the caps whatever a node costs."""
    cost_floor = leaf_floor = 0.0


@pytest.mark.parametrize("draft_kind", ["other", "self"])
def test_collaborative_greedy_equals_target_only(tiny_pair, draft_kind):
    target, draft = tiny_pair
    draft = target if draft_kind == "self" else draft
    with Engine(target=target, draft=draft, threads=2, n_ctx=256) as engine:
        if draft_kind == "self":
            # Drafted by the target itself, no node pays its step: prices off, for acceptance.
            engine.policy = UnpricedPolicy(max_nodes=24, max_depth=24)
        result = engine.generate(PROMPT, max_tokens=48)
    assert result.tokens == target_only(target)
    assert result.stats["passes"] >= 1 and result.stats["drafted"] > 0
    if draft_kind == "self":  # a drafter identical to the target is right on its likeliest branch
        assert result.stats["mean_accepted_per_pass"] > 2


def test_the_drafter_runs_every_row_in_any_order(tiny_pair, monkeypatch):
    """The drafter's rows only shape trees: all of them, prompt included, may take
    the fastest kernels for their batch; the target's keep llama.cpp's orders."""
    target, draft = tiny_pair
    with Engine(target=target, draft=draft, threads=2, n_ctx=256) as engine:
        drafted, verified = FlagRecorder(engine.draft, monkeypatch), FlagRecorder(engine.target, monkeypatch)
        result = engine.generate(PROMPT, max_tokens=48)
    assert result.tokens == target_only(target) and result.stats["drafted"] > 0
    assert set().union(*drafted.flags.values()) == {_core.ROW_ANY_ORDER}
    assert set().union(*verified.flags.values()) == {0, 1}


def test_stream_yields_token_events_matching_generate(tiny_pair):
    # The target as its own drafter: its first round accepts drafts whatever the
    # timings (later rounds may fall back to target-only steps).
    target, _ = tiny_pair
    with Engine(target=target, draft=target, threads=1, n_ctx=256) as engine:
        events = list(engine.stream(PROMPT, max_tokens=20))
        result = engine.generate(PROMPT, max_tokens=20)
    assert [e.token for e in events] == result.tokens
    streamed = "".join(e.text for e in events)
    # The stream holds back a character whose bytes are not all there yet.
    assert result.text.startswith(streamed) and len(result.text) - len(streamed) <= 1
    assert any(e.from_draft for e in events)
    assert all(e.peak_memory > 0 for e in events)


def test_streamed_layers_give_bit_identical_logits(tiny_pair):
    target, _ = tiny_pair
    gguf = GGUFFile(target)
    pool = _core.ThreadPool(2)
    resident = Model(gguf, pool)
    segments = layer_segments(gguf, resident.config.n_layer)
    layer_bytes = max(s.read_bytes for s in segments)
    # Room for one resident layer and two buffers: three of four layers stream.
    plan = plan_memory(segments, budget=3 * layer_bytes + 10, fixed={"other": 10})
    assert len(plan.streamed) == 3 and plan.n_buffers == 2
    for direct_io in (True, False):
        streamed = Model(gguf, pool, layers=StreamedLayers(gguf, plan, layer_shape(resident.config), direct_io))
        tokens = np.arange(1, 30, dtype=np.int32)
        for _ in range(2):  # twice: the second pass reads through the reused buffers
            a = resident.forward(tokens, resident.new_cache(64), logits_rows="all")
            b = streamed.forward(tokens, streamed.new_cache(64), logits_rows="all")
            assert np.array_equal(a, b)
        assert streamed.layers.io_stats()["bytes_read"] >= 2 * sum(s.nbytes for s in plan.streamed)


def test_the_plan_keeps_the_largest_layers_and_spreads_the_streamed_ones():
    big, small = 300_000, 250_000  # a quantization mix: layers of two sizes
    sizes = [big, small, small, big, small, small, big, small]
    segments = [Segment(i, 2**20 * i, n, ()) for i, n in enumerate(sizes)]
    buffers = 2 * segments[0].read_bytes
    # Room for the three large layers and two of the five small ones: counting
    # every layer as a large one, only four would stay.
    plan = plan_memory(segments, budget=10 + buffers + 3 * big + 2 * small + 100, fixed={"other": 10})
    assert [s.layer for s in plan.resident] == [0, 2, 3, 5, 6]
    assert [s.layer for s in plan.streamed] == [1, 4, 7]  # small ones, spread out
    assert plan.planned_peak <= plan.budget
    # A large layer that does not fit leaves its room to a small one.
    plan = plan_memory(segments, budget=10 + buffers + small, fixed={"other": 10})
    assert [s.nbytes for s in plan.resident] == [small]


def test_budget_that_streams_keeps_output_and_peak(tmp_path):
    # Layers of about 4.7 MB, so that a budget can fall between "all resident" and
    # "nothing resident" with room for the noise in the process's own size.
    target = write_tiny_model(tmp_path / "wide.gguf", n_layer=4, n_embd=512, n_ff=1024, weight_type="F16", seed=2)
    expected = target_only(target)
    with Engine(target=target, draft=None, threads=2, n_ctx=256) as probe:
        fixed = sum(probe.fixed_costs().values())
        layer = max(s.read_bytes for s in layer_segments(probe.target_gguf, probe.target_config.n_layer))
    budget = fixed + 3 * layer + 2_000_000
    reset_peak()
    with Engine(target=target, draft=None, threads=2, n_ctx=256, budget=budget) as engine:
        assert engine.plan.streamed, "the budget should force streaming"
        assert "streamed layers" in engine.describe_plan()
        result = engine.generate(PROMPT, max_tokens=48)
    assert result.tokens == expected
    assert result.stats["bytes_read"] > 0
    assert result.stats["peak_memory"] <= budget


def test_budget_below_minimum_is_refused_naming_it(tiny_pair):
    target, _ = tiny_pair
    with pytest.raises(BudgetTooSmallError, match=r"needs at least \d"):
        Engine(target=target, draft=None, n_ctx=256, budget="1MiB")


def test_draft_with_other_vocabulary_is_refused(tiny_pair, tmp_path):
    target, _ = tiny_pair
    other = write_tiny_model(tmp_path / "other.gguf", n_layer=1, n_merges=150)
    with pytest.raises(ValueError, match="different vocabularies"):
        Engine(target=target, draft=other, n_ctx=256)


def test_prompt_longer_than_context_is_refused(tiny_pair):
    target, draft = tiny_pair
    with Engine(target=target, draft=draft, threads=1, n_ctx=64) as engine:
        with pytest.raises(ValueError, match="context size"):
            engine.generate(PROMPT * 10, max_tokens=8)
        # The engine stays usable after the refusal.
        assert len(engine.generate("def f():", max_tokens=4).tokens) == 4


@pytest.mark.parametrize("bad", [{"threads": 0}, {"threads": -2}, {"kv_type": "q4"}, {"n_ctx": 1}])
def test_bad_engine_arguments(tiny_pair, bad):
    target, _ = tiny_pair
    with pytest.raises(ValueError):
        Engine(target=target, draft=None, **bad)


def test_sampling_is_seeded(tiny_pair):
    # Target-only: with a drafter the trees follow measured costs, so which random
    # draws a seed feeds depends on the machine's speed (the distribution does not).
    target, _ = tiny_pair
    with Engine(target=target, draft=None, threads=1, n_ctx=256) as engine:
        a = engine.generate(PROMPT, max_tokens=24, temperature=0.9, seed=7).tokens
        b = engine.generate(PROMPT, max_tokens=24, temperature=0.9, seed=7).tokens
    assert a == b


def test_read_error_mid_generation_raises_and_engine_recovers(tmp_path):
    """The model file shrinks under a running engine: that generation ends with a
    clear error; once the file is whole again the same engine works."""
    original = write_tiny_model(tmp_path / "wide.gguf", n_layer=4, n_embd=512, n_ff=1024, weight_type="F16", seed=2)
    path = tmp_path / "shrinking.gguf"
    path.write_bytes(original.read_bytes())
    expected = target_only(original)
    with Engine(target=path, draft=None, threads=2, n_ctx=256) as probe:
        fixed = sum(probe.fixed_costs().values())
        segments = layer_segments(probe.target_gguf, probe.target_config.n_layer)
    budget = fixed + 3 * max(s.read_bytes for s in segments) + 2_000_000
    with Engine(target=path, draft=None, threads=2, n_ctx=256, budget=budget) as engine:
        streamed = engine.plan.streamed
        assert streamed
        whole = path.read_bytes()
        events = engine.stream(PROMPT, max_tokens=48)
        next(events)  # the prompt is in; the file now loses its streamed layers
        with open(path, "r+b") as f:
            f.truncate(streamed[0].offset + 16)
        with pytest.raises(RuntimeError, match="end of|read error"):
            for _ in events:
                pass
        path.write_bytes(whole)
        assert engine.generate(PROMPT, max_tokens=48).tokens == expected


@pytest.mark.parametrize("with_draft", [False, True])
def test_trie_option_is_lossless_and_remembers_outputs(tiny_pair, with_draft):
    target, draft = tiny_pair
    expected = target_only(target)
    with Engine(target=target, draft=draft if with_draft else None, threads=2, n_ctx=256, trie=True) as engine:
        first = engine.generate(PROMPT, max_tokens=48)
        second = engine.generate(PROMPT, max_tokens=48)  # the store now holds the first answer
    assert first.tokens == expected and second.tokens == expected
    assert second.stats["accepted_by_source"].get("trie", 0) > 0
    assert len(engine.ngrams) > 0


@pytest.mark.parametrize("pipeline", [False, True])
def test_merged_drafter_goes_trie_only_only_without_the_pipeline(tiny_pair, pipeline):
    target, draft = tiny_pair
    with Engine(target=target, draft=draft, threads=2, n_ctx=256, trie=True, pipeline=pipeline) as engine:
        result = engine.generate(PROMPT, max_tokens=48)
        assert result.tokens == target_only(target)
        assert engine._drafter().trie_only_depth == (None if pipeline else 4)


# ---- a chat typed into streaming sessions ------------------------------------------------

CHAT_TURNS = ["def below_zero(operations):", "now return the balance, it's 0 \n  <|im_end|> ok"]


def cut(text: str, points: list[int]) -> list[str]:
    bounds = sorted({0, len(text), *(p % (len(text) + 1) for p in points)})
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


@pytest.fixture(scope="module")
def chat_engine(tiny_pair):
    with Engine(target=tiny_pair[0], draft=tiny_pair[1], threads=1, n_ctx=512) as engine:
        yield engine


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(min_value=0, max_value=100), max_size=8),
       st.lists(st.integers(min_value=0, max_value=100), max_size=8))
def test_chat_session_answers_like_chat_over_two_turns(chat_engine, first_points, second_points):
    messages, prompts = [], []
    for text, points in zip(CHAT_TURNS, (first_points, second_points)):
        session = chat_engine.chat_session(messages)
        for piece in cut(text, points):
            session.feed(piece)
        answer = chat_engine.generate(session, max_tokens=16)
        messages.append({"role": "user", "content": text})
        assert answer.tokens == chat_engine.chat(messages, max_tokens=16).tokens   # greedy, from empty caches
        assert answer.stats["prompt_tokens"] == len(session.prompt)
        assert 0 < answer.stats["prompt_seconds"] <= answer.stats["seconds"]   # the wait once the input ended
        messages.append({"role": "assistant", "content": answer.text})
        prompts.append(session.prompt)
    # The second turn kept the first in the caches: all of its prompt but, at most, the
    # last token, which re-tokenizes with the answer's first characters.
    assert session.stats.reused >= len(prompts[0]) - 1


def test_chat_session_too_long_for_the_context_is_refused_and_the_next_one_works(tiny_pair):
    with Engine(target=tiny_pair[0], draft=tiny_pair[1], threads=1, n_ctx=96) as engine:
        session = engine.chat_session()
        session.feed("please write a function that counts the operations below zero " * 3)
        with pytest.raises(ValueError, match="context size"):
            engine.generate(session, max_tokens=8)
        session = engine.chat_session()
        session.feed("hello")
        answer = engine.generate(session, max_tokens=8)
        assert answer.tokens == engine.chat([{"role": "user", "content": "hello"}], max_tokens=8).tokens


def test_an_answer_left_unfinished_does_not_spoil_the_next_turn(chat_engine):
    text = "def truncate_number(number: float) -> float:"
    session = chat_engine.chat_session()
    session.feed(text)
    events = chat_engine.stream(session, max_tokens=16)
    shown = [next(events).token for _ in range(3)]     # the reader stops, holding on to the stream
    messages = [{"role": "user", "content": text},
                {"role": "assistant", "content": chat_engine.tokenizer.decode(shown, special=False)},
                {"role": "user", "content": "return its decimal part"}]
    for _ in range(2):      # the second time after the stream is closed: that touches no cache
        session = chat_engine.chat_session(messages[:2])
        session.feed(messages[2]["content"])
        assert chat_engine.generate(session, max_tokens=16).tokens == chat_engine.chat(messages, max_tokens=16).tokens
        events.close()
