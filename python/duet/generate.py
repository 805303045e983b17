"""Target-only decoding as small typed functions: prefill, then one token at a time.

The collaborative engine builds on the same pieces; this path is also the
reference it must reproduce token for token in greedy mode."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

import numpy as np

from duet.kv_cache import KVCache
from duet.model import Model


class TokenSampler(Protocol):
    def sample(self, logits: np.ndarray) -> int: ...


@dataclass
class DecodeStats:
    prompt_tokens: int = 0
    prompt_seconds: float = 0.0
    generated_tokens: int = 0
    decode_seconds: float = 0.0

    @property
    def prompt_tokens_per_second(self) -> float:
        return self.prompt_tokens / self.prompt_seconds if self.prompt_seconds else 0.0

    @property
    def decode_tokens_per_second(self) -> float:
        return self.generated_tokens / self.decode_seconds if self.decode_seconds else 0.0


def decode_tokens(
    model: Model,
    cache: KVCache,
    prompt: list[int],
    max_tokens: int,
    sampler: TokenSampler,
    is_stop: Callable[[int], bool],
    stats: DecodeStats | None = None,
) -> Iterator[int]:
    """Yields up to max_tokens tokens after the prompt; stops after a stop token,
    which is yielded too. The cache may already hold a prefix of prompt[:-1]."""
    stats = stats if stats is not None else DecodeStats()
    if len(prompt) + max_tokens > cache.n_ctx:
        raise ValueError(
            f"prompt ({len(prompt)} tokens) plus {max_tokens} new tokens exceed the context size {cache.n_ctx}")
    if cache.n >= len(prompt):
        raise ValueError("the cache already holds the whole prompt; the last prompt token must be left to run")
    start = time.perf_counter()
    logits = model.prefill(prompt[cache.n:], cache)
    stats.prompt_tokens += len(prompt)
    stats.prompt_seconds += time.perf_counter() - start
    start = time.perf_counter()
    for i in range(max_tokens):
        token = sampler.sample(logits)
        stats.generated_tokens += 1
        now = time.perf_counter()
        stats.decode_seconds = now - start
        yield token
        if is_stop(token) or i == max_tokens - 1:
            return
        logits = model.forward([token], cache)[0]
