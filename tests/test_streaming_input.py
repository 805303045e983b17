"""Streaming input: incremental tokenization and prefill while the text is typed.

The reference everywhere is the non-streaming path: Tokenizer.encode of the whole
text, and greedy decoding of the whole prompt from an empty cache."""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import tiny_models
from duet import _core
from duet.generate import decode_tokens
from duet.gguf_file import GGUFFile
from duet.incremental_tokenizer import IncrementalTokenizer, StableBoundary
from duet.model import Model
from duet.sampling import Sampler
from duet.streaming_input import StreamingSession, chat_prompt_parts
from duet.tokenizer import Tokenizer

REAL_MODEL = "/root/.cache/duet/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"

# Fragments chosen to hit every way a token can change when text follows it:
# merges across a piece boundary, letter runs, contractions, whitespace runs with and
# without line ends, digits, non-ASCII letters and marks, and special tokens.
FRAGMENTS = [
    "def", " return", "self", ".count", "numbers", " the", "ing", "'s", "'re", "'LL", "'",
    " ", "  ", "\t", "\n", "\r\n", "\n \n", "   \n", "0", "12", "3.5", "١٢", "½",
    "(", ")", "[1, 2]", ":", " ->", "!!", "#", "é", "e\u0301", "你好", "😀", "\u00a0", "\u3000",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_", "end|>", "<", "|", ">", "</s>",
]

texts = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=14).map("".join)


def cut(text: str, points: list[int]) -> list[str]:
    bounds = sorted({0, len(text), *(p % (len(text) + 1) for p in points)})
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


def tiny_tokenizer() -> Tokenizer:
    tokens, types, merges = tiny_models.tiny_vocabulary()
    return Tokenizer(tokens, types, merges, pre="qwen2", bos_id=tokens.index("<|endoftext|>"),
                     eos_id=tokens.index("<|im_end|>"))


TINY = tiny_tokenizer()


@pytest.fixture(scope="module")
def real_tokenizer():
    if not os.path.exists(REAL_MODEL):
        pytest.skip(f"model file {REAL_MODEL} not present")
    from gguf_metadata import read_tokenizer_metadata
    return Tokenizer.from_metadata(read_tokenizer_metadata(REAL_MODEL))


def stream_tokens(tokenizer: Tokenizer, pieces: list[str], stable_end=None) -> tuple[list[int], list[list[int]]]:
    """Feeds pieces, applying each update to a consumer's copy as a cache would;
    returns the consumer's final tokens and every release seen along the way."""
    stream = IncrementalTokenizer(tokenizer, stable_end=stable_end)
    consumer: list[int] = []
    releases = []
    for piece in pieces:
        update = stream.feed(piece)
        consumer = consumer[:update.n_kept] + update.added
        releases.append(list(consumer))
    update = stream.finish()
    consumer = consumer[:update.n_kept] + update.added
    return consumer, releases


def check_streamed_tokens(tokenizer: Tokenizer, text: str, points: list[int]) -> None:
    whole = tokenizer.encode(text)
    final, releases = stream_tokens(tokenizer, cut(text, points))
    assert final == whole
    for release in releases:   # the hold-back rule never releases a token that changes
        assert release == whole[:len(release)]


@settings(max_examples=300, deadline=None)
@given(texts, st.lists(st.integers(min_value=0, max_value=200), max_size=8))
def test_streamed_tokens_equal_whole_text_tokens_tiny(text, points):
    check_streamed_tokens(TINY, text, points)


@pytest.mark.real
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts, st.lists(st.integers(min_value=0, max_value=200), max_size=8))
def test_streamed_tokens_equal_whole_text_tokens_real(real_tokenizer, text, points):
    check_streamed_tokens(real_tokenizer, text, points)


@pytest.mark.real
def test_typing_char_by_char_releases_only_final_tokens_real(real_tokenizer):
    text = "def f(x):\n    '''it's\t\t'''\n\n  \n    return x ** 2  # 你好 😀<|im_end|>\n<|im_start|>user\n"
    check_streamed_tokens(real_tokenizer, text, list(range(len(text))))


@settings(max_examples=200, deadline=None)
@given(texts, st.lists(st.integers(min_value=0, max_value=200), max_size=8))
def test_releasing_too_early_is_repaired(text, points):
    final, _ = stream_tokens(TINY, cut(text, points), stable_end=len)
    assert final == TINY.encode(text)


# An edit: text typed, or a number of characters taken back (Backspace).
edits = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4) | st.integers(min_value=1, max_value=6),
                 max_size=14)


