"""One model computes at a time: the target and the drafter share the cores, and
the drafter may only use them while the target waits for its weights to arrive.

Each C++ call (a layer, the LM head) runs under the token; the target's requests
go before any waiting drafter's, so a drafter holds the target up by at most one
of its own layers."""
from __future__ import annotations

import threading
from contextlib import contextmanager


class ComputeToken:
    def __init__(self):
        self._cond = threading.Condition()
        self._held = False
        self._urgent_waiting = 0

    @contextmanager
    def hold(self, urgent: bool):
        with self._cond:
            if urgent:
                self._urgent_waiting += 1
                self._cond.wait_for(lambda: not self._held)
                self._urgent_waiting -= 1
            else:
                self._cond.wait_for(lambda: not self._held and self._urgent_waiting == 0)
            self._held = True
        try:
            yield
        finally:
            with self._cond:
                self._held = False
                self._cond.notify_all()


class NoToken:
    """Stands in when nothing runs concurrently."""

    @contextmanager
    def hold(self, urgent: bool):
        yield
