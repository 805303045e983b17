"""Byte-level BPE tokenizer ("gpt2" model in GGUF terms), built from GGUF metadata.

Behaviour follows llama.cpp's tokenizer so that token ids agree with it exactly:
special tokens are cut out of the text first (longest first), each remaining piece
is pre-tokenized (duet.pretokenize), each word is mapped byte -> printable character
(GPT-2's table) and merged pair by pair, lowest merge rank first, leftmost on ties.
"""

from __future__ import annotations

import codecs
import functools
import heapq
from typing import Any, Iterable, Mapping, Sequence

from duet.chat_template import render_chat
from duet.pretokenize import PRE_TOKENIZERS

# GGUF tokenizer.ggml.token_type values (llama.cpp's llama_token_type). The other
# types (5 unused, 6 byte) never come out of a gpt2 encode and decode to nothing.
TOKEN_NORMAL = 1
TOKEN_UNKNOWN = 2
TOKEN_CONTROL = 3
TOKEN_USER_DEFINED = 4

# Token texts llama.cpp recognises by name (llama-vocab.cpp, "auto-detect special tokens
# by text"): it forces them to control type whatever the file says, and the FIM pad /
# repo / file-separator tokens and the end-of-turn texts end generation (special_eog_ids).
# Its per-family workarounds (gpt-oss "<|end|>", gemma4 "</s>") concern vocabs whose
# pre-tokenizers duet does not implement.
_FIM_TEXTS = frozenset((
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "<|code_prefix|>", "<|prefix|>",
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<SUF>", "<|code_suffix|>", "<|suffix|>",
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>", "<|code_middle|>", "<|middle|>",
))
_EOG_TEXTS = frozenset((
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]",
    "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>",
    "<|file_sep|>",
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
    "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>",
    "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>",
    "<|tool_response>",
))
_CONTROL_TEXTS = _FIM_TEXTS | _EOG_TEXTS
_WORD_CACHE_SIZE = 1 << 16


def _gpt2_byte_to_char() -> list[str]:
    """byte -> printable character: printable Latin-1 bytes map to themselves, the
    rest to U+0100 upwards in byte order (GPT-2's bytes_to_unicode)."""
    printable = [b for b in range(256)
                 if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF]
    table = [""] * 256
    for b in printable:
        table[b] = chr(b)
    shifted = 0
    for b in range(256):
        if not table[b]:
            table[b] = chr(0x100 + shifted)
            shifted += 1
    return table


BYTE_TO_CHAR: list[str] = _gpt2_byte_to_char()          # [256]
CHAR_TO_BYTE: dict[str, int] = {c: b for b, c in enumerate(BYTE_TO_CHAR)}


class UnsupportedTokenizerError(ValueError, NotImplementedError):
    """The file's tokenizer is of a kind duet does not implement: a ValueError like every
    other refusal of a model file, and a NotImplementedError by what it means."""


def _metadata_field(metadata: Mapping[str, Any], key: str, kind, default: Any = None) -> Any:
    """metadata[key] (default when absent), refused unless it is of `kind`: a type, or
    (list, item type) for an array."""
    value = metadata.get(key, default)
    if value is None:
        return None
    if isinstance(kind, tuple):
        container, item = kind
        fits = isinstance(value, container) and all(isinstance(v, item) for v in value)
        expected = f"an array of {item.__name__}"
    else:
        fits, expected = isinstance(value, kind), kind.__name__
    if not fits:
        raise ValueError(f"GGUF metadata {key} is not {expected} (a damaged file?)")
    return value