def edited_text(text: str, edit: str | int) -> str:
    return text + edit if isinstance(edit, str) else text[:max(len(text) - edit, 0)]


def typed_edit(text: str, edit: str | int) -> str | int:
    """The edit as typed on text: a Backspace run stops at the start of the line."""
    return edit if isinstance(edit, str) else min(edit, len(text))


@settings(max_examples=300, deadline=None)
@given(edits)
def test_retracted_text_leaves_the_tokens_of_the_final_text(edit_list):
    stream = IncrementalTokenizer(TINY)
    consumer: list[int] = []
    text = ""
    for edit in edit_list:
        edit = typed_edit(text, edit)
        update = stream.feed(edit) if isinstance(edit, str) else stream.retract(edit)
        text = edited_text(text, edit)
        consumer = consumer[:update.n_kept] + update.added
        assert consumer == stream.tokens
        assert stream.tokens == TINY.encode(text)[:len(stream.tokens)]   # released tokens stay right
    update = stream.finish()
    assert consumer[:update.n_kept] + update.added == TINY.encode(text)
    assert stream.rollbacks == 0    # taking text back is no failure of the hold-back rule


def test_retract_is_checked():
    stream = IncrementalTokenizer(TINY, "prefix ")
    stream.feed("ab")
    with pytest.raises(ValueError):
        stream.retract(len("prefix ab") + 1)
    stream.feed("é".encode()[:1])
    with pytest.raises(ValueError):
        stream.retract(1)                 # inside a character whose bytes are not all there
    stream.feed("é".encode()[1:])
    stream.retract(2)
    stream.finish()
    assert stream.tokens == TINY.encode("prefix a")
    with pytest.raises(RuntimeError):
        stream.retract(1)


def test_eager_release_is_taken_back():
    stream = IncrementalTokenizer(TINY, stable_end=len)
    first = stream.feed("retur")
    assert first.n_kept == 0 and first.added == TINY.encode("retur")
    second = stream.feed("n")
    whole = TINY.encode("return")
    n_same = next(i for i, (a, b) in enumerate(zip(first.added + [None], whole)) if a != b)
    assert second.n_kept == n_same and stream.tokens == whole and stream.rollbacks == 1


def test_default_rule_holds_back_what_can_change():
    boundary = StableBoundary(TINY)
    assert boundary("x = 1") == len("x =")              # the last word, and the space before it
    assert boundary("return the") == len("return")      # a letter run can grow
    assert boundary("a\n  ") == len("a")                # a whitespace run can still split otherwise
    assert boundary("ab cd<|im_") == len("ab")          # a special token typed partly
    assert boundary("ab<|im_end|>") == len("ab<|im_end|>")


def test_bytes_split_inside_a_character():
    stream = IncrementalTokenizer(TINY)
    data = "x é 你好 y".encode()
    for k in range(len(data)):
        stream.feed(data[k:k + 1])
    stream.finish()
    assert stream.tokens == TINY.encode("x é 你好 y")
    truncated = IncrementalTokenizer(TINY)
    truncated.feed("é".encode()[:1])
    with pytest.raises(UnicodeDecodeError):
        truncated.finish()


def test_feed_after_finish_is_an_error():
    stream = IncrementalTokenizer(TINY)
    stream.feed("a")
    stream.finish()
    with pytest.raises(RuntimeError):
        stream.feed("b")
    with pytest.raises(TypeError):
        IncrementalTokenizer(TINY).feed(3)


# ---- sessions on tiny models ----------------------------------------------------------

MAX_TOKENS = 12
PROMPTS = [
    "def below_zero(operations: List[int]) -> bool:\n    balance = 0\n",
    "The quick brown fox jumps over the lazy dog. It's the reading of weights",
    "class Counter:\n    def increment(self) -> int:\n        self.count += 1\n<|im_end|>x 12  ",
]


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("streaming")
    target_file = tiny_models.write_tiny_model(folder / "target.gguf", n_layer=2, seed=1)
    draft_file = tiny_models.write_tiny_model(folder / "draft.gguf", n_layer=1, n_embd=128, seed=2)
    pool = _core.ThreadPool(1)
    target, draft = Model(GGUFFile(target_file), pool), Model(GGUFFile(draft_file), pool)
    return target, draft, Tokenizer.from_metadata(target.gguf.metadata)


def greedy_reference(model: Model, prompt: list[int], tokenizer: Tokenizer) -> list[int]:
    cache = model.new_cache(256)
    return list(decode_tokens(model, cache, prompt, MAX_TOKENS, Sampler(temperature=0.0),
                              tokenizer.is_end_of_generation))


