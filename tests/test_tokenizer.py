"""duet.tokenizer: a tiny hand-built vocab checked against a plain BPE reference, and
(marked `real`) the Qwen2.5-Coder vocab checked against llama.cpp via llama-cpp-python."""

import gzip
import json
import os
import re

import pytest
from hypothesis import given, settings, strategies as st

from duet.pretokenize import split_qwen2
from duet.tokenizer import (BYTE_TO_CHAR, TOKEN_CONTROL, TOKEN_NORMAL, TOKEN_USER_DEFINED,
                            Tokenizer)

# ---------------------------------------------------------------------------------
# tiny vocab: 256 byte tokens, a few merges, three control tokens, one user-defined

TINY_MERGES = ["b c", "a b", "a bc", "Ġ a", "Ġa b", "ab c", "c c", "cc c", "Ġ Ġ"]
TINY_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TINY_USER = ["<tool>"]


def _merge_results(merges):
    """Tokens the merges produce, each once (two merges may make the same text)."""
    return list(dict.fromkeys(m.replace(" ", "") for m in merges))


def make_tiny(merges=TINY_MERGES, **kwargs) -> Tokenizer:
    tokens = BYTE_TO_CHAR + _merge_results(merges) + TINY_SPECIALS + TINY_USER
    types = ([TOKEN_NORMAL] * (256 + len(_merge_results(merges))) + [TOKEN_CONTROL] * len(TINY_SPECIALS)
             + [TOKEN_USER_DEFINED] * len(TINY_USER))
    metadata = {
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "qwen2",
        "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": list(merges),
        "tokenizer.ggml.bos_token_id": tokens.index("<|endoftext|>"),
        "tokenizer.ggml.eos_token_id": tokens.index("<|im_end|>"),
    }
    metadata.update(kwargs)
    return Tokenizer.from_metadata(metadata)


def reference_bpe(word: str, merges: list[str]) -> list[str]:
    """Textbook BPE: merge the lowest-ranked adjacent pair, leftmost first, until none."""
    ranks = {tuple(m.split(" ")): r for r, m in enumerate(merges)}
    symbols = ["".join(BYTE_TO_CHAR[b] for b in ch.encode()) for ch in word]
    symbols = [c for s in symbols for c in s]
    while True:
        pairs = [(ranks[p], i) for i, p in enumerate(zip(symbols, symbols[1:])) if p in ranks]
        if not pairs:
            return symbols
        _, i = min(pairs)
        symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]


def reference_encode(text: str, tokens: list[str], merges: list[str], specials: list[str]):
    ids = []
    pattern = "(" + "|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True)) + ")"
    for k, piece in enumerate(re.split(pattern, text)):
        if k % 2:
            ids.append(tokens.index(piece))
            continue
        for word in split_qwen2(piece):
            ids.extend(tokens.index(s) for s in reference_bpe(word, merges))
    return ids


def _tiny_tokens(merges=TINY_MERGES):
    return BYTE_TO_CHAR + _merge_results(merges) + TINY_SPECIALS + TINY_USER


def test_merges_apply_by_rank():
    forward = make_tiny(["a b", "b c"])
    backward = make_tiny(["b c", "a b"])
    assert [forward.token_text(i) for i in forward.encode("abc")] == ["ab", "c"]
    assert [backward.token_text(i) for i in backward.encode("abc")] == ["a", "bc"]


def test_repeated_pair_merges_leftmost_first():
    tok = make_tiny(["c c", "cc c"])
    assert [tok.token_text(i) for i in tok.encode("ccccc")] == \
        reference_bpe("ccccc", ["c c", "cc c"])


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", " ", "\n", "é", "<", "|",
                                 "<|im_start|>", "<|im_end|>", "<tool>", "<|im_"]),
                max_size=30).map("".join))
