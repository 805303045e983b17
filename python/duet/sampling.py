"""Choosing the next token from a logits vector.

The filters run in llama.cpp's default chain order: top-k, top-p, min-p, then
temperature. Top-p and min-p therefore judge tokens by the model's own distribution
(temperature 1), so the set of candidates does not move with the temperature; the
temperature only reshapes the probabilities among the survivors. Matching llama.cpp
also makes our outputs comparable with llama.cpp's under the same settings.

Ties are broken towards the lower token id everywhere (greedy argmax, the top-k cut,
the top-p cut), so a result never depends on sort stability.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Sampler:
    """Sampling settings plus the random generator they draw from.

    temperature: 0 means greedy (argmax); otherwise logits are divided by it last.
    top_k: keep the k most likely tokens; 0 disables.
    top_p: keep the smallest most-likely set whose probability reaches top_p; 1 disables.
    min_p: keep tokens at least min_p times as likely as the most likely one; 0 disables.
    seed: seeds the numpy Generator (None draws fresh entropy).
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    seed: int | None = None
    rng: np.random.Generator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature must be finite and >= 0, got {self.temperature}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, (int, np.integer)) or self.top_k < 0:
            raise ValueError(f"top_k must be an integer >= 0 (0 disables), got {self.top_k!r}")
        if not (0 < self.top_p <= 1):
            raise ValueError(f"top_p must be in (0, 1] (1 disables), got {self.top_p}")
        if not (0 <= self.min_p <= 1):
            raise ValueError(f"min_p must be in [0, 1] (0 disables), got {self.min_p}")
        object.__setattr__(self, "rng", np.random.default_rng(self.seed))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """The distribution `sample` draws from: float64 [n_vocab], zero outside the
        tokens that survive every filter, summing to 1."""
        x = _checked_logits(logits)
        if self.greedy:
            return _one_hot(int(np.argmax(x)), x.size)
        keep = np.isfinite(x)
        keep = _top_k_keep(x, keep, self.top_k)
        keep = _top_p_keep(x, keep, self.top_p)
        keep = _min_p_keep(x, keep, self.min_p)
        return _softmax_over(x / self.temperature, keep)

    def sample(self, logits: np.ndarray) -> int:
        """One token id drawn from `probabilities(logits)`; greedy takes no randomness."""
        probs = self.probabilities(logits)
        if self.greedy:
            return int(np.argmax(probs))
        return draw(probs, self.rng)


def draw(probs: np.ndarray, rng: np.random.Generator) -> int:
    """Inverse-CDF draw from a distribution; a zero-probability token is never chosen."""
    cdf = np.cumsum(probs)
    index = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    # u * total can round up to total; the last token with mass is then the answer.
    return min(index, int(np.flatnonzero(probs)[-1]))


def _checked_logits(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"logits must be a non-empty 1-D array, got shape {x.shape}")
    if np.isnan(x).any() or (x == np.inf).any():
        raise ValueError("logits must not contain NaN or +inf")
    if not np.isfinite(x).any():
        raise ValueError("every logit is -inf: no token can be sampled")
    return x


def _one_hot(index: int, n: int) -> np.ndarray:
    out = np.zeros(n)
    out[index] = 1.0
    return out


def _descending_order(x: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Kept token ids by decreasing logit, lower id first among equals."""
    ids = np.flatnonzero(keep)
    return ids[np.argsort(-x[ids], kind="stable")]


def _softmax_over(x: np.ndarray, keep: np.ndarray) -> np.ndarray:
    out = np.zeros(x.size)
    kept = x[keep]
    weights = np.exp(kept - kept.max())
    out[keep] = weights / weights.sum()
    return out


def _top_k_keep(x: np.ndarray, keep: np.ndarray, k: int) -> np.ndarray:
    if k == 0 or k >= keep.sum():
        return keep
    out = np.zeros_like(keep)
    out[_descending_order(x, keep)[:k]] = True
    return out


def _top_p_keep(x: np.ndarray, keep: np.ndarray, p: float) -> np.ndarray:
    if p >= 1:
        return keep
    order = _descending_order(x, keep)
    cumulative = np.cumsum(_softmax_over(x, keep)[order])
    # The first token whose running total reaches p is kept: the set is never empty.
    n_kept = int(np.searchsorted(cumulative, p, side="left")) + 1
    out = np.zeros_like(keep)
    out[order[:n_kept]] = True
    return out


def _min_p_keep(x: np.ndarray, keep: np.ndarray, min_p: float) -> np.ndarray:
    if min_p <= 0:
        return keep
    probs = _softmax_over(x, keep)
    return keep & (probs >= min_p * probs.max())
