"""Pre-tokenizers: cut text into the words that byte-level BPE merges inside.

Only llama.cpp's LLAMA_VOCAB_PRE_TYPE_QWEN2 rule set is implemented. It is written
as the regex

    (?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+
    |\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+

and scanned here by hand (no third-party regex engine): at each position the first
alternative that matches wins, each greedy, with the lookahead of `\\s+(?!\\S)`
resolved by giving the last whitespace character of a run to the word after it.

Character classes follow llama.cpp's own Unicode tables, not Python's str methods:
  \\s    = the Unicode White_Space property (str.isspace() also accepts U+001C..U+001F)
  \\p{L} = general category L*;  \\p{N} = general category N* (Nd, Nl and No).
"""

from __future__ import annotations

import unicodedata

# Class of one character, as a one-letter code.
LETTER = "L"
NUMBER = "N"
LINE_END = "R"     # \r or \n: whitespace that rule 2 may not take as its prefix
SPACE = "W"        # any other whitespace
OTHER = "O"        # neither whitespace, letter nor number

# Unicode White_Space property (PropList.txt), the set llama.cpp's is_whitespace uses.
_WHITE_SPACE = frozenset(
    list(range(0x09, 0x0E)) + [0x20, 0x85, 0xA0, 0x1680]
    + list(range(0x2000, 0x200B)) + [0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
)


def char_class(ch: str) -> str:
    """Class code of one character (LETTER, NUMBER, LINE_END, SPACE or OTHER)."""
    if ch in "\r\n":
        return LINE_END
    if ord(ch) in _WHITE_SPACE:
        return SPACE
    major = unicodedata.category(ch)[0]
    if major == "L":
        return LETTER
    if major == "N":
        return NUMBER
    return OTHER


class _ClassTable(dict):
    """ord -> class code, filled on first sight so str.translate can classify a text."""

    def __missing__(self, codepoint: int) -> str:
        code = char_class(chr(codepoint))
        self[codepoint] = code
        return code


_CLASS_TABLE = _ClassTable()
_CONTRACTION_ONE = frozenset("sStTmMdD")
_CONTRACTION_TWO = frozenset(("re", "ve", "ll"))
_WHITESPACE_CLASSES = (SPACE, LINE_END)


def _run_end(classes: str, pos: int, wanted: str) -> int:
    """First index at or after pos whose class is not `wanted`."""
    n = len(classes)
    while pos < n and classes[pos] == wanted:
        pos += 1
    return pos


def _contraction_end(text: str, pos: int) -> int:
    """End of an English contraction ('s, 'T, 're, 'LL, ...) at pos, or -1."""
    if text[pos] != "'" or pos + 1 >= len(text):
        return -1
    if text[pos + 1] in _CONTRACTION_ONE:
        return pos + 2
    pair = text[pos + 1:pos + 3]
    if len(pair) == 2 and pair.isascii() and pair.lower() in _CONTRACTION_TWO:
        return pos + 3
    return -1


def _whitespace_end(classes: str, pos: int) -> int:
    """End of the word starting at whitespace pos (rules \\s*[\\r\\n]+, \\s+(?!\\S), \\s+)."""
    n = len(classes)
    run_end = pos
    after_line_end = -1
    while run_end < n and classes[run_end] in _WHITESPACE_CLASSES:
        run_end += 1
        if classes[run_end - 1] == LINE_END:
            after_line_end = run_end
    if after_line_end > 0:
        return after_line_end
    if run_end < n and run_end - pos > 1:
        return run_end - 1   # the last space goes to the word that follows
    return run_end


def _qwen2_word_end(text: str, classes: str, pos: int) -> int:
    """End (exclusive) of the qwen2 word that starts at pos."""
    end = _contraction_end(text, pos)
    if end >= 0:
        return end
    cls = classes[pos]
    nxt = classes[pos + 1] if pos + 1 < len(classes) else ""
    if cls == LETTER:
        return _run_end(classes, pos + 1, LETTER)
    if cls in (SPACE, OTHER) and nxt == LETTER:
        return _run_end(classes, pos + 1, LETTER)
    if cls == NUMBER:
        return pos + 1
    start = pos + 1 if (text[pos] == " " and nxt == OTHER) else pos
    if classes[start] == OTHER:
        return _run_end(classes, _run_end(classes, start, OTHER), LINE_END)
    return _whitespace_end(classes, pos)


def split_qwen2(text: str) -> list[str]:
    """Cut text into qwen2 pre-tokens; their concatenation is text."""
    classes = text.translate(_CLASS_TABLE)
    words = []
    pos = 0
    n = len(text)
    while pos < n:
        end = _qwen2_word_end(text, classes, pos)
        words.append(text[pos:end])
        pos = end
    return words


PRE_TOKENIZERS = {"qwen2": split_qwen2}
