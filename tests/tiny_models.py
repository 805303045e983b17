"""Tiny qwen2-architecture GGUF files for tests.

`write_tiny_model` writes a complete model llama.cpp could load: every qwen2 tensor
(reference/kernels-and-gguf.md §4.1, incl. the q/k/v biases), the qwen2 hyperparameters
and a real byte-level BPE tokenizer trained here, deterministically, on a fixed text.
Weights are small random numbers scaled so activations stay near unit size.
"""
from __future__ import annotations

import collections
import os
import re
from pathlib import Path
from typing import Mapping, Union

import gguf
import numpy as np

from duet.quantize import quantize

# Shapes like llama.cpp, in numpy order [out, in] (the file stores ne = {in, out}).
MATRIX_KINDS = ("token_embd", "output", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TOKEN_TYPE_NORMAL, TOKEN_TYPE_CONTROL = 1, 3
DEFAULT_MERGES = 200
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# llama.cpp's fallbacks when a row length does not fit a K-quant's 256-value blocks
# (Q5_K would become Q5_1, which duet does not support, so Q5_0 here).
K_QUANT_FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_0", "Q6_K": "Q8_0"}

TRAINING_TEXT = '''
from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    """ Check if in the given list of numbers, any two numbers are closer to each other
    than the given threshold.
    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)
    False
    """
    for index, value in enumerate(numbers):
        for other_index, other in enumerate(numbers):
            if index != other_index and abs(value - other) < threshold:
                return True
    return False


def truncate_number(number: float) -> float:
    """ Given a positive floating point number, return its decimal part.
    >>> truncate_number(3.5)
    0.5
    """
    return number % 1.0


def below_zero(operations: List[int]) -> bool:
    """ You are given a list of deposit and withdrawal operations on a bank account that
    starts with zero balance. Return True if the balance ever falls below zero.
    """
    balance = 0
    for operation in operations:
        balance += operation
        if balance < 0:
            return True
    return False


class Counter:
    def __init__(self, start: int = 0) -> None:
        self.count = start

    def increment(self) -> int:
        self.count += 1
        return self.count

The quick brown fox jumps over the lazy dog. A small model drafts the next tokens and
a larger model checks them, so the answer is the same while the time to write it is
shorter. It's the reading of weights from memory that costs the most, not the math.
'''

# The pre-tokenizer only shapes the training data; an ASCII version of the qwen2 regex is enough.
_PRETOKENIZE = re.compile(r"'(?:s|t|re|ve|m|ll|d)|[^\r\n\w]?[A-Za-z_]+|\d| ?[^\s\w]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

WeightTypes = Union[str, Mapping[str, str]]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (space becomes 'Ġ')."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    mapping, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return mapping


def train_bpe(text: str, n_merges: int) -> list[tuple[str, str]]:
    """Byte-level BPE merges, most frequent pair first; ties go to the smallest pair."""
    byte_chars = bytes_to_unicode()
    word_counts = collections.Counter(
        tuple(byte_chars[b] for b in piece.encode("utf-8")) for piece in _PRETOKENIZE.findall(text)
    )
    words = dict(word_counts)
    merges: list[tuple[str, str]] = []
    while len(merges) < n_merges:
        pair_counts: collections.Counter = collections.Counter()
        for symbols, count in words.items():
            for pair in zip(symbols, symbols[1:]):
                pair_counts[pair] += count
        if not pair_counts:
            break
        best = min(pair_counts, key=lambda pair: (-pair_counts[pair], pair))
        merges.append(best)
        words = _apply_merge(words, best)
    return merges


def _apply_merge(words: dict[tuple[str, ...], int], pair: tuple[str, str]) -> dict[tuple[str, ...], int]:
    merged_words: dict[tuple[str, ...], int] = {}
    for symbols, count in words.items():
        out, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
                out.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                out.append(symbols[i])
                i += 1
        merged_words[tuple(out)] = merged_words.get(tuple(out), 0) + count
    return merged_words


def tiny_vocabulary(n_merges: int = DEFAULT_MERGES) -> tuple[list[str], list[int], list[str]]:
    """(tokens, token types, merges): 256 byte tokens, one token per merge, then the specials."""
    merges = train_bpe(TRAINING_TEXT, n_merges)
    tokens = list(bytes_to_unicode().values()) + [left + right for left, right in merges]
    tokens += SPECIAL_TOKENS
    types = [TOKEN_TYPE_NORMAL] * (len(tokens) - len(SPECIAL_TOKENS)) + [TOKEN_TYPE_CONTROL] * len(SPECIAL_TOKENS)
    return tokens, types, [f"{left} {right}" for left, right in merges]


def _weight_type_for(kind: str, weight_type: WeightTypes, row_length: int) -> gguf.GGMLQuantizationType:
    if isinstance(weight_type, str):
        name = weight_type
    else:
        name = weight_type.get(kind, weight_type.get("default", "Q8_0"))
    block_elems = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[name]][0]
    if row_length % block_elems:
        name = K_QUANT_FALLBACK.get(name, "F32")
        if row_length % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[name]][0]:
            name = "F32"
    return gguf.GGMLQuantizationType[name]


