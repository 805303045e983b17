"""When to stop drafting and verify: LLMCad's self-adjusting fallback.

Drafting goes on while the likeliest open branch's cumulative draft probability
stays at or above a threshold alpha; below it, the target verifies. After each
verification alpha adapts:
  - the branch the verification followed was wholly right: alpha halves, so the
    next draft runs longer;
  - otherwise alpha becomes the fraction of that branch that was wrong, so a poor
    draft is checked sooner next time.
The papers also describe, in prose, a rule based on the confidence of tokens after
the first error; we follow their formula (Eq. 3), which is the one they state
exactly and evaluate. The counts are taken on the followed branch only, as
EdgeLLM does: other branches add noise."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FallbackPolicy:
    alpha: float = 0.01       # the paper's default start
    min_alpha: float = 1e-6   # halving forever would let drafts run to the length cap every time
    max_depth: int = 16       # draft length cap, in tokens below the root
    max_nodes: int = 32       # tree size cap: a verification pass grows with the tree

    def __post_init__(self):
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.max_depth < 1 or self.max_nodes < 1:
            raise ValueError("max_depth and max_nodes must be at least 1")

    def should_verify(self, best_open_cumulative: float, depth: int, n_nodes: int) -> bool:
        return best_open_cumulative < self.alpha or depth >= self.max_depth or n_nodes >= self.max_nodes

    def update(self, n_correct: int, n_all: int) -> None:
        if n_all <= 0:
            return
        if n_correct >= n_all:
            self.alpha = max(self.alpha * 0.5, self.min_alpha)
        else:
            self.alpha = min(max((n_all - n_correct) / n_all, self.min_alpha), 0.99)