def new_session(pair, with_draft: bool, **options) -> StreamingSession:
    target, draft, tokenizer = pair
    return StreamingSession(target, target.new_cache(256), draft if with_draft else None,
                            draft.new_cache(256) if with_draft else None, tokenizer=tokenizer, **options)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(PROMPTS), st.lists(st.integers(min_value=0, max_value=200), max_size=10),
       st.booleans())
def test_streamed_greedy_answer_equals_whole_prompt_answer(tiny_pair, text, points, with_draft):
    target, _, tokenizer = tiny_pair
    prefix, suffix = chat_prompt_parts(tokenizer)
    session = new_session(tiny_pair, with_draft, prefix=prefix, suffix=suffix, block=4)
    for piece in cut(text, points):
        session.feed(piece)
    answer = list(session.generate(MAX_TOKENS))
    prompt = tokenizer.encode(tokenizer.apply_chat_template([{"role": "user", "content": text}]))
    assert session.prompt == prompt
    assert answer == greedy_reference(target, prompt, tokenizer)
    session.close()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits, st.booleans(), st.booleans())
def test_session_with_backspaces_answers_the_final_text(tiny_pair, edit_list, with_draft, background):
    target, _, tokenizer = tiny_pair
    prefix, suffix = chat_prompt_parts(tokenizer)
    session = new_session(tiny_pair, with_draft, prefix=prefix, suffix=suffix, block=4, background=background)
    text = ""
    for edit in edit_list:
        edit = typed_edit(text, edit)
        session.feed(edit) if isinstance(edit, str) else session.retract(edit)
        text = edited_text(text, edit)
        if not background:
            session.step()
    prompt = tokenizer.encode(tokenizer.apply_chat_template([{"role": "user", "content": text}]))
    assert session.finish() == prompt
    for lane in session._lanes.values():    # each cache holds exactly a prefix of the final prompt
        assert lane.cache.n == len(lane.tokens) and lane.tokens == prompt[:len(lane.tokens)]
    assert list(session.generate(MAX_TOKENS)) == greedy_reference(target, prompt, tokenizer)
    session.close()


def test_retract_trims_the_caches_it_changed(tiny_pair):
    _, _, tokenizer = tiny_pair
    session = new_session(tiny_pair, True, background=False, block=64)
    session.feed("def below_zero(operations): return True ")
    session.step()
    held = list(session._lanes["target"].tokens)
    session.retract(len("return True "))   # leaves "...: ", whose trailing space is held back
    session.step()
    for lane in session._lanes.values():
        assert lane.cache.n == len(lane.tokens) == len(tokenizer.encode("def below_zero(operations):"))
        assert lane.tokens == held[:len(lane.tokens)]
    session.feed("return False ")           # queued text is taken back before the worker sees it
    session.retract(len("se "))
    assert session.finish() == tokenizer.encode("def below_zero(operations): return Fal")
    session.close()


def test_retract_is_refused_beyond_the_typed_text(tiny_pair):
    session = new_session(tiny_pair, False, prefix="system text ", background=False)
    session.feed("ab")
    with pytest.raises(ValueError, match="2 were typed"):
        session.retract(3)                  # the prefix is not the user's to erase
    session.feed("é".encode()[:1])
    with pytest.raises(ValueError):
        session.retract(1)
    session.feed("é".encode()[1:])
    session.retract(3)
    session.finish()
    with pytest.raises(RuntimeError):
        session.retract(1)
    session.close()


@pytest.mark.parametrize("with_draft", [False, True])
def test_background_prefill_fills_caches_before_finish(tiny_pair, with_draft):
    target, _, tokenizer = tiny_pair
    text = PROMPTS[0]
    session = new_session(tiny_pair, with_draft, background=False, block=8)
    for ch in text:
        session.feed(ch)
        while session.step():
            pass
    prompt = session.finish()
    held = session.stats.prefilled_in_background
    assert held["target"] >= len(prompt) - 4 and held["target"] < len(prompt)
    assert held.get("draft", held["target"]) == held["target"]
    assert list(session.generate(MAX_TOKENS)) == greedy_reference(target, prompt, tokenizer)


def test_released_tokens_taken_back_trim_the_caches(tiny_pair):
    target, _, tokenizer = tiny_pair
    session = new_session(tiny_pair, True, background=False, stable_end=len)   # releases too early
    cache = session._lanes["target"].cache
    session.feed("    return Tr")
    while session.step():
        pass
    before = cache.n
    assert before == len(tokenizer.encode("    return Tr"))
    session.feed("ue")
    session.step()
    assert session.stats.rollbacks == 0 and session._text.rollbacks == 1
    assert cache.n <= before    # trimmed to the first changed token, then refilled
    session.feed("\n")
    prompt = session.finish()
    assert session.stats.rollbacks >= 1
    assert list(session.generate(MAX_TOKENS)) == greedy_reference(target, prompt, tokenizer)


