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
the round for one draft step d, and the node then lengthens the verification
pass by v; in return it adds its acceptance chance c to the round's tokens. The
time could instead earn tokens at r, the better measured rate of the two modes
(rounds, or target-only steps where those may replace rounds), so the node pays
only while c > (d + v) * r. A node added undrafted (a likeliest leaf left open
when drafting stops) costs only its verification: c > v * r. All three are
measured as the engine runs: d per draft step; v per node, as a round's pass
over the nodes beyond a target-only step's time (so only where target-only steps
are measured; streamed, a pass costs about its reading time whatever the tree,
up to a point, and v is taken as 0); r per round and per step. With the target
streamed, a round is mostly the pass's reading time, so tokens are dear and
trees grow large; with the target resident a pass over a few more nodes costs
about a quarter of a step each (the 1.5B on two cores, session 29), so only
confident chains pay.
(Taking the whole pass as the value of a token, as if a round gave one, would
let trees grow T times too deep.) Nodes the drafter adds while the target
verifies cost no stall and face no floor.

Fallback to the target alone (solo): where a round of drafting and verifying
yields tokens more slowly than the target decodes them one by one (a resident
target whose batched passes are bound by arithmetic, text the drafter cannot
guess), the round is replaced by one target-only step. Both rates are measured:
the first token after the prompt is the prompt pass's (as in target-only
decoding), the next a target-only step (it costs what target-only decoding does,
and gives r and v a reference before any tree is drafted), then a round, and
afterwards the mode not in use runs once after probe_tokens tokens, so that a
change in the text (or in the machine's load) moves the choice back. A probe
that changes nothing doubles the interval to the next one (a probe of drafting
after solo steps first runs those tokens through the drafter, which costs about
as much as drafting them did); one that changes the choice resets it. A later
request starts with a round, and that round starts the probes' schedule afresh
(the interval back to probe_tokens): its text is new, so an interval doubled up
to max_probe_tokens over an earlier request would leave a whole request in a
mode that one poor round chose.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FallbackPolicy:
    alpha: float = 0.01       # the paper's default start
    min_alpha: float = 1e-6   # halving forever would let drafts run to the length cap every time
    max_depth: int = 16       # draft length cap, in tokens below the root
    max_nodes: int = 32       # tree size cap: a verification pass grows with the tree
    smoothing: float = 0.3    # weight of the newest measurement in the running means
    solo_fallback: bool = False  # whether target-only steps may replace rounds that do not pay
    probe_tokens: int = 32    # tokens between runs of the mode not in use, at first
    max_probe_tokens: int = 1024
    _draft_step: float = 0.0  # d: seconds per sequential draft step, running mean
    _node_pass: float = 0.0   # v: seconds a tree node adds to a pass, running mean
    _round: float = 0.0       # seconds per round, running mean
    _tokens: float = 0.0      # tokens emitted per round, running mean
    _solo: float = 0.0        # seconds per target-only step, running mean
    _unprobed: int = 0        # tokens emitted since the mode not in use last ran
    _probe_interval: int = 0  # tokens from one probe to the next (0: probe_tokens)
    _draft_next: bool = False  # the next round drafts whatever the rates, and restarts the probes (a new request)

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
        if not self.solo_fallback:
            return True
        if not self._solo:
            return False  # a step's price first, for the rate and the pass a node adds to
        if not self._round or self._draft_next:
            return True
        return self.drafting_pays() != (self._unprobed >= (self._probe_interval or self.probe_tokens))

    def observe_solo(self, seconds: float) -> None:
        """Folds in one target-only step's wall time."""
        preferred = self._was_preferred(False)
        self._solo = self._mean(self._solo, seconds)
        self._count_probe(preferred, False, 1)

    def observe_draft_step(self, seconds: float) -> None:
        """Folds in one sequential draft step, run while the round waits for it."""
        self._draft_step = self._mean(self._draft_step, seconds)

    def observe_round(self, round_seconds: float, tokens: int, nodes: int, pass_seconds: float) -> None:
        """Folds in one round: its wall time (draft and verification together), the
        tokens it emitted, and its tree's nodes (root included) with the pass's time."""
        preferred = None if self._draft_next else self._was_preferred(True)
        self._draft_next = False
        if self._solo and nodes > 1:
            self._node_pass = self._mean(self._node_pass, max(pass_seconds - self._solo, 0.0) / (nodes - 1))
        self._round = self._mean(self._round, round_seconds)
        self._tokens = self._mean(self._tokens, float(tokens))
        self._count_probe(preferred, True, tokens)

    def _was_preferred(self, drafted: bool) -> bool | None:
        """Whether the mode about to be measured was the one in use: with the other
        mode unmeasured, yes; with this one unmeasured, None (its first run starts
        the comparison, and the probes' schedule)."""
        mine, other = (self._round, self._solo) if drafted else (self._solo, self._round)
        if not other:
            return True
        return None if not mine else self.drafting_pays() == drafted

    def _count_probe(self, preferred: bool | None, drafted: bool, tokens: int) -> None:
        """After a measurement of one mode: preferred, whether that mode was the one
        in use before it (None: its first measurement, or a request's first round)."""
        if preferred:
            self._unprobed += tokens
            return
        flipped = preferred is None or self.drafting_pays() == drafted
        interval = self._probe_interval or self.probe_tokens
        self._probe_interval = self.probe_tokens if flipped else min(2 * interval, self.max_probe_tokens)
        self._unprobed = 0

    @property
    def cost_floor(self) -> float:
        """Cumulative probability a node needs to be drafted: (d + v) * r."""
        return min((self._draft_step + self._node_pass) * self._best_rate(), 0.9)

    @property
    def leaf_floor(self) -> float:
        """Cumulative probability a node needs to join undrafted: v * r."""
        return min(self._node_pass * self._best_rate(), 0.9)

    def _best_rate(self) -> float:
        """r: tokens per second of the better mode measured (0 before any)."""
        rounds = self._tokens / self._round if self._round else 0.0
        solo = 1.0 / self._solo if self._solo and self.solo_fallback else 0.0
        return max(rounds, solo)

    def _mean(self, mean: float, value: float) -> float:
        return value if not mean else (1 - self.smoothing) * mean + self.smoothing * value

    def update(self, n_correct: int, n_all: int) -> None:
        if n_all <= 0:
            return
        if n_correct >= n_all:
            self.alpha = max(self.alpha * 0.5, self.min_alpha)
        else:
            self.alpha = min(max((n_all - n_correct) / n_all, self.min_alpha), 0.99)
