"""A chat message typed into a StreamingSession as it arrives.

From a terminal, keystroke by keystroke: the terminal is put in non-canonical mode
without echo (restored however the chat ends, Ctrl-C included; signals stay on, so
Ctrl-C is still SIGINT), this module echoes what is typed and edits the line itself:
Backspace takes the last character back from the session, Ctrl-U the whole line,
Ctrl-W the last word; Enter ends the message, Ctrl-D on an empty line the input.
From a pipe or file, in chunks as they arrive; only a newline is special there."""
from __future__ import annotations

import codecs
import contextlib
import os
import re
import sys
import unicodedata
from typing import Iterator, TextIO

from duet.streaming_input import StreamingSession

ENTER, BACKSPACE, CTRL_H, CTRL_U, CTRL_W, CTRL_D = "\n", "\x7f", "\x08", "\x15", "\x17", "\x04"
_TERMINAL_KEYS = re.compile("([\n\x7f\x08\x15\x17\x04])")
_PIPE_KEYS = re.compile("(\n)")
# Arrow and function keys send escape sequences; typed text keeps none of them,
# nor other control characters (a tab aside).
_ESCAPE_SEQUENCE = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|O.|.)?")
_OTHER_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f]")
_LAST_WORD = re.compile(r"\S*\s*\Z")


class InputSource:
    """Text from a file descriptor as it arrives (os.read, so nothing waits for a
    whole line); what one message leaves unread goes to the next."""

    def __init__(self, fd: int, keystrokes: bool):
        self.fd = fd
        self.keystrokes = keystrokes          # a terminal in non-canonical mode: edit keys apply
        self.keys = _TERMINAL_KEYS if keystrokes else _PIPE_KEYS
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self._unread = ""
        self._ended = False

    def read(self) -> str | None:
        """The next text available, waiting for some; None at the end of the input."""
        if self._unread:
            text, self._unread = self._unread, ""
            return text
        while not self._ended:
            data = os.read(self.fd, 4096)
            self._ended = not data
            text = self._utf8.decode(data, final=self._ended)
            if self.keystrokes:
                text = _clean_keystrokes(text)
            if text:
                return text
        return None

    def unread(self, text: str) -> None:
        self._unread = text + self._unread


def _clean_keystrokes(text: str) -> str:
    """Escape sequences and stray controls dropped, edit keys kept, Return as ENTER."""
    text = _ESCAPE_SEQUENCE.sub("", text).replace("\r", ENTER)
    return "".join(piece if i % 2 else _OTHER_CONTROLS.sub("", piece)
                   for i, piece in enumerate(_TERMINAL_KEYS.split(text)))


@contextlib.contextmanager
def open_input(stream: TextIO = sys.stdin) -> Iterator[InputSource]:
    """An InputSource over stream: keystrokes from a terminal (where termios exists),
    chunks otherwise. The terminal's mode is restored on the way out."""
    fd = stream.fileno()
    try:
        import termios
    except ImportError:      # no termios (Windows): the console's own line editing
        termios = None
    if termios is None or not stream.isatty():
        yield InputSource(fd, keystrokes=False)
        return
    saved = termios.tcgetattr(fd)
    mode = termios.tcgetattr(fd)
    mode[3] &= ~(termios.ICANON | termios.ECHO)           # lflag: a key at a time, echoed by us
    mode[6][termios.VMIN], mode[6][termios.VTIME] = 1, 0   # read returns as soon as one byte is there
    termios.tcsetattr(fd, termios.TCSANOW, mode)
    try:
        yield InputSource(fd, keystrokes=True)
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)


class TypedMessage:
    """The message typed so far, kept equal to what the session was fed; echoed
    (and erased) on echo when the input is a terminal."""

    def __init__(self, session: StreamingSession, echo: TextIO | None):
        self.session = session
        self.text = ""
        self._echo = echo

    def type(self, text: str) -> None:
        if text:
            self.session.feed(text)
            self.text += text
            self._show(text)

    def erase(self, n_chars: int) -> None:
        n_chars = min(n_chars, len(self.text))
        if n_chars:
            self.session.retract(n_chars)
            erased, self.text = self.text[len(self.text) - n_chars:], self.text[:len(self.text) - n_chars]
            self._show("\b \b" * _columns(erased))

    def erase_word(self) -> None:
        self.erase(len(_LAST_WORD.search(self.text).group()))

    def end(self) -> str:
        """Ends the line (Enter, or Ctrl-D on an empty one) and returns the message."""
        if self.text.endswith("\r"):      # a CRLF line end from a pipe
            self.erase(1)
        self._show("\n")
        return self.text

    def _show(self, text: str) -> None:
        if self._echo is not None:
            self._echo.write(text)
            self._echo.flush()


def _columns(text: str) -> int:
    """Terminal cells text takes: wide East Asian characters two, combining marks none."""
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
               for ch in text)


def read_message(session: StreamingSession, source: InputSource, echo: TextIO | None = None) -> str | None:
    """Feeds one message to session as it is typed and returns its text at Enter
    (without the line end); at the end of the input the text typed so far, or None
    if there is none. The session's input is left open: finish() is the caller's.
    echo: where keystrokes are echoed (default stderr; nothing for a pipe)."""
    message = TypedMessage(session, (echo or sys.stderr) if source.keystrokes else None)
    while True:
        text = source.read()
        if text is None:
            return message.text or None
        pieces = source.keys.split(text)
        for index in range(0, len(pieces), 2):
            message.type(pieces[index])
            key = pieces[index + 1] if index + 1 < len(pieces) else None
            if key == ENTER:
                source.unread("".join(pieces[index + 2:]))
                return message.end()
            if key == CTRL_D and not message.text:
                message.end()             # the shell's prompt starts on a line of its own
                return None
            _edit(message, key)


def _edit(message: TypedMessage, key: str | None) -> None:
    if key in (BACKSPACE, CTRL_H):
        message.erase(1)
    elif key == CTRL_U:
        message.erase(len(message.text))
    elif key == CTRL_W:
        message.erase_word()