def test_tiny_vocab_encodes_like_reference(text):
    tok = make_tiny()
    expected = reference_encode(text, _tiny_tokens(), TINY_MERGES, TINY_SPECIALS + TINY_USER)
    assert tok.encode(text) == expected
    assert tok.decode(tok.encode(text)) == text


def test_specials_parse_only_when_asked():
    tok = make_tiny()
    start, end = tok.token_id("<|im_start|>"), tok.token_id("<|im_end|>")
    ids = tok.encode("<|im_start|>abc<|im_end|>")
    assert ids[0] == start and ids[-1] == end
    plain = tok.encode("<|im_start|>abc<|im_end|>", parse_special=False)
    assert start not in plain and end not in plain
    assert tok.decode(plain) == "<|im_start|>abc<|im_end|>"
    # user-defined tokens are cut out even without parse_special, as llama.cpp does
    assert tok.token_id("<tool>") in tok.encode("a<tool>b", parse_special=False)


def test_bos_added_only_when_vocab_and_caller_ask():
    with_bos = make_tiny(**{"tokenizer.ggml.add_bos_token": True})
    without = make_tiny(**{"tokenizer.ggml.add_bos_token": False})
    bos = with_bos.bos_id
    assert with_bos.encode("ab", add_special=True)[0] == bos
    assert with_bos.encode("ab", add_special=False)[0] != bos
    assert without.encode("ab", add_special=True) == without.encode("ab")


def test_empty_text_is_no_tokens():
    assert make_tiny().encode("") == []
    assert make_tiny().decode([]) == ""


def test_control_tokens_render_only_when_special():
    tok = make_tiny()
    ids = tok.encode("a<|im_end|>b")
    assert tok.decode(ids) == "a<|im_end|>b"
    assert tok.decode(ids, special=False) == "ab"


def test_end_of_generation_ids():
    tok = make_tiny()
    eog = {i for i in range(tok.vocab_size) if tok.is_end_of_generation(i)}
    assert eog == {tok.token_id("<|im_end|>"), tok.token_id("<|endoftext|>")}


def test_stream_decoder_holds_split_characters():
    tok = make_tiny()
    text = "aé中😀b"
    ids = tok.encode(text)   # the tiny vocab has no merges for these: one token per byte
    assert len(ids) == len(text.encode())
    stream = tok.stream_decoder()
    pieces = [stream.feed(i) for i in ids]
    assert "".join(pieces) + stream.flush() == text
    assert all("\ufffd" not in p for p in pieces)
    assert pieces[1] == "" and pieces[2] == "é"   # é's first byte held, second completes it


def test_stream_decoder_flush_marks_unfinished_character():
    tok = make_tiny()
    first_byte = tok.encode("中")[0]
    stream = tok.stream_decoder()
    assert stream.feed(first_byte) == ""
    assert stream.flush() == "\ufffd"


def test_repeated_merge_keeps_its_first_rank():
    tok = make_tiny(["a b", "b c", "a b"])
    assert [tok.token_text(i) for i in tok.encode("abc")] == ["ab", "c"]


def test_text_that_is_not_unicode_scalars_is_rejected():
    with pytest.raises(ValueError):
        make_tiny().encode("a\ud800b")


def test_unknown_model_is_rejected_by_name():
    with pytest.raises(ValueError, match="llama"):
        make_tiny(**{"tokenizer.ggml.model": "llama"})


def test_unknown_pre_tokenizer_is_named():
    with pytest.raises(NotImplementedError, match="deepseek-coder"):
        make_tiny(**{"tokenizer.ggml.pre": "deepseek-coder"})


@pytest.mark.parametrize("key, value", [
    ("tokenizer.ggml.tokens", BYTE_TO_CHAR + [7]), ("tokenizer.ggml.merges", "Ġ t"),
    ("tokenizer.ggml.token_type", [1.5] * 300), ("tokenizer.ggml.pre", 3),
    ("tokenizer.ggml.bos_token_id", float("inf")), ("tokenizer.chat_template", ["{{ x }}"]),
])
def test_metadata_of_the_wrong_type_is_named(key, value):
    # What a damaged file gives (found by fuzzing): a ValueError naming the key, not a
    # TypeError or OverflowError from deep inside.
    with pytest.raises(ValueError, match=key):
        make_tiny(**{key: value})