def test_next_turn_reuses_the_caches(tiny_pair):
    target, _, tokenizer = tiny_pair
    prefix, suffix = chat_prompt_parts(tokenizer)
    first = new_session(tiny_pair, True, prefix=prefix, suffix=suffix)
    first.feed("def truncate_number(number: float) -> float:")
    reply = tokenizer.decode(list(first.generate(MAX_TOKENS)), special=False)
    history = [{"role": "user", "content": "def truncate_number(number: float) -> float:"},
               {"role": "assistant", "content": reply}]
    lanes = first._lanes
    second = StreamingSession.for_chat(target, lanes["target"].cache, lanes["draft"].model, lanes["draft"].cache,
                                       tokenizer=tokenizer, history=history, cached_tokens=first.history_tokens())
    second.feed("return its decimal part")
    answer = list(second.generate(MAX_TOKENS))
    assert second.stats.prefilled_in_background["target"] > len(first.prompt)   # the first turn was reused
    prompt = tokenizer.encode(tokenizer.apply_chat_template(
        [*history, {"role": "user", "content": "return its decimal part"}]))
    assert second.prompt == prompt
    assert answer == greedy_reference(target, prompt, tokenizer)
    first.close()
    second.close()


def test_feed_after_finish_is_refused(tiny_pair):
    session = new_session(tiny_pair, False)
    session.feed("abc")
    session.finish()
    with pytest.raises(RuntimeError):
        session.feed("d")
    with pytest.raises(RuntimeError):
        session.finish()
    session.close()
    with pytest.raises(RuntimeError):
        list(session.generate(4))


class UnreadableModel:
    """A model whose weights cannot be read: every forward fails."""

    def forward(self, tokens, cache, logits_rows="last", prompt=False):
        raise OSError("the weights could not be read")


def test_worker_error_surfaces_at_finish(tiny_pair):
    target, _, tokenizer = tiny_pair
    session = StreamingSession(UnreadableModel(), target.new_cache(256), tokenizer=tokenizer)
    session.feed("def has_close_elements(numbers: List[float], threshold: float) -> bool:")
    assert session.wait_idle(timeout=60)
    with pytest.raises(RuntimeError, match="background work failed") as raised:
        session.finish()
    assert isinstance(raised.value.__cause__, OSError)


def test_a_full_cache_stops_the_prefill_and_generation_refuses(tiny_pair):
    target, _, tokenizer = tiny_pair
    cache = target.new_cache(4)
    session = StreamingSession(target, cache, tokenizer=tokenizer)
    session.feed("def has_close_elements(numbers: List[float], threshold: float) -> bool:")
    assert session.wait_idle(timeout=60)
    assert cache.n == 4                     # filled, then idle rather than failed
    assert len(session.finish()) > 4
    with pytest.raises(ValueError, match="context size"):
        list(session.generate(MAX_TOKENS))
    session.close()


def test_close_stops_the_worker(tiny_pair):
    session = new_session(tiny_pair, True)
    session.feed("for index, value in enumerate(numbers):")
    assert session.wait_idle(timeout=60)
    assert session._lanes["target"].cache.n > 0     # prefilled with no finish()
    session.close()
    assert not session._worker.is_alive()
    with pytest.raises(RuntimeError):
        session.feed("x")


def test_template_must_place_the_user_text_verbatim():
    class Stripping:
        def apply_chat_template(self, messages, add_generation_prompt=True):
            return "<|im_start|>user\n" + messages[-1]["content"].strip() + "<|im_end|>\n"
    with pytest.raises(ValueError):
        chat_prompt_parts(Stripping())


def test_session_takes_bytes_split_inside_characters(tiny_pair):
    _, _, tokenizer = tiny_pair
    session = new_session(tiny_pair, False, background=False)
    data = "x = 'é 你好' 😀\n".encode()
    for k in range(len(data)):
        session.feed(data[k:k + 1])
        session.step()
    assert session.finish() == tokenizer.encode("x = 'é 你好' 😀\n")
    truncated = new_session(tiny_pair, False)
    truncated.feed("é".encode()[:1])
    with pytest.raises(UnicodeDecodeError):
        truncated.finish()
    truncated.close()
