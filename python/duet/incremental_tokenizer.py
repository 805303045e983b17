"""Tokenizing text while it is still being typed.

The tokens of a text's beginning can change when more text arrives, so only the
tokens that no continuation can change are released. What can still change
(qwen2 pre-tokenizer, byte-level BPE, llama.cpp's special-token cut):
  - the last pre-token word: letters, symbols and line ends extend it, a
    contraction ('s, 're, ...) may complete, and BPE merges only inside a word;
  - a trailing whitespace run: how it splits depends on what follows it
    ("\\n " then "\\n" joins into one word; "  " then "x" gives " ", " x");
  - a special token typed partly ("<|im_e"): it cuts the raw text once complete,
    and a complete one may lose to a longer one that overlaps it;
  - a multi-byte character split across byte pieces (held by a UTF-8 decoder).
Everything before the earliest of these starts is released: its tokens are the
tokens of that prefix alone, and they are a prefix of every continuation's tokens.

Should a release ever prove wrong, the next update says how many released tokens
are still right (`TokenUpdate.n_kept`) so that a consumer can trim what it built on
them; after finish() the tokens are exactly tokenizer.encode(whole text)."""
from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Callable

from duet.pretokenize import LINE_END, SPACE, char_class
from duet.tokenizer import Tokenizer


@dataclass(frozen=True)
class TokenUpdate:
    n_kept: int        # tokens of the previous release that stay valid
    added: list[int]   # tokens released after them


def common_prefix_length(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class StableBoundary:
    """Where the part of a text whose tokens can still change begins."""

    def __init__(self, tokenizer: Tokenizer, parse_special: bool = True):
        self._tokenizer = tokenizer
        self._parse_special = parse_special
        specials = tokenizer.special_texts(parse_special)
        self._special_prefixes = {s[:k] for s in specials for k in range(1, len(s))}
        self._longest_special = max((len(s) for s in specials), default=0)

    def __call__(self, text: str) -> int:
        end = self._partial_special_start(text)
        end = self._before_overlapping_special(text, end)
        return self._stable_word_end(text[:end])

    def _partial_special_start(self, text: str) -> int:
        """Earliest p such that text[p:] is a special token's proper prefix, or len(text)."""
        n = len(text)
        for p in range(max(0, n - self._longest_special + 1), n):
            if text[p:] in self._special_prefixes:
                return p
        return n

    def _before_overlapping_special(self, text: str, end: int) -> int:
        """end moved back to the start of a complete special token that reaches past it:
        the partial one after it may win the cut once complete."""
        if end == len(text):
            return end
        start = 0
        for piece in self._tokenizer.split_special(text, self._parse_special):
            length = len(piece) if isinstance(piece, str) else len(self._tokenizer.token_text(piece))
            if isinstance(piece, int) and start < end < start + length:
                return start
            start += length
        return end

    def _stable_word_end(self, text: str) -> int:
        """Start of the earliest word of text's last raw piece that may still change:
        the last word, any word in the trailing whitespace run, and any word right
        after whitespace (text cut there would end in whitespace, which splits
        differently at the end of a text)."""
        pieces = self._tokenizer.split_special(text, self._parse_special)
        if not pieces or isinstance(pieces[-1], int):
            return len(text)
        raw = pieces[-1]
        raw_start = len(text) - len(raw)
        starts = [raw_start]                       # [n_words] start of each word in text
        for word in self._tokenizer.pre_tokenize(raw)[:-1]:
            starts.append(starts[-1] + len(word))
        space_start = len(text)
        while space_start > raw_start and _is_space(text[space_start - 1]):
            space_start -= 1
        k = len(starts) - 1
        while k > 0 and (starts[k] > space_start or _is_space(text[starts[k] - 1])):
            k -= 1
        return starts[k]


def _is_space(ch: str) -> bool:
    return char_class(ch) in (SPACE, LINE_END)


class IncrementalTokenizer:
    """Text fed piece by piece; `tokens` are the released tokens so far.

    stable_end: text -> length of its prefix whose tokens may be released
    (default StableBoundary; a rule that releases too early only costs rollbacks)."""

    def __init__(self, tokenizer: Tokenizer, text: str = "", parse_special: bool = True,
                 stable_end: Callable[[str], int] | None = None):
        self._tokenizer = tokenizer
        self._parse_special = parse_special
        self._stable_end = stable_end or StableBoundary(tokenizer, parse_special)
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self._parts = [text]
        self._text = text
        self.tokens: list[int] = []
        self.finished = False
        self.rollbacks = 0   # updates that took back released tokens (retract aside)

    @property
    def text(self) -> str:
        """The text fed so far (without an incomplete UTF-8 character)."""
        if len(self._parts) > 1:
            self._text = "".join(self._parts)
            self._parts = [self._text]
        return self._text

    def feed(self, piece: str | bytes) -> TokenUpdate:
        """Appends piece (bytes may end inside a UTF-8 character) and releases what is stable."""
        self._append(piece)
        return self._release_stable()

    def retract(self, n_chars: int) -> TokenUpdate:
        """Takes the last n_chars characters back (a Backspace) and releases what is
        stable of the shorter text: the released tokens keep their common prefix
        with the old ones, so a consumer trims only what the erased text changed."""
        if self.finished:
            raise RuntimeError("the text is finished; nothing can be taken back after finish()")
        if self._utf8.getstate()[0]:
            raise ValueError("cannot take text back while the bytes fed end inside a UTF-8 character")
        text = self.text
        if not 0 <= n_chars <= len(text):
            raise ValueError(f"cannot take back {n_chars} characters of a text of {len(text)}")
        self._text = text[:len(text) - n_chars]
        self._parts = [self._text]
        return self._release_stable(erased=True)

    def finish(self, suffix: str = "") -> TokenUpdate:
        """Appends suffix and releases everything: tokens == tokenizer.encode(text)."""
        if self.finished:
            raise RuntimeError("the text is already finished")
        self._parts.append(self._utf8.decode(b"", final=True))   # raises on a truncated character
        self._append(suffix)
        self.finished = True
        return self._release(self._tokenizer.encode(self.text, parse_special=self._parse_special))

    def _release_stable(self, erased: bool = False) -> TokenUpdate:
        text = self.text
        return self._release(self._tokenizer.encode(text[:self._stable_end(text)],
                                                    parse_special=self._parse_special), erased)

    def _append(self, piece: str | bytes) -> None:
        if self.finished:
            raise RuntimeError("the text is finished; nothing can be fed after finish()")
        if isinstance(piece, (bytes, bytearray, memoryview)):
            piece = self._utf8.decode(bytes(piece))
        elif not isinstance(piece, str):
            raise TypeError(f"feed takes str or bytes, got {type(piece).__name__}")
        elif piece and self._utf8.getstate()[0]:
            raise ValueError("text fed while the bytes fed before end inside a UTF-8 character")
        if piece:
            self._parts.append(piece)

    def _release(self, tokens: list[int], erased: bool = False) -> TokenUpdate:
        """erased: the text was shortened, so tokens taken back are no hold-back failure."""
        n_kept = common_prefix_length(self.tokens, tokens)
        if n_kept < len(self.tokens) and not erased:
            self.rollbacks += 1
        self.tokens = tokens
        return TokenUpdate(n_kept, tokens[n_kept:])