class Tokenizer:
    """Encode text to token ids and back, the way llama.cpp does for a gpt2 vocab."""

    def __init__(self, tokens: Sequence[str], token_types: Sequence[int],
                 merges: Sequence[str], pre: str, bos_id: int | None,
                 eos_id: int | None, pad_id: int | None = None,
                 add_bos: bool = False, chat_template: str | None = None):
        if pre not in PRE_TOKENIZERS:
            raise UnsupportedTokenizerError(
                f"pre-tokenizer {pre!r} is not implemented (supported: "
                f"{', '.join(sorted(PRE_TOKENIZERS))})")
        if len(token_types) != len(tokens):
            raise ValueError(f"{len(tokens)} tokens but {len(token_types)} token types")
        self._tokens = list(tokens)                               # [vocab]
        self._types = [self._llama_type(t, int(k)) for t, k in zip(tokens, token_types)]
        self._split = PRE_TOKENIZERS[pre]
        self._token_ids = {t: i for i, t in enumerate(self._tokens)}
        missing = [b for b, c in enumerate(BYTE_TO_CHAR) if c not in self._token_ids]
        if missing:
            raise ValueError(f"vocab lacks byte-level tokens for bytes {missing[:8]}")
        # "left right" -> rank (byte-level texts hold no literal space, so the key is
        # unambiguous); filled last to first so a repeated merge keeps its first rank,
        # as llama.cpp's bpe_ranks.emplace does.
        self._merge_ranks = dict(zip(reversed(merges), range(len(merges) - 1, -1, -1)))
        self.bos_id = self._checked_id(bos_id, "bos")
        self.eos_id = self._checked_id(eos_id, "eos")
        self.pad_id = self._checked_id(pad_id, "padding")
        self.add_bos = bool(add_bos)
        self.chat_template = chat_template
        self._eog_ids = frozenset(
            [i for i, t in enumerate(self._tokens) if t in _EOG_TEXTS]
            + ([self.eos_id] if self.eos_id is not None else []))
        # llama.cpp's cache_special_tokens: longest text first.
        self._special_ids = sorted(
            (i for i, k in enumerate(self._types)
             if k in (TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNKNOWN)),
            key=lambda i: -len(self._tokens[i].encode()))
        self._piece_cache: dict[int, bytes] = {}
        self._word_ids = functools.lru_cache(maxsize=_WORD_CACHE_SIZE)(self._encode_word)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> "Tokenizer":
        """Build from GGUF key/values given as plain Python values."""
        model = metadata.get("tokenizer.ggml.model")
        if model != "gpt2":
            raise UnsupportedTokenizerError(f"unsupported tokenizer model {model!r} (only 'gpt2' is)")
        for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges"):
            if key not in metadata:
                raise ValueError(f"GGUF metadata lacks {key}")
        field = functools.partial(_metadata_field, metadata)
        tokens = field("tokenizer.ggml.tokens", (list, str))
        return cls(
            tokens=tokens,
            token_types=field("tokenizer.ggml.token_type", (list, int), [TOKEN_NORMAL] * len(tokens)),
            merges=field("tokenizer.ggml.merges", (list, str)),
            pre=field("tokenizer.ggml.pre", str, "default"),
            bos_id=field("tokenizer.ggml.bos_token_id", int),
            eos_id=field("tokenizer.ggml.eos_token_id", int),
            pad_id=field("tokenizer.ggml.padding_token_id", int),
            add_bos=field("tokenizer.ggml.add_bos_token", int, False),  # a bool is an int
            chat_template=field("tokenizer.chat_template", str),
        )

    # ---- vocab facts -------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    def token_text(self, token_id: int) -> str:
        """The token's text as stored in the GGUF (byte-level form for normal tokens)."""
        return self._tokens[self._checked_index(token_id)]

    def token_id(self, text: str) -> int | None:
        """Id of the token whose stored text is `text`, or None."""
        return self._token_ids.get(text)

    def is_special(self, token_id: int) -> bool:
        """True for control tokens (<|im_start|>, <|endoftext|>, ...)."""
        return self._types[self._checked_index(token_id)] in (TOKEN_CONTROL, TOKEN_UNKNOWN)

    def is_end_of_generation(self, token_id: int) -> bool:
        return token_id in self._eog_ids

    @property
    def end_of_generation_ids(self) -> frozenset[int]:
        return self._eog_ids

    # ---- encoding ----------------------------------------------------------------

    def encode(self, text: str, add_special: bool = False,
               parse_special: bool = True) -> list[int]:
        """Token ids of text. add_special adds BOS when the vocab asks for it;
        parse_special recognises control-token texts such as <|im_start|> in text
        (user-defined tokens such as <tool_call> are recognised always, as in llama.cpp)."""
        ids = [self.bos_id] if (add_special and self.add_bos and self.bos_id is not None) else []
        for piece in self._partition_special(text, parse_special):
            if isinstance(piece, int):
                ids.append(piece)
                continue
            for word in self._split(piece):
                ids.extend(self._word_ids(word))
        return ids

    def special_texts(self, parse_special: bool = True) -> list[str]:
        """Texts that encode() cuts out as single tokens, longest first."""
        return [self._tokens[i] for i in self._special_ids
                if parse_special or self._types[i] == TOKEN_USER_DEFINED]

    def split_special(self, text: str, parse_special: bool = True) -> list[str | int]:
        """text cut as encode() cuts it first: raw strings and special-token ids."""
        return self._partition_special(text, parse_special)

    def pre_tokenize(self, text: str) -> list[str]:
        """The words of a raw string (no special tokens) that BPE merges inside."""
        return self._split(text)

    def _partition_special(self, text: str, parse_special: bool) -> list[str | int]:
        """text cut into raw strings and special-token ids, llama.cpp's way: each
        special (longest first) splits every raw piece at all its occurrences."""
        pieces: list[str | int] = [text] if text else []
        for token_id in self._special_ids:
            if not parse_special and self._types[token_id] != TOKEN_USER_DEFINED:
                continue
            needle = self._tokens[token_id]
            if not any(isinstance(p, str) and needle in p for p in pieces):
                continue
            cut: list[str | int] = []
            for piece in pieces:
                if isinstance(piece, int) or needle not in piece:
                    cut.append(piece)
                    continue
                for k, part in enumerate(piece.split(needle)):
                    if k:
                        cut.append(token_id)
                    if part:
                        cut.append(part)
            pieces = cut
        return pieces

    def _encode_word(self, word: str) -> tuple[int, ...]:
        """Ids of one pre-token word (cached by the caller)."""
        chars = "".join(BYTE_TO_CHAR[b] for b in word.encode("utf-8"))
        ids = []
        for symbol in self._bpe(chars):
            token_id = self._token_ids.get(symbol)
            if token_id is None:   # a merge whose result is not a token: fall back to bytes
                ids.extend(self._token_ids[c] for c in symbol)
            else:
                ids.append(token_id)
        return tuple(ids)

    def _bpe(self, chars: str) -> list[str]:
        """Merge adjacent symbols by rank, lowest first, leftmost on ties."""
        symbols: list[str | None] = list(chars)      # [n]; None once merged away
        n = len(symbols)
        if n < 2:
            return symbols
        following = list(range(1, n + 1))            # [n] index of next live symbol
        preceding = list(range(-1, n - 1))           # [n] index of previous live symbol
        ranks = self._merge_ranks
        heap = []
        for i in range(n - 1):
            rank = ranks.get(chars[i] + " " + chars[i + 1])
            if rank is not None:
                heap.append((rank, i, chars[i], chars[i + 1]))
        heapq.heapify(heap)
        while heap:
            _, left, left_text, right_text = heapq.heappop(heap)
            right = following[left]
            if symbols[left] != left_text or right >= n or symbols[right] != right_text:
                continue   # stale: one side was merged since this pair was queued
            merged = left_text + right_text
            symbols[left] = merged
            symbols[right] = None
            after = following[right]
            following[left] = after
            if after < n:
                preceding[after] = left
            before = preceding[left]
            if before >= 0:
                self._queue_pair(heap, before, symbols[before], merged)
            if after < n:
                self._queue_pair(heap, left, merged, symbols[after])
        return [s for s in symbols if s is not None]

    def _queue_pair(self, heap: list, left: int, left_text: str, right_text: str) -> None:
        rank = self._merge_ranks.get(left_text + " " + right_text)
        if rank is not None:
            heapq.heappush(heap, (rank, left, left_text, right_text))

    # ---- decoding ----------------------------------------------------------------

    def token_bytes(self, token_id: int, special: bool = True) -> bytes:
        """The bytes a token stands for (llama.cpp's token_to_piece). Control tokens
        give their text when special is true, nothing otherwise; unused tokens nothing."""
        token_id = self._checked_index(token_id)
        kind = self._types[token_id]
        if kind in (TOKEN_CONTROL, TOKEN_UNKNOWN):
            return self._tokens[token_id].encode() if special else b""
        if kind == TOKEN_USER_DEFINED:
            return self._tokens[token_id].encode()
        if kind != TOKEN_NORMAL:
            return b""
        piece = self._piece_cache.get(token_id)
        if piece is None:
            piece = self._normal_piece(self._tokens[token_id])
            self._piece_cache[token_id] = piece
        return piece

    @staticmethod
    def _normal_piece(text: str) -> bytes:
        out = bytearray()
        for ch in text:
            byte = CHAR_TO_BYTE.get(ch)
            # Not a byte-level character: llama.cpp keeps such text as UTF-8 too.
            out += ch.encode() if byte is None else bytes((byte,))
        return bytes(out)

    def decode_bytes(self, ids: Iterable[int], special: bool = True) -> bytes:
        return b"".join(self.token_bytes(i, special) for i in ids)

    def decode(self, ids: Iterable[int], special: bool = True) -> str:
        """Text of ids; bytes that are not valid UTF-8 become U+FFFD."""
        return self.decode_bytes(ids, special).decode("utf-8", errors="replace")

    def stream_decoder(self, special: bool = False) -> "StreamDecoder":
        return StreamDecoder(self, special)

    # ---- chat --------------------------------------------------------------------

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True,
                            **extra: Any) -> str:
        """Prompt text for a conversation: the GGUF's jinja2 template, or ChatML."""
        return render_chat(self.chat_template, messages, add_generation_prompt,
                           bos_token=self._text_or_empty(self.bos_id),
                           eos_token=self._text_or_empty(self.eos_id), **extra)

    # ---- checks ------------------------------------------------------------------

    def _text_or_empty(self, token_id: int | None) -> str:
        return "" if token_id is None else self._tokens[token_id]

    def _checked_index(self, token_id: int) -> int:
        if not 0 <= token_id < len(self._tokens):
            raise IndexError(f"token id {token_id} out of range [0, {len(self._tokens)})")
        return token_id

    def _checked_id(self, token_id: int | None, what: str) -> int | None:
        if token_id is None:
            return None
        if not 0 <= int(token_id) < len(self._tokens):
            raise ValueError(f"{what} token id {token_id} out of range [0, {len(self._tokens)})")
        return int(token_id)

    @staticmethod
    def _llama_type(text: str, kind: int) -> int:
        return TOKEN_CONTROL if text in _CONTROL_TEXTS else kind


class StreamDecoder:
    """Turns token ids, fed one at a time, into text as soon as it is complete:
    a multi-byte character split across tokens is held back until its last byte."""

    def __init__(self, tokenizer: Tokenizer, special: bool = False):
        self._tokenizer = tokenizer
        self._special = special
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id: int) -> str:
        """Text completed by this token (may be empty)."""
        return self._utf8.decode(self._tokenizer.token_bytes(token_id, self._special))

    def flush(self) -> str:
        """Whatever is held back; an unfinished character becomes U+FFFD."""
        return self._utf8.decode(b"", final=True)
