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
EdgeLLM does: other branches add noise.

A cost floor joins alpha: a draft node with acceptance chance c saves about c
target passes and costs one draft step, so drafting it pays only while
c > draft_step_time / pass_time. Both times are measured as the engine runs. With
the target streamed from storage a pass costs its IO time, so the floor is low and
trees grow large; with the target resident a pass is only a few draft steps, so
the floor is high and trees stay small."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FallbackPolicy:
    alpha: float = 0.01       # the paper's default start
    min_alpha: float = 1e-6   # halving forever would let drafts run to the length cap every time
    max_depth: int = 16       # draft length cap, in tokens below the root
    max_nodes: int = 32       # tree size cap: a verification pass grows with the tree
    cost_floor: float = 0.0   # draft_step_time / pass_time, from observe_costs
    smoothing: float = 0.3    # weight of the newest measurement in the running means
    _draft_step: float = 0.0
    _pass: float = 0.0

    def __post_init__(self):
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.max_depth < 1 or self.max_nodes < 1:
            raise ValueError("max_depth and max_nodes must be at least 1")

    def should_verify(self, best_open_cumulative: float, depth: int, n_nodes: int) -> bool:
        return (best_open_cumulative < max(self.alpha, self.cost_floor) or depth > self.max_depth
                or n_nodes > self.max_nodes)

    def observe_costs(self, draft_step_seconds: float | None, pass_seconds: float) -> None:
        """Folds in one round's measured times (draft_step_seconds None: no step run)."""
        w = self.smoothing
        if draft_step_seconds is not None:
            self._draft_step = draft_step_seconds if not self._draft_step else (1 - w) * self._draft_step + w * draft_step_seconds
        self._pass = pass_seconds if not self._pass else (1 - w) * self._pass + w * pass_seconds
        if self._draft_step and self._pass:
            self.cost_floor = min(self._draft_step / self._pass, 0.9)

    def update(self, n_correct: int, n_all: int) -> None:
        if n_all <= 0:
            return
        if n_correct >= n_all:
            self.alpha = max(self.alpha * 0.5, self.min_alpha)
        else:
            self.alpha = min(max((n_all - n_correct) / n_all, self.min_alpha), 0.99)
