"""Text typed on one thread, worked on by another.

BackgroundInput is the shared machinery of the streaming sessions: `feed` only
appends to a queue and wakes the worker; the worker hands the queued text to
`_advance` and calls it again while `_lagging` says there is work left; an
exception in the worker is kept and raised on the caller's thread when the input
ends. Text taken back (`_queue_erase`, a Backspace) first leaves the queue; what
the worker already took is handed to the subclass's `_erase` before the new text.
Subclasses do the work (tokenize, prefill, generate) in `_advance`; only the
worker thread touches their models and caches until `_end_input` has returned."""
from __future__ import annotations

import codecs
import threading


class BackgroundInput:
    def __init__(self, background: bool = True, name: str = "duet-streaming"):
        self._pending: list[str] = []
        self._pending_erase = 0                  # characters to take off what the worker took, before _pending
        self._typed_chars = 0                    # characters fed and not taken back
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self._state = "open"                     # open -> finished -> closed
        self._stop = False
        self._idle = False                       # the worker waits with nothing to do
        self._error: BaseException | None = None
        self._wake = threading.Condition()
        self._worker = threading.Thread(target=self._work, name=name, daemon=True) if background else None

    def _start(self) -> None:
        """Starts the worker; call at the end of the subclass's __init__."""
        if self._worker is not None:
            self._worker.start()

    # ---- what a subclass provides ----------------------------------------------------

    def _advance(self, text: str) -> bool:
        """Takes newly typed text (may be empty) and does one unit of work; False when idle."""
        raise NotImplementedError

    def _lagging(self) -> bool:
        """True while work is left with no new text."""
        raise NotImplementedError

    def _erase(self, n_chars: int) -> None:
        """Takes the last n_chars of the text already given to _advance back (subclasses
        that offer taking text back)."""
        raise NotImplementedError

    # ---- caller's side ---------------------------------------------------------------

    def feed(self, piece: str | bytes) -> None:
        """Appends typed text (bytes may end inside a character); returns at once."""
        with self._wake:
            if self._state != "open":
                raise RuntimeError(f"the session is {self._state}; feed comes before finish()")
            text = self._as_text(piece)
            self._pending.append(text)
            self._typed_chars += len(text)
            self._idle = False
            self._wake.notify_all()

    def step(self) -> bool:
        """One unit of background work on the calling thread (sessions made with
        background=False): takes what was fed, works on it. False when there was
        nothing to do."""
        if self._worker is not None:
            raise RuntimeError("step() is for sessions made with background=False")
        with self._wake:
            if self._state != "open":
                raise RuntimeError(f"the session is {self._state}")
        return self._advance(self._apply_pending())

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Waits until the worker has done all the work it has (or failed); False on timeout."""
        if self._worker is None:
            raise RuntimeError("wait_idle() is for background sessions; call step() instead")
        with self._wake:
            return self._wake.wait_for(lambda: self._idle or self._error is not None
                                       or not self._worker.is_alive(), timeout)

    def close(self) -> None:
        """Stops the background worker (waiting for the unit of work in flight)."""
        with self._wake:
            self._state = "closed"
            self._stop = True
            self._wake.notify_all()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _queue_erase(self, n_chars: int) -> None:
        """Takes back the last n_chars characters fed; returns at once. Text still
        queued is simply dropped; the rest goes to the worker's _erase."""
        with self._wake:
            if self._state != "open":
                raise RuntimeError(f"the session is {self._state}; text is taken back before finish()")
            if self._utf8.getstate()[0]:
                raise ValueError("cannot take text back while the bytes fed end inside a UTF-8 character")
            if not 0 <= n_chars <= self._typed_chars:
                raise ValueError(f"cannot take back {n_chars} characters: {self._typed_chars} were typed")
            self._typed_chars -= n_chars
            while n_chars and self._pending:
                last = self._pending.pop()
                kept = last[:max(len(last) - n_chars, 0)]
                n_chars -= len(last) - len(kept)
                if kept:
                    self._pending.append(kept)
            self._pending_erase += n_chars
            self._idle = False
            self._wake.notify_all()

    def _as_text(self, piece: str | bytes) -> str:
        """piece as text; bytes of a character split across pieces wait for the rest."""
        if isinstance(piece, (bytes, bytearray, memoryview)):
            return self._utf8.decode(bytes(piece))
        if not isinstance(piece, str):
            raise TypeError(f"feed takes str or bytes, got {type(piece).__name__}")
        if piece and self._utf8.getstate()[0]:
            raise ValueError("text fed while the bytes fed before end inside a UTF-8 character")
        return piece

    def _end_input(self) -> str:
        """Ends the input: stops the worker after its unit of work in flight, raises
        its error if it failed, and returns the text it has not taken."""
        with self._wake:
            if self._state != "open":
                raise RuntimeError(f"the session is {self._state}; finish() comes once")
            self._state = "finished"
            self._stop = True
            self._wake.notify_all()
        if self._worker is not None:
            self._worker.join()
        self._raise_worker_error()
        tail = self._utf8.decode(b"", final=True)   # raises on a truncated character
        return self._apply_pending() + tail

    def _raise_worker_error(self) -> None:
        with self._wake:
            error = self._error
        if error is not None:
            raise RuntimeError(f"background work failed: {error}") from error

    # ---- worker's side ---------------------------------------------------------------

    def _work(self) -> None:
        try:
            while True:
                with self._wake:
                    while not (self._stop or self._pending or self._pending_erase or self._lagging()):
                        self._idle = True
                        self._wake.notify_all()
                        self._wake.wait()
                    self._idle = False
                    if self._stop:
                        return
                self._advance(self._apply_pending())
        except BaseException as exc:   # handed to finish()/generate() on the caller's thread
            with self._wake:
                self._error = exc
                self._wake.notify_all()

    def _apply_pending(self) -> str:
        """Hands text taken back to _erase; returns the text queued after it."""
        with self._wake:
            n_erased, pieces = self._pending_erase, self._pending
            self._pending_erase, self._pending = 0, []
        if n_erased:
            self._erase(n_erased)
        return "".join(pieces)