def test_out_of_range_ids_are_named():
    tok = make_tiny()
    with pytest.raises(IndexError, match=str(tok.vocab_size)):
        tok.decode([tok.vocab_size])
    with pytest.raises(IndexError, match="-1"):
        tok.token_bytes(-1)


def test_vocab_without_byte_tokens_is_rejected():
    with pytest.raises(ValueError, match="byte"):
        Tokenizer.from_metadata({
            "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "qwen2",
            "tokenizer.ggml.tokens": ["a", "b"], "tokenizer.ggml.token_type": [1, 1],
            "tokenizer.ggml.merges": []})


# ---------------------------------------------------------------------------------
# real vocab (Qwen2.5-Coder 1.5B) against llama.cpp

MODEL_PATH = "/root/.cache/duet/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
HUMANEVAL_PATH = "/work/shared/data/HumanEval.jsonl.gz"

HAND_MADE = [
    "", " ", "\n", "Hello world", "你好，世界！这是一个测试。", "日本語のテキスト",
    "😀 👍🏽 🇫🇷 👨‍👩‍👧", "café naïve façade Ångström", "e\u0301 a\u0308 n\u0303",
    "0 12 345 6789 1234567890123 3.14159 1e-10 0xFF ١٢٣ ½ Ⅻ",
    "a  b   c    d", "\t\tx\t \n", "line\n\n\n  \n\t\n", "trailing   ", "   ",
    "\r\n\r\nwin\r\n", "I'LL go, it's he'S we'Re they've I'm you'd Don't",
    "def f(x):\n    '''doc's'''\n    return x ** 2  # it's\n",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n",
    "<|endoftext|><|fim_prefix|>a<|fim_suffix|>b<|fim_middle|><tool_call>x</tool_call>",
    "<|im_start<|im_end|>|>", "a</s>b [PAD151665] <|fim_pad|>", "\u00a0nbsp\u3000ideographic\u2003em\u0085nel\x1cfs",
    "((a)) [b]; {c}: d!? !!!\n\nx ... -> => <= != //",
    "Ｆｕｌｌ　ｗｉｄｔｈ ＡＢＣ１２３", "ﬁ ﬂ ß ẞ İ ı ǅ", "\u200b\u200d\ufeffzero width",
]


@pytest.fixture(scope="module")
def real_tokenizer():
    if not os.path.exists(MODEL_PATH):
        pytest.skip(f"model file {MODEL_PATH} not present")
    from gguf_metadata import read_tokenizer_metadata
    return Tokenizer.from_metadata(read_tokenizer_metadata(MODEL_PATH))


@pytest.fixture(scope="module")
def llama_vocab():
    if not os.path.exists(MODEL_PATH):
        pytest.skip(f"model file {MODEL_PATH} not present")
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed")
    return llama_cpp.Llama(model_path=MODEL_PATH, vocab_only=True, verbose=False)


def humaneval_prompts():
    if not os.path.exists(HUMANEVAL_PATH):
        pytest.skip(f"{HUMANEVAL_PATH} not present")
    with gzip.open(HUMANEVAL_PATH, "rt") as f:
        return [json.loads(line)["prompt"] for line in f]


@pytest.mark.real
def test_humaneval_prompts_match_llama_cpp(real_tokenizer, llama_vocab):
    prompts = humaneval_prompts()
    assert len(prompts) == 164
    for k, prompt in enumerate(prompts):
        expected = llama_vocab.tokenize(prompt.encode(), add_bos=False, special=True)
        assert real_tokenizer.encode(prompt) == expected, f"HumanEval/{k}"


