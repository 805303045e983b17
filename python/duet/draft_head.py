"""The drafter's LM head over part of the vocabulary.

A small model spends a large share of each draft step in its LM head (the 0.5B
default drafter: 145 MB of its 400 MB read per token), while its drafts are
almost always among the vocabulary's frequent tokens. A byte-level BPE vocabulary
is ordered by merge rank, which follows frequency, so the first N ids are the
frequent ones (the first 65536 of Qwen2's 151936 hold 99.2% of the tokens of
HumanEval's canonical solutions, the first 32768 96.3%). The head scores those
rows, in place, plus the rows of every rarer token the model has been fed
(prompt, committed output, end-of-turn tokens), copied out once.

Drafts stay drafts: the target verifies every token, so greedy output is
unchanged, and speculative sampling treats a drafted token as a fixed proposal,
so the target's distribution is kept too. A token the drafter cannot score is
still emitted, as the target's own choice after the accepted path.

Under a memory budget only the scored rows are resident: the rest of the head is
never touched."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from duet import _core

# Rarer tokens the head takes in besides its prefix, at most; past that, new ones
# are left out (a long session's identifiers), which only costs acceptance.
MAX_EXTRA_ROWS = 4096


class DraftHead:
    """Logits of the first n_prefix token ids plus chosen rarer ones; -inf elsewhere."""

    def __init__(self, output: tuple, n_prefix: int, always: Iterable[int] = ()):
        """output: the model's head as Model keeps it, (type id, bytes, n_embd, n_vocab).
        always: ids to score whatever their rank (end-of-generation tokens)."""
        type_id, data, n_embd, n_vocab = output
        if n_prefix < 1:
            raise ValueError(f"a draft vocabulary needs at least one token, got {n_prefix}")
        self.type_id, self.n_embd, self.n_vocab = type_id, n_embd, n_vocab
        self.n_prefix = min(n_prefix, n_vocab)
        self.row_bytes = data.size // n_vocab
        self.rows = data.reshape(n_vocab, self.row_bytes)     # [n_vocab, row_bytes], in place
        self.prefix = self.rows[: self.n_prefix].reshape(-1)  # the first n_prefix rows, in place
        self.extra_ids = np.zeros(0, dtype=np.int64)          # [k] ids >= n_prefix, in the order seen
        # [MAX_EXTRA_ROWS, row_bytes]: row i is extra_ids[i]'s, copied in once when
        # first seen; the rows past k are never written, so never resident.
        self.extra = np.empty((min(MAX_EXTRA_ROWS, n_vocab - self.n_prefix), self.row_bytes), dtype=np.uint8)
        self.see(always)

    @staticmethod
    def rows_nbytes(row_bytes: int, n_vocab: int, n_prefix: int) -> int:
        """Bytes of a head of n_vocab rows that one of n_prefix reads, at its largest."""
        n_prefix = min(n_prefix, n_vocab)
        return (n_prefix + min(MAX_EXTRA_ROWS, n_vocab - n_prefix)) * row_bytes

    @property
    def nbytes(self) -> int:
        return self.rows_nbytes(self.row_bytes, self.n_vocab, self.n_prefix)

    def see(self, tokens: Iterable[int]) -> None:
        """Tokens the model was fed: the rarer ones join the scored vocabulary."""
        ids = np.asarray(list(tokens) if not isinstance(tokens, np.ndarray) else tokens, dtype=np.int64)
        new = np.setdiff1d(ids[(ids >= self.n_prefix) & (ids < self.n_vocab)], self.extra_ids)
        k = self.extra_ids.size
        new = new[: self.extra.shape[0] - k]
        if new.size == 0:
            return
        self.extra[k:k + new.size] = self.rows[new]
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
