"""The drafter's LM head over part of the vocabulary.

A small model spends a large share of each draft step in its LM head (the 0.5B
default drafter: 145 MB of its 400 MB read per token), while its drafts are
almost always among the vocabulary's frequent tokens. A byte-level BPE vocabulary
is ordered by merge rank, which follows frequency, so the first N ids are the
frequent ones (the first 65536 of Qwen2's 151936 hold 99.2% of the tokens of
HumanEval's canonical solutions, the first 32768 96.3%). The head scores those
rows plus the rows of every rarer token the model has been fed (prompt,
committed output, end-of-turn tokens), each read from the file once and held in
a narrower type (HELD_TYPE) where the file's is wider.

Drafts stay drafts: the target verifies every token, so greedy output is
unchanged, and speculative sampling treats a drafted token as a fixed proposal,
so the target's distribution is kept too. A token the drafter cannot score is
still emitted, as the target's own choice after the accepted path.

Only the scored rows are resident, as held: the rest of the head is never
touched, and the file's rows leave the page cache once read."""
from __future__ import annotations

import mmap
from typing import Iterable

import numpy as np
from gguf import GGMLQuantizationType
from gguf.constants import GGML_QUANT_SIZES

from duet import _core
from duet.memory import anonymous_map
from duet.tensor_rows import TensorRowReader

# Rarer tokens the head takes in besides its prefix, at most; past that, new ones
# are left out (a long session's identifiers), which only costs acceptance.
MAX_EXTRA_ROWS = 4096

# The type the scored rows are held in, where it is narrower than the file's.
# Draft logits only rank candidates, so 4.5 bits a weight do: the 0.5B's Q8_0 head
# takes 33 MiB for its first 65536 rows instead of 63, which a budget gives to the
# target's layers, and a draft step reads less. Its other matrices in Q4_0 too
# (Q5_0 in the file) lost acceptance (HumanEval 1 at 1 GiB: 1.8 accepted per pass
# against 3); the head alone did not (README, session 27).
HELD_TYPE = GGMLQuantizationType.Q4_0
CONVERT_ROWS = 4096  # rows converted at a time: their float copy is transient memory


def held_layout(type_id: int, row_bytes: int, n_embd: int, narrow: bool = True) -> tuple[int, int]:
    """(type id, bytes per row) of the rows a head of this type holds: HELD_TYPE's
    where narrow, that is narrower, and a row splits into its blocks; else the file's."""
    block_elems, block_bytes = GGML_QUANT_SIZES[HELD_TYPE]
    held_bytes = n_embd // block_elems * block_bytes
    if narrow and n_embd % block_elems == 0 and held_bytes < row_bytes:
        return int(HELD_TYPE), held_bytes
    return type_id, row_bytes


def _rows_nbytes(row_bytes: int, n_vocab: int, n_prefix: int) -> int:
    """Bytes of the rows a head of n_vocab rows scoring n_prefix holds, at its largest."""
    n_prefix = min(n_prefix, n_vocab)
    return (n_prefix + min(MAX_EXTRA_ROWS, n_vocab - n_prefix)) * row_bytes


