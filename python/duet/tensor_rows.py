"""Chosen rows of a tensor, read from the file without mapping it."""
from __future__ import annotations

import os

import numpy as np


PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class TensorRowReader:
    """Reads chosen rows of a tensor with pread (the embedding table under a
    budget: a few KB per token, never mapped, so a file that shrinks gives an
    error instead of a fault). The pages read are dropped from the page cache
    again, and read-ahead is off: cached pages are charged to a memory cgroup, and
    rows of tokens met over a long session would otherwise pile up in it."""

    def __init__(self, path, info):
        self.path = str(path)
        self.offset = info.offset
        self.n_rows = info.shape[1]
        self.row_bytes = info.n_bytes // self.n_rows
        self.fd = os.open(self.path, os.O_RDONLY)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self.fd, self.offset, info.n_bytes, os.POSIX_FADV_RANDOM)

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        """[n] ids -> [n, row_bytes] bytes of those rows."""
        rows = []
        for row in np.asarray(ids).tolist():
            if not 0 <= row < self.n_rows:
                raise IndexError(f"token id {row} outside the vocabulary of {self.n_rows}")
            rows.append(self._read(row, row + 1))
        return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), self.row_bytes)

    def span(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop-1, in one read -> [stop - start, row_bytes]."""
        if not 0 <= start < stop <= self.n_rows:
            raise IndexError(f"rows {start}..{stop} outside the {self.n_rows} of the tensor")
        return np.frombuffer(self._read(start, stop), dtype=np.uint8).reshape(stop - start, self.row_bytes)

    def _read(self, start: int, stop: int) -> bytes:
        offset, size = self.offset + start * self.row_bytes, (stop - start) * self.row_bytes
        data = os.pread(self.fd, size, offset)
        if len(data) != size:
            raise RuntimeError(f"unexpected end of {self.path} reading rows {start}..{stop} of a tensor")
        if hasattr(os, "posix_fadvise"):
            # The kernel drops whole pages only: round out to them.
            first, end = offset - offset % PAGE, -(-(offset + size) // PAGE) * PAGE
            os.posix_fadvise(self.fd, first, end - first, os.POSIX_FADV_DONTNEED)
        return data

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self):
        self.close()
