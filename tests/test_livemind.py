"""LiveMind's collaborative mode: layout, KV reuse, and the small model's answer.

Reference: greedy decoding from fresh caches over the same token sequences."""
from __future__ import annotations

import pytest

import tiny_models
from duet import _core
from duet.generate import decode_tokens
from duet.gguf_file import GGUFFile
from duet.livemind import FINAL_NOTE, LiveMindSession, last_sentence_end
from duet.model import Model
from duet.sampling import Sampler
from duet.tokenizer import Tokenizer

TEXT = ("Given a positive floating point number, it can be decomposed into an integer part. "
        "The integer part is the largest integer smaller than the given number!\n\n"
        "Return the decimal part of the number")


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("livemind")
    pool = _core.ThreadPool(1)
    large = Model(GGUFFile(tiny_models.write_tiny_model(folder / "large.gguf", n_layer=2, n_ctx=512, seed=1)), pool)
    small = Model(GGUFFile(tiny_models.write_tiny_model(folder / "small.gguf", n_layer=1, n_embd=128, seed=2)), pool)
    return large, small, Tokenizer.from_metadata(large.gguf.metadata)


def greedy(model: Model, prompt: list[int], n: int, tokenizer: Tokenizer) -> list[int]:
    return list(decode_tokens(model, model.new_cache(512), prompt, n, Sampler(temperature=0.0),
                              tokenizer.is_end_of_generation))


def test_sentence_ends():
    text = "One. Two, three! x\n\nfour"
    assert last_sentence_end(text, 0, 1) == text.index("\n\n") + 2
    assert last_sentence_end(text, 0, 10) == text.index("\n\n") + 2
    assert last_sentence_end("One. Two", 0, 10) is None          # too short
    assert last_sentence_end("e.g.x and more words here", 0, 1) is None   # no whitespace after


@pytest.mark.parametrize("background", [False, True])
def test_notes_and_answer_reuse_the_caches_exactly(tiny_pair, background):
    large, small, tokenizer = tiny_pair
    session = LiveMindSession(large, large.new_cache(512), small, small.new_cache(512), tokenizer=tokenizer,
                              note_tokens=6, min_sentence_chars=20, background=background)
    for ch in TEXT:
        session.feed(ch)
        if not background:
            while session.step():
                pass
    if background:
        assert session.wait_idle(timeout=120)
    prompt = session.finish()
    assert len(session.notes) >= (1 if background else 2)   # a busy worker batches sentences
    # Each note is what the large model writes greedily after the transcript before it.
    text = tokenizer.decode(prompt)
    for note in session.notes:
        start = next(i for i in range(len(prompt)) if prompt[i:i + len(note)] == note
                     and tokenizer.decode(prompt[:i]).endswith("<|im_start|>assistant\n"))
        assert note == greedy(large, prompt[:start], len(note), tokenizer)[:len(note)]
    assert text.endswith("Return the decimal part of the number" + FINAL_NOTE
                         + "<|im_end|>\n<|im_start|>assistant\n")
    assert text.index("Given a positive") < text.index("The integer part") < text.index("Return the decimal")
    answer = list(session.generate(8))
    assert answer == greedy(small, prompt, 8, tokenizer)
    session.close()


def test_livemind_needs_empty_caches(tiny_pair):
    large, small, tokenizer = tiny_pair
    cache = large.new_cache(16)
    large.prefill([1, 2], cache)
    with pytest.raises(ValueError):
        LiveMindSession(large, cache, small, small.new_cache(16), tokenizer=tokenizer)