class DraftHead:
    """Logits of the first n_prefix token ids plus chosen rarer ones; -inf elsewhere."""

    def __init__(self, source: TensorRowReader, type_id: int, n_embd: int, n_prefix: int,
                 always: Iterable[int] = (), narrow: bool = True):
        """source: the head's rows in the file, of type type_id (never mapped: read
        once, converted, and dropped from the page cache).
        always: ids to score whatever their rank (end-of-generation tokens).
        narrow: hold the rows as HELD_TYPE where that is narrower (held_layout)."""
        if n_prefix < 1:
            raise ValueError(f"a draft vocabulary needs at least one token, got {n_prefix}")
        self.source, self.source_type = source, type_id
        self.n_embd, self.n_vocab = n_embd, source.n_rows
        self.n_prefix = min(n_prefix, self.n_vocab)
        self.type_id, self.row_bytes = held_layout(type_id, source.row_bytes, n_embd, narrow)
        self.extra_ids = np.zeros(0, dtype=np.int64)  # [k] ids >= n_prefix, in the order seen
        n_extra = min(MAX_EXTRA_ROWS, self.n_vocab - self.n_prefix)
        # [n_prefix + n_extra, row_bytes], held: the first n_prefix rows, then row
        # n_prefix + i is extra_ids[i]'s. Rows past n_prefix + k are never written,
        # so never resident.
        self._map = anonymous_map((self.n_prefix + n_extra) * self.row_bytes)
        rows = np.frombuffer(self._map, dtype=np.uint8).reshape(-1, self.row_bytes)
        self.prefix, self.extra = rows[: self.n_prefix].reshape(-1), rows[self.n_prefix:]
        self.load()
        self.see(always)

    def load(self) -> None:
        """Reads and holds the prefix's rows, and those of the rarer ids seen, again
        after release()."""
        rows = self.prefix.reshape(self.n_prefix, self.row_bytes)
        for start in range(0, self.n_prefix, CONVERT_ROWS):
            stop = min(start + CONVERT_ROWS, self.n_prefix)
            rows[start:stop] = self._held(self.source.span(start, stop))
        if self.extra_ids.size:
            self.extra[: self.extra_ids.size] = self._held(self.source(self.extra_ids))

    def release(self) -> None:
        """Gives the held rows' memory back (a parked drafter's budget has no room
        for them); load() before the next logits."""
        if hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED)

    @staticmethod
    def held_nbytes(type_id: int, file_row_bytes: int, n_embd: int, n_vocab: int, n_prefix: int) -> int:
        """Bytes that a head of n_vocab rows (of type_id, file_row_bytes each in the
        file) scoring n_prefix holds at its largest, narrowed as held_layout says."""
        return _rows_nbytes(held_layout(type_id, file_row_bytes, n_embd)[1], n_vocab, n_prefix)

    @property
    def nbytes(self) -> int:
        return _rows_nbytes(self.row_bytes, self.n_vocab, self.n_prefix)

    def _held(self, rows: np.ndarray) -> np.ndarray:
        """[k, source row bytes] rows of the file -> [k, row_bytes] rows as held."""
        if self.type_id == self.source_type:
            return rows
        floats = _core.dequantize(self.source_type, rows, rows.shape[0] * self.n_embd, "")
        return _core.quantize_q4_0(floats).reshape(rows.shape[0], self.row_bytes)

    def see(self, tokens: Iterable[int]) -> None:
        """Tokens the model was fed: the rarer ones join the scored vocabulary."""
        ids = np.asarray(list(tokens) if not isinstance(tokens, np.ndarray) else tokens, dtype=np.int64)
        new = np.setdiff1d(ids[(ids >= self.n_prefix) & (ids < self.n_vocab)], self.extra_ids)
        k = self.extra_ids.size
        new = new[: self.extra.shape[0] - k]
        if new.size == 0:
            return
        self.extra[k:k + new.size] = self._held(self.source(new))
        self.extra_ids = np.concatenate([self.extra_ids, new])

    def logits(self, h: np.ndarray, pool: "_core.ThreadPool", isa: str, prompt: np.ndarray | None) -> np.ndarray:
        """[n, n_embd] normed hidden states -> [n, n_vocab] logits, -inf where unscored."""
        out = np.full((h.shape[0], self.n_vocab), -np.inf, dtype=np.float32)
        out[:, : self.n_prefix] = _core.matmul(self.type_id, self.prefix, self.n_prefix, self.n_embd, h, pool, isa,
                                               prompt=prompt)
        k = self.extra_ids.size
        if k:
            out[:, self.extra_ids] = _core.matmul(self.type_id, self.extra[:k].reshape(-1), k, self.n_embd, h, pool, isa,
                                                  prompt=prompt)
        return out
