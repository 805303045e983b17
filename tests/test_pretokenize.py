"""The hand-written qwen2 pre-tokenizer against the regex it implements, run by the
stdlib `re` engine over a class-collapsed copy of the text (llama.cpp's own fallback:
ASCII kept, every other character replaced by one stand-in per class)."""

import re
import unicodedata

from hypothesis import given, settings, strategies as st

from duet.pretokenize import LETTER, LINE_END, NUMBER, OTHER, SPACE, char_class, split_qwen2

# Stand-ins for non-ASCII characters in the collapsed text.
_LETTER, _NUMBER, _OTHER = "\x80", "\x81", "\x82"
_L = "A-Za-z" + _LETTER
_N = "0-9" + _NUMBER
_S = "\t\n\x0b\x0c\r "
_QWEN2 = re.compile(
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
    rf"|[^\r\n{_L}{_N}]?[{_L}]+"
    rf"|[{_N}]"
    rf"| ?[^{_S}{_L}{_N}]+[\r\n]*"
    rf"|[{_S}]*[\r\n]+"
    rf"|[{_S}]+(?![^{_S}])"
    rf"|[{_S}]+")


def _is_white_space(ch: str) -> bool:
    # Unicode White_Space = str.isspace() minus the four ASCII information separators.
    return ch.isspace() and not "\x1c" <= ch <= "\x1f"


def _collapse(ch: str) -> str:
    if ord(ch) < 128:
        return ch
    if _is_white_space(ch):
        return "\x0b"
    return {"L": _LETTER, "N": _NUMBER}.get(unicodedata.category(ch)[0], _OTHER)


def reference_split(text: str) -> list[str]:
    collapsed = "".join(_collapse(c) for c in text)
    words = [text[m.start():m.end()] for m in _QWEN2.finditer(collapsed)]
    assert "".join(words) == text
    return words


HAND_MADE = [
    "", " ", "  ", "\n", "a", "Hello world", "a   b", "a   ", "   a", "\t\tx\t",
    "I'LL don't it's we'Re they've I'm you'd 'sa ''s", "x'", "'",
    "1234567 3.14159 -42 1e10 ١٢٣ Ⅻ ½",
    "def f(x):\n    return x + 1\n\n\n", "  \n\n  \r\n\t end  \n ",
    "你好，世界！ 😀😀 café naïve e\u0301 \u00a0x \u3000y \u2003\u2003z\u0085w",
    "((a)) [b]; {c}: d!? !!!\n\nx ... -> => <= != //",
    "\x1c\x1dx\x1f \x1e", "tab\t\tafter\ttab", "trailing   ", "émoji👍🏽text",
]


def test_hand_made_texts_split_as_the_regex():
    for text in HAND_MADE:
        assert split_qwen2(text) == reference_split(text), text


_ALPHABET = st.sampled_from(
    list("aZ'sStTrReEvVmMlLdD09 \t\r\n.,(-_") + ["\u00a0", "\u3000", "\u0085", "\x1c",
    "é", "\u0301", "中", "١", "½", "😀", "\u200b"])


@settings(max_examples=2000, deadline=None)
@given(st.lists(_ALPHABET, max_size=24).map("".join))
def test_random_texts_split_as_the_regex(text):
    assert split_qwen2(text) == reference_split(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_unicode_splits_as_the_regex(text):
    assert split_qwen2(text) == reference_split(text)


def test_char_classes_follow_unicode_categories():
    for cp in list(range(0x3000)) + [0x3000, 0x4E2D, 0x1F600, 0xFF10, 0x2160]:
        ch = chr(cp)
        cls = char_class(ch)
        if ch in "\r\n":
            assert cls == LINE_END
        elif _is_white_space(ch):
            assert cls == SPACE, hex(cp)
        else:
            major = unicodedata.category(ch)[0]
            assert cls == {"L": LETTER, "N": NUMBER}.get(major, OTHER), hex(cp)
