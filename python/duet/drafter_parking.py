"""Parking the small model under a memory budget while the n-gram trie carries
the text.

Under a budget the small model's weights take room that would otherwise hold
target layers: at 1 GiB with the default pair and a context of 1024, a pass
streams 437 MiB with the drafter resident and 151 MiB with it parked, as much as
with no drafter at all (`duet plan --budget 1GiB --trie -c 1024` prints both): the
parked plan counts neither its weights nor its KV cache, whose rows MergedDrafter
releases on parking and runs again on unparking. Where the answer copies the prompt (an
edit task) the trie alone drafts most of it, and its cheap passes beat the small
model's long trees (bench_trie at 1 GiB, session 11, before parking: trie alone
4.0-4.4x target-only, the merged drafter 3.0-3.3x). Parked, the drafter's pages leave memory and the target
keeps more layers resident, and the rows its partial head holds are given back;
unparked, the target goes back to its first plan, the drafter's pages are read
back ahead and its head's rows read again.

When to switch is measured, in tokens per second of whole rounds:
  - drafter resident: each round also estimates the trie alone on its tokens:
    the passes it would have taken to emit them (replayed from the store), each
    as long as this round's pass scaled by the bytes a parked pass streams;
  - parked: the trie's rounds are measured; the small model's rate is the one
    measured before parking.
The mode in use yields to the other when the other's rate beats it by `margin`.
A switch costs a second or so (parking: a pass that copies the layers it keeps;
unparking: reading the drafter back and running it over the whole text again), so
it must not flap, and the round that pays it is not measured. Rounds swing from
1 token to 25, and which drafter wins a round depends on the text (one the
small model guesses poorly favours the trie's cheap passes even where the trie
has nothing), so both means are long (smoothing 0.1: about ten rounds) and
start as plain means. The drafter resident, both rates come from the same
rounds, and `min_rounds` (3) suffices: an edit's first three rounds park it;
with a short mean (smoothing 0.3) two copied stretches of plain HumanEval 1 and
one poor round parked it too, and ten one-token rounds went by before it came
back. Parked, the trie's rate is compared with one measured on earlier text,
so `min_parked_rounds` is 10: the rounds of an answer that do not copy its
prompt must not unpark a trie that pays over the whole answer (HumanEval edit 2
at 1 GiB: 36.6 tok/s with the trie alone, 16 when a short mean flapped).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RoundRate:
    """A running mean of tokens and of seconds per round; their ratio is the rate.
    The first rounds weigh alike (a plain mean until 1 / smoothing rounds): an
    exponential mean started at the first round would still give it 0.81 of the
    weight after three, and an answer's first round, before it copies anything,
    is the least typical of it."""

    smoothing: float = 0.1
    tokens: float = 0.0
    seconds: float = 0.0
    rounds: int = 0

    def add(self, tokens: float, seconds: float) -> None:
        w = max(self.smoothing, 1 / (self.rounds + 1))
        self.tokens += w * (tokens - self.tokens)
        self.seconds += w * (seconds - self.seconds)
        self.rounds += 1

    @property
    def per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


class DrafterParking:
    """Owns the switch between two memory plans of a streamed target: `base` with
    the drafter resident, `parked` without it (more target layers resident), and
    the rates that decide it. Survives requests, as the fallback policy does."""

    def __init__(self, layers, base, parked, draft_gguf, draft_ranges: list[tuple[int, int]], draft_head=None,
                 margin: float = 0.2, min_rounds: int = 3, min_parked_rounds: int = 10):
        self.layers = layers            # weight_store.StreamedLayers of the target
        self.base, self.parked_plan = base, parked
        self.draft_gguf = draft_gguf
        self.draft_ranges = draft_ranges  # (offset, length) of the drafter's bytes read through its map
        self.draft_head = draft_head      # a draft_head.DraftHead holding its rows in memory, or None
        self.margin = margin
        self.min_rounds = min_rounds
        self.min_parked_rounds = min_parked_rounds
        self.parked = False
        self.switches = 0
        self.settling = False           # the next round pays for the last switch
        self.model_rate = RoundRate()   # rounds with the small model drafting
        self.trie_rate = RoundRate()    # trie-only rounds: estimated while the model drafts, measured parked

    @property
    def pass_ratio(self) -> float:
        """A parked pass's streamed bytes over a pass's with the drafter resident."""
        base = self.base.bytes_read_per_pass
        return self.parked_plan.bytes_read_per_pass / base if base else 1.0

    def observe_model_round(self, tokens: int, seconds: float, trie_passes: float, pass_seconds: float) -> None:
        """A round with the small model: its tokens and wall time, its pass's time,
        and how many passes the trie alone would have taken for the same tokens."""
        if self._pays_for_switch():
            return
        self.model_rate.add(tokens, seconds)
        self.trie_rate.add(tokens, trie_passes * pass_seconds * self.pass_ratio)
        if self.model_rate.rounds >= self.min_rounds and \
                self.trie_rate.per_second > (1 + self.margin) * self.model_rate.per_second:
            self.park()

    def observe_trie_round(self, tokens: int, seconds: float) -> None:
        """A trie-only round while parked."""
        if self._pays_for_switch():
            return
        self.trie_rate.add(tokens, seconds)
        if self.trie_rate.rounds >= self.min_parked_rounds and \
                self.model_rate.per_second > (1 + self.margin) * self.trie_rate.per_second:
            self.unpark()

    def park(self) -> None:
        # The drafter's pages go first: memory holds one plan's weights or the other's.
        self.draft_gguf.release(self.draft_ranges)
        if self.draft_head is not None:
            self.draft_head.release()
        self.layers.replan(self.parked_plan)
        self._switched(parked=True)

    def unpark(self) -> None:
        self.layers.replan(self.base)
        self.draft_gguf.limit_cache(self.draft_ranges)  # the drafter's pages read back ahead
        if self.draft_head is not None:
            self.draft_head.load()
        self._switched(parked=False)

    def _pays_for_switch(self) -> bool:
        """Whether this round paid for a switch (and is not measured)."""
        settling, self.settling = self.settling, False
        return settling

    def _switched(self, parked: bool) -> None:
        """The mode now in use starts a fresh measure; the other's is kept to compare."""
        self.parked = parked
        self.switches += 1
        self.settling = True
        if parked:
            self.trie_rate = RoundRate()
        else:
            self.model_rate = RoundRate()