@pytest.mark.real
@pytest.mark.parametrize("text", HAND_MADE)
def test_hand_made_texts_match_llama_cpp(real_tokenizer, llama_vocab, text):
    for parse_special in (True, False):
        expected = llama_vocab.tokenize(text.encode(), add_bos=False, special=parse_special)
        assert real_tokenizer.encode(text, parse_special=parse_special) == expected
    ids = real_tokenizer.encode(text)
    for special in (True, False):
        assert real_tokenizer.decode_bytes(ids, special) == \
            b"".join(llama_piece(llama_vocab, i, special) for i in ids)


def llama_piece(llama_vocab, token_id: int, special: bool) -> bytes:
    """llama.cpp's token_to_piece (Llama.detokenize truncates pieces past 32 bytes)."""
    import ctypes
    import llama_cpp
    vocab = llama_cpp.llama_model_get_vocab(llama_vocab.model)
    buffer = ctypes.create_string_buffer(256)
    n = llama_cpp.llama_token_to_piece(vocab, token_id, buffer, len(buffer), 0, special)
    assert 0 <= n <= len(buffer)
    return buffer.raw[:n]


_CODE_ALPHABET = st.sampled_from(
    list("aZq'sStTlLdD0189 \t\r\n.,:;()[]{}#=+-*/_\"\\") + ["\u00a0", "\u3000", "\u0085",
    "\x1c", "\x00", "é", "\u0301", "中文", "١", "½", "😀", "\u200b", "<|im_end|>", "<tool_call>",
    "    ", "\n\n", "def ", "return", "'ll", "Ġ"])


@pytest.mark.real
@settings(max_examples=400, deadline=None)
@given(text=st.one_of(st.lists(_CODE_ALPHABET, max_size=40).map("".join), st.text(max_size=60)))
def test_random_texts_match_llama_cpp(real_tokenizer, llama_vocab, text):
    expected = llama_vocab.tokenize(text.encode(), add_bos=False, special=True)
    assert real_tokenizer.encode(text) == expected


@pytest.mark.real
def test_every_token_detokenizes_like_llama_cpp(real_tokenizer, llama_vocab):
    for token_id in range(real_tokenizer.vocab_size):
        for special in (True, False):
            assert real_tokenizer.token_bytes(token_id, special) == \
                llama_piece(llama_vocab, token_id, special), token_id


@pytest.mark.real
def test_end_of_generation_matches_llama_cpp(real_tokenizer, llama_vocab):
    import llama_cpp
    vocab = llama_cpp.llama_model_get_vocab(llama_vocab.model)
    expected = {i for i in range(real_tokenizer.vocab_size)
                if llama_cpp.llama_vocab_is_eog(vocab, i)}
    assert set(real_tokenizer.end_of_generation_ids) == expected
    assert real_tokenizer.eos_id == llama_vocab.token_eos()
    assert real_tokenizer.bos_id == llama_vocab.token_bos()


@pytest.mark.real
@pytest.mark.parametrize("text", HAND_MADE)
def test_hand_made_texts_round_trip(real_tokenizer, text):
    assert real_tokenizer.decode(real_tokenizer.encode(text)) == text


@pytest.mark.real
def test_humaneval_prompts_round_trip(real_tokenizer):
    for prompt in humaneval_prompts():
        assert real_tokenizer.decode(real_tokenizer.encode(prompt)) == prompt


@pytest.mark.real
def test_stream_decoder_on_real_vocab(real_tokenizer):
    text = "def 𝔣(x): return '龘龘 𓀀 é' # 😀 done"
    ids = real_tokenizer.encode(text)
    pieces = [real_tokenizer.token_bytes(i) for i in ids]
    split = [p for p in pieces if not _is_complete_utf8(p)]
    assert split, "precondition: some character must be split across tokens"
    stream = real_tokenizer.stream_decoder()
    outputs = [stream.feed(i) for i in ids]
    assert "".join(outputs) + stream.flush() == text
    assert all("\ufffd" not in out for out in outputs)


def _is_complete_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False
