"""Per-model KV cache: one preallocated block of K and V rows per layer.

Rows are token slots in the order they were written. A forward pass appends its
tokens at `n`; speculative decoding then keeps only the accepted path of the last
block (`keep`) or drops a tail (`trim`). `release` empties it and hands its
written pages back to the system (a parked drafter's cache)."""
from __future__ import annotations

import mmap

import numpy as np

from duet.memory import anonymous_map

KV_DTYPES = {"f16": np.float16, "f32": np.float32}


class KVCache:
    def __init__(self, n_layer: int, n_ctx: int, n_head_kv: int, head_dim: int, kv_type: str = "f16"):
        if kv_type not in KV_DTYPES:
            raise ValueError(f"KV cache type must be one of {sorted(KV_DTYPES)}, got {kv_type!r}")
        if n_ctx < 1:
            raise ValueError(f"context size must be at least 1, got {n_ctx}")
        shape = (n_layer, n_ctx, n_head_kv, head_dim)
        dtype = np.dtype(KV_DTYPES[kv_type])
        self.kv_type = kv_type
        self.n_ctx = n_ctx
        self._map = anonymous_map(2 * int(np.prod(shape)) * dtype.itemsize)  # release() can hand it back
        k, v = np.frombuffer(self._map, dtype=dtype).reshape((2,) + shape)
        self.k = k  # [layer, slot, head_kv, dim]
        self.v = v  # [layer, slot, head_kv, dim]
        self.n = 0  # slots in use

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes

    @property
    def free(self) -> int:
        return self.n_ctx - self.n

    def release(self) -> None:
        """Empties the cache and gives its memory back: the pages written so far
        leave the process (a parked drafter's budget counts none of its rows)."""
        self.n = 0
        if hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED)

    def trim(self, n: int) -> None:
        """Forget every slot from n on."""
        if not 0 <= n <= self.n:
            raise ValueError(f"cannot trim a cache of {self.n} slots to {n}")
        self.n = n

    def keep(self, start: int, rows: list[int] | np.ndarray) -> None:
        """Of the block of slots from `start` to `n`, keep only `rows` (offsets into
        the block, ascending), moved down to start, start+1, ...: commits an accepted
        tree path and drops its siblings."""
        rows = np.asarray(rows, dtype=np.int64)
        if not 0 <= start <= self.n:
            raise ValueError(f"block start {start} outside the cache's {self.n} slots")
        if rows.size and (rows.min() < 0 or start + rows.max() >= self.n or np.any(np.diff(rows) <= 0)):
            raise ValueError("rows to keep must be ascending offsets inside the last block")
        src = start + rows
        dst = start + np.arange(rows.size)
        moved = src != dst
        if moved.any():
            self.k[:, dst[moved]] = self.k[:, src[moved]]
            self.v[:, dst[moved]] = self.v[:, src[moved]]
        self.n = start + rows.size
