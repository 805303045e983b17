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

A cost floor joins alpha. Drafting a node the target has not seen yet stalls
the round for one draft step d, and the node adds its acceptance chance c to the
round's tokens. With a round of T tokens in R seconds, the rate T / R rises only
if (T + c) / (R + d) > T / R, that is while c > d * T / R: the draft step over the
time the engine now takes per token. Both are measured as the engine runs. With
the target streamed from storage a round is mostly the pass's reading time, so
tokens are dear and trees grow large; with the target resident a round is only a
few draft steps' worth, so trees stay small. (Taking the whole pass as the value
of a token, as if a round gave one, would let trees grow T times too deep.) Nodes
the drafter adds while the target verifies cost no stall and face no floor.

Fallback to the target alone (solo): where a round of drafting and verifying
yields tokens more slowly than the target decodes them one by one (a resident
target whose batched passes are bound by arithmetic, text the drafter cannot
guess), the round is replaced by one target-only step. Both rates are measured:
one solo step follows the first round, and afterwards the mode not in use runs
once after probe_tokens tokens, so that a change in the text (or in the machine's
load) moves the choice back. A probe that changes nothing doubles the interval to
the next one (a probe of drafting after solo steps first runs those tokens through
the drafter, which costs about as much as drafting them did); one that changes the
choice resets it. A request starts with a round: its text is new.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FallbackPolicy:
    alpha: float = 0.01       # the paper's default start
    min_alpha: float = 1e-6   # halving forever would let drafts run to the length cap every time
    max_depth: int = 16       # draft length cap, in tokens below the root
    max_nodes: int = 32       # tree size cap: a verification pass grows with the tree
    cost_floor: float = 0.0   # draft step time / time per emitted token, from observe_round
    smoothing: float = 0.3    # weight of the newest measurement in the running means
    solo_fallback: bool = False  # whether target-only steps may replace rounds that do not pay
    probe_tokens: int = 32    # tokens between runs of the mode not in use, at first
    max_probe_tokens: int = 1024
    _draft_step: float = 0.0  # seconds, running mean
    _round: float = 0.0       # seconds per round, running mean
    _tokens: float = 0.0      # tokens emitted per round, running mean
    _solo: float = 0.0        # seconds per target-only step, running mean
    _unprobed: int = 0        # tokens emitted since the mode not in use last ran
    _probe_interval: int = 0  # tokens from one probe to the next (0: probe_tokens)
    _draft_next: bool = False  # the next round drafts whatever the rates (a new request)

    def __post_init__(self):
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.max_depth < 1 or self.max_nodes < 1:
            raise ValueError("max_depth and max_nodes must be at least 1")

    def should_verify(self, best_open_cumulative: float, depth: int, n_nodes: int) -> bool:
        return (best_open_cumulative < max(self.alpha, self.cost_floor) or depth > self.max_depth
                or n_nodes > self.max_nodes)

    def drafting_pays(self) -> bool:
        """Whether a round yields tokens faster than target-only steps, as measured."""
        return not self._solo or not self._round or self._round / self._tokens <= self._solo

    def start_request(self) -> None:
        self._draft_next = True

    def drafting(self) -> bool:
        """Whether the next round drafts; False: one target-only step instead."""
        if not self.solo_fallback or not self._round or self._draft_next:
            self._draft_next = False
            return True
        if not self._solo:
            return False  # the first solo step, to compare
        return self.drafting_pays() != (self._unprobed >= (self._probe_interval or self.probe_tokens))

    def observe_solo(self, seconds: float) -> None:
        """Folds in one target-only step's wall time."""
        preferred = not self.drafting_pays()
        self._solo = self._mean(self._solo, seconds)
        self._count_probe(preferred, False, 1)

    def _count_probe(self, preferred: bool, drafted: bool, tokens: int) -> None:
        """After a measurement of one mode: preferred, whether that mode was the one
        in use before it."""
        if preferred:
            self._unprobed += tokens
            return
        flipped = self.drafting_pays() == drafted
        interval = self._probe_interval or self.probe_tokens
        self._probe_interval = self.probe_tokens if flipped else min(2 * interval, self.max_probe_tokens)
        self._unprobed = 0

    def observe_round(self, draft_step_seconds: float | None, round_seconds: float, tokens: int) -> None:
        """Folds in one round: its mean sequential draft step (None: no step run), its
        wall time, draft and verification together, and the tokens it emitted."""
        preferred = self.drafting_pays()
        if draft_step_seconds is not None:
            self._draft_step = self._mean(self._draft_step, draft_step_seconds)
        self._round = self._mean(self._round, round_seconds)
        self._tokens = self._mean(self._tokens, float(tokens))
        self._count_probe(preferred, True, tokens)
        if self._draft_step and self._round:
            self.cost_floor = min(self._draft_step * self._tokens / self._round, 0.9)

    def _mean(self, mean: float, value: float) -> float:
        return value if not mean else (1 - self.smoothing) * mean + self.smoothing * value

    def update(self, n_correct: int, n_all: int) -> None:
        if n_all <= 0:
            return
        if n_correct >= n_all:
            self.alpha = max(self.alpha * 0.5, self.min_alpha)
        else:
            self.alpha = min(max((n_all - n_correct) / n_all, self.min_alpha), 0.99)
