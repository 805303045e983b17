"""Typing a chat message: the line editing of duet.chat_input over a pipe, with a
session that records what it is fed. The reference: the text a person meant, and
the session's text always equal to the message's."""
from __future__ import annotations

import io
import os

import pytest

from duet.chat_input import InputSource, read_message


class RecordingSession:
    """The text a StreamingSession would hold after its feeds and retractions."""

    def __init__(self):
        self.text = ""

    def feed(self, piece: str) -> None:
        self.text += piece

    def retract(self, n_chars: int) -> None:
        assert 0 < n_chars <= len(self.text)
        self.text = self.text[:len(self.text) - n_chars]


@pytest.fixture
def typed():
    """typed(data, keystrokes) -> an InputSource over a pipe holding data, then its end."""
    fds = []

    def make(data: str, keystrokes: bool) -> InputSource:
        read_end, write_end = os.pipe()
        fds.append(read_end)
        os.write(write_end, data.encode())
        os.close(write_end)
        return InputSource(read_end, keystrokes)

    yield make
    for fd in fds:
        os.close(fd)


def read(source: InputSource) -> tuple[str | None, str, str]:
    """(message, the session's text, the echo)."""
    session, echo = RecordingSession(), io.StringIO()
    message = read_message(session, source, echo)
    return message, session.text, echo.getvalue()


def test_terminal_keys_edit_the_line_and_the_session_alike(typed):
    # Backspace (DEL and ^H), an arrow key's escape sequence, Ctrl-W, Ctrl-U, Return.
    source = typed("héllp\x7fo 你\x08\x1b[Athere x\x17\rjunk\x15next\r", keystrokes=True)
    assert read(source)[:2] == ("héllo there ", "héllo there ")
    message, session_text, echo = read(source)
    assert (message, session_text) == ("next", "next")
    assert echo == "junk" + "\b \b" * 4 + "next\n"


def test_erasing_a_wide_character_erases_two_cells(typed):
    _, _, echo = read(typed("你\x7f\r", keystrokes=True))
    assert echo == "你" + "\b \b" * 2 + "\n"


def test_ctrl_d_ends_the_input_only_on_an_empty_line(typed):
    source = typed("ab\x04c\r\x04more", keystrokes=True)
    assert read(source)[:2] == ("abc", "abc")
    assert read(source)[0] is None


def test_end_of_input_gives_the_last_unfinished_line(typed):
    source = typed("first\nlast", keystrokes=False)
    assert read(source)[0] == "first"
    assert read(source)[:2] == ("last", "last")
    assert read(source)[0] is None


def test_a_pipe_keeps_control_characters_as_text_and_ends_crlf_lines(typed):
    source = typed("a\x7fb\x15\r\n", keystrokes=False)
    message, session_text, echo = read(source)
    assert message == session_text == "a\x7fb\x15"
    assert echo == ""                     # nothing is echoed for a pipe