def _add_matrix(writer: gguf.GGUFWriter, name: str, values: np.ndarray, qtype: gguf.GGMLQuantizationType) -> None:
    """values: [out, in] float32."""
    stored = quantize(values, qtype)
    writer.add_tensor(name, stored, raw_dtype=None if qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16) else qtype)


def _add_tensors(writer, rng, *, n_layer, n_embd, n_head, n_head_kv, n_ff, n_vocab, weight_type, tied) -> None:
    n_embd_kv = n_embd // n_head * n_head_kv

    def matrix(kind: str, name: str, n_out: int, n_in: int, scale: float) -> None:
        values = (rng.standard_normal((n_out, n_in)) * scale).astype(np.float32)
        _add_matrix(writer, name, values, _weight_type_for(kind, weight_type, n_in))

    def vector(name: str, n: int, mean: float, scale: float) -> None:
        writer.add_tensor(name, (mean + rng.standard_normal(n) * scale).astype(np.float32))

    matrix("token_embd", "token_embd.weight", n_vocab, n_embd, 0.2)
    for layer in range(n_layer):
        prefix = f"blk.{layer}."
        vector(prefix + "attn_norm.weight", n_embd, 1.0, 0.1)
        for kind, n_out in (("attn_q", n_embd), ("attn_k", n_embd_kv), ("attn_v", n_embd_kv)):
            matrix(kind, f"{prefix}{kind}.weight", n_out, n_embd, n_embd**-0.5)
            vector(f"{prefix}{kind}.bias", n_out, 0.0, 0.1)
        matrix("attn_output", prefix + "attn_output.weight", n_embd, n_embd, n_embd**-0.5)
        vector(prefix + "ffn_norm.weight", n_embd, 1.0, 0.1)
        matrix("ffn_gate", prefix + "ffn_gate.weight", n_ff, n_embd, n_embd**-0.5)
        matrix("ffn_up", prefix + "ffn_up.weight", n_ff, n_embd, n_embd**-0.5)
        matrix("ffn_down", prefix + "ffn_down.weight", n_embd, n_ff, n_ff**-0.5)
    vector("output_norm.weight", n_embd, 1.0, 0.1)
    if not tied:
        matrix("output", "output.weight", n_vocab, n_embd, n_embd**-0.5)


def _add_metadata(writer, *, n_layer, n_embd, n_head, n_head_kv, n_ff, n_ctx, rope_freq_base, rms_eps, vocab) -> None:
    writer.add_name("duet tiny test model")
    writer.add_block_count(n_layer)
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(n_embd)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_freq_base(rope_freq_base)
    writer.add_layer_norm_rms_eps(rms_eps)
    tokens, token_types, merges = vocab
    endoftext, im_end = tokens.index("<|endoftext|>"), tokens.index("<|im_end|>")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(endoftext)
    writer.add_eos_token_id(im_end)
    writer.add_pad_token_id(endoftext)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML_TEMPLATE)


def write_tiny_model(
    path: str | os.PathLike,
    *,
    n_layer: int = 2,
    n_embd: int = 256,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int = 512,
    n_ctx: int = 256,
    seed: int = 0,
    weight_type: WeightTypes = "Q8_0",
    tied: bool = True,
    vocab: str = "bpe",
    n_merges: int = DEFAULT_MERGES,
    rope_freq_base: float = 1_000_000.0,
    rms_eps: float = 1e-6,
) -> Path:
    """Write a qwen2 GGUF. weight_type names one ggml type for all matrices, or maps a
    matrix kind (MATRIX_KINDS, or "default") to a type; rows whose length does not fit the
    type's blocks fall back as llama.cpp does. Norms and biases are F32."""
    if vocab != "bpe":
        raise ValueError(f"unknown vocab {vocab!r} (only 'bpe')")
    if n_embd % n_head or n_head % n_head_kv:
        raise ValueError(f"n_embd {n_embd} / n_head {n_head} / n_head_kv {n_head_kv} do not divide")
    path = Path(path)
    tokens = tiny_vocabulary(n_merges)
    rng = np.random.default_rng(seed)
    temp_path = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(temp_path, "qwen2")
    try:
        _add_metadata(writer, n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_head_kv=n_head_kv, n_ff=n_ff,
                      n_ctx=n_ctx, rope_freq_base=rope_freq_base, rms_eps=rms_eps, vocab=tokens)
        _add_tensors(writer, rng, n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_head_kv=n_head_kv, n_ff=n_ff,
                     n_vocab=len(tokens[0]), weight_type=weight_type, tied=tied)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(temp_path, path)
    except BaseException:
        writer.close()
        temp_path.unlink(missing_ok=True)
        raise
    return path
