"""Streaming input: prefill while the user is still typing, answer when the input ends.

A StreamingSession takes the user's text piece by piece (`feed`, which never waits
for compute; `retract` takes the last characters back, a Backspace). A background
worker tokenizes the text so far (duet.incremental_tokenizer), and runs the tokens
that can no longer change through the target and the drafter, a block at a time,
one forward per model at a time. `finish` appends the prompt's
fixed end (the chat template's `<|im_end|>\\n<|im_start|>assistant\\n`), tokenizes the
whole text exactly as the engine would, and keeps of each cache the prefix that
matches; generation then runs only the few tokens left, with the usual decoding
(duet.generate.decode_tokens, or duet.speculative.speculative_generate with a
drafter), so the answer is the non-streaming answer.

The last prompt token is never run in the background: decoding needs its logits."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from duet.background_input import BackgroundInput
from duet.generate import DecodeStats, decode_tokens
from duet.incremental_tokenizer import IncrementalTokenizer, common_prefix_length
from duet.kv_cache import KVCache
from duet.model import Model
from duet.policy import FallbackPolicy
from duet.sampling import Sampler
from duet.speculative import (SpeculativeStats, TreeDrafter, TreeVerifier, greedy_choice,
                              sampled_choice, speculative_generate)
from duet.tokenizer import Tokenizer

_USER_TEXT_MARK = "\x00duet-user-text\x00"
_TEMPLATE_PROBE = " probe\n text "


def chat_prompt_parts(tokenizer: Tokenizer, history: Sequence[dict] = ()) -> tuple[str, str]:
    """(prefix, suffix) around the next user message's text in the tokenizer's chat
    template: prefix holds the history (and a default system prompt) and the opening
    of the user turn, suffix closes it and opens the assistant's reply."""
    def render(content: str) -> str:
        return tokenizer.apply_chat_template([*history, {"role": "user", "content": content}],
                                             add_generation_prompt=True)
    marked = render(_USER_TEXT_MARK)
    if marked.count(_USER_TEXT_MARK) != 1:
        raise ValueError("the chat template does not place the user message exactly once")
    prefix, suffix = marked.split(_USER_TEXT_MARK)
    if render(_TEMPLATE_PROBE) != prefix + _TEMPLATE_PROBE + suffix:
        raise ValueError("the chat template changes the user text (or depends on it); "
                         "streaming input needs the text placed verbatim")
    return prefix, suffix


@dataclass
class CacheLane:
    """One model and its cache; `tokens` are what the cache holds, slot by slot."""
    model: Model
    cache: KVCache
    tokens: list[int] = field(default_factory=list)   # [cache.n]

    @classmethod
    def holding(cls, model: Model, cache: KVCache, cached_tokens: Sequence[int]) -> "CacheLane":
        """A lane over a cache that holds cached_tokens[:cache.n]."""
        if cache.n > len(cached_tokens):
            raise ValueError(f"the cache holds {cache.n} tokens but cached_tokens names only "
                             f"{len(cached_tokens)}; pass what the caches hold")
        return cls(model, cache, list(cached_tokens[:cache.n]))

    def keep_matching(self, wanted: list[int]) -> None:
        """Trims the cache back to its longest prefix that agrees with wanted."""
        n = common_prefix_length(self.tokens, wanted)
        if n < len(self.tokens):
            self.cache.trim(n)
            del self.tokens[n:]

    def lags(self, wanted: list[int]) -> bool:
        """True while the cache lacks wanted tokens and has room for them."""
        return len(self.tokens) < len(wanted) and self.cache.free > 0

    def run_block(self, wanted: list[int], block: int) -> bool:
        """Runs the next block of wanted tokens the cache lacks; False when none."""
        start = len(self.tokens)
        # A full cache stops the background work rather than failing it: the prompt's
        # length is judged once, at generation, against what the answer needs too.
        tokens = wanted[start:start + min(block, self.cache.free)]
        if not tokens:
            return False
        self.model.forward(tokens, self.cache, logits_rows=None, prompt=True)
        self.tokens.extend(tokens)
        return True


@dataclass
class StreamingStats:
    prefilled_in_background: dict = field(default_factory=dict)  # lane name -> tokens in cache at finish
    prompt_tokens: int = 0
    reused: int = 0         # tokens of cached_tokens the target's cache kept (earlier turns)
    rollbacks: int = 0      # tokenizer updates that took back released tokens
    blocks: int = 0         # background forward passes


class StreamingSession(BackgroundInput):
    """One user turn typed into caches that may already hold earlier turns.

    cached_tokens: the token sequence whose first cache.n tokens each cache already
      holds (for instance the previous turn's `history_tokens()`); empty caches need none.
    prefix, suffix: fixed text before and after the user's text (chat_prompt_parts).
    block: most tokens per background forward; finish() waits for at most one.
    background: False runs no thread; the caller drives the work with step()
      (deterministic tests, simulated-clock benchmarks).
    stable_end: the tokenizer's hold-back rule (see IncrementalTokenizer)."""

    def __init__(self, target: Model, target_cache: KVCache, draft: Model | None = None,
                 draft_cache: KVCache | None = None, *, tokenizer: Tokenizer, prefix: str = "",
                 suffix: str = "", cached_tokens: Sequence[int] = (), block: int = 32,
                 background: bool = True, stable_end: Callable[[str], int] | None = None):
        super().__init__(background, name="duet-streaming-prefill")
        if (draft is None) != (draft_cache is None):
            raise ValueError("a drafter needs its own cache, and a drafter cache needs a drafter")
        if block < 1:
            raise ValueError(f"block must be at least 1, got {block}")
        self.tokenizer = tokenizer
        self._suffix = suffix
        self._block = block
        self._text = IncrementalTokenizer(tokenizer, prefix, stable_end=stable_end)
        self._lanes = {"target": CacheLane.holding(target, target_cache, cached_tokens)}
        if draft is not None:
            self._lanes["draft"] = CacheLane.holding(draft, draft_cache, cached_tokens)
        self.stats = StreamingStats()
        self.prompt: list[int] | None = None     # set by finish()
        self.generated: list[int] = []
        self._retokenize("")                     # the prefix's stable tokens run before any typing
        self.stats.reused = len(self._lanes["target"].tokens)
        self._start()

    @classmethod
    def for_chat(cls, target: Model, target_cache: KVCache, draft: Model | None = None,
                 draft_cache: KVCache | None = None, *, tokenizer: Tokenizer, history: Sequence[dict] = (),
                 cached_tokens: Sequence[int] = (), **options) -> "StreamingSession":
        """A session for the next user message of a chat: history is the conversation
        so far ([{"role", "content"}, ...]); cached_tokens what the caches hold (the
        previous session's history_tokens()). A chat REPL makes one per turn."""
        prefix, suffix = chat_prompt_parts(tokenizer, history)
        return cls(target, target_cache, draft, draft_cache, tokenizer=tokenizer, prefix=prefix,
                   suffix=suffix, cached_tokens=cached_tokens, **options)

    def retract(self, n_chars: int) -> None:
        """Takes back the last n_chars characters fed (Backspace); returns at once.
        The worker re-tokenizes the shorter text and trims each cache to the tokens
        it still shares, so finish() gives the prompt of the text as it ends up.
        Retracting rather than feeding only text that can no longer change keeps
        the prefill as early as typing allows: erasing is rare, and it costs only
        the tokens it changes."""
        self._queue_erase(n_chars)

    def finish(self) -> list[int]:
        """Ends the input: waits for the block in flight, tokenizes the whole text and
        keeps what the caches hold of it. Returns the prompt tokens. Released tokens
        the worker had not run yet are left to generation, which runs them in one
        block, cheaper than the worker's small ones."""
        self._text.feed(self._end_input())
        self._text.finish(self._suffix)
        prompt = self._text.tokens
        if not prompt:
            raise ValueError("the prompt is empty")
        for name, lane in self._lanes.items():
            lane.keep_matching(prompt[:-1])
            self.stats.prefilled_in_background[name] = len(lane.tokens)
        self.stats.prompt_tokens = len(prompt)
        self.stats.rollbacks = self._text.rollbacks
        self.prompt = prompt
        return prompt

    # ---- output --------------------------------------------------------------------

    @property
    def drafting(self) -> bool:
        """True when the session has a drafter (stats for generate: SpeculativeStats)."""
        return "draft" in self._lanes

    def generate(self, max_tokens: int, sampler: Sampler | None = None,
                 policy: FallbackPolicy | None = None,
                 stats: DecodeStats | SpeculativeStats | None = None,
                 is_stop: Callable[[int], bool] | None = None) -> Iterator[int]:
        """Yields the answer's tokens (finishing the input first if needed); stops
        after a stop token (default: end of generation), which is yielded too.
        Greedy by default; with a drafter the tokens come from speculative_generate."""
        for token, _ in self.generate_steps(max_tokens, sampler, policy, stats, is_stop):
            yield token

    def generate_steps(self, max_tokens: int, sampler: Sampler | None = None,
                       policy: FallbackPolicy | None = None,
                       stats: DecodeStats | SpeculativeStats | None = None,
                       is_stop: Callable[[int], bool] | None = None,
                       pipeline: bool = False) -> Iterator[tuple[int, bool]]:
        """generate()'s tokens as (token, from_draft): whether the drafter proposed it.
        pipeline: draft while the target verifies (speculative_generate's option)."""
        if self._state == "open":
            self.finish()
        self._raise_worker_error()
        if self._state != "finished" or self.generated:
            raise RuntimeError("generate() runs once per session, after finish()")
        sampler = sampler or Sampler(temperature=0.0)
        try:
            for token, from_draft in self._tokens_from(max_tokens, sampler, policy, stats,
                                                       is_stop or self.tokenizer.is_end_of_generation, pipeline):
                self.generated.append(token)
                yield token, from_draft
        finally:
            if self._state != "closed":   # closed: the caches may be another session's by now
                self._settle_lanes()

    def _settle_lanes(self) -> None:
        """After decoding a cache may hold accepted tokens that were never emitted
        (the answer stopped mid-pass); cut it to the history so history_tokens() holds."""
        history = self.history_tokens()
        for lane in self._lanes.values():
            n = min(lane.cache.n, len(history))
            lane.cache.trim(n)
            lane.tokens = history[:n]

    def _tokens_from(self, max_tokens, sampler, policy, stats, is_stop, pipeline) -> Iterator[tuple[int, bool]]:
        target = self._lanes["target"]
        if not self.drafting:
            for token in decode_tokens(target.model, target.cache, self.prompt, max_tokens, sampler,
                                       is_stop, stats):
                yield token, False
            return
        draft = self._lanes["draft"]
        choose = greedy_choice if sampler.greedy else sampled_choice(sampler)
        yield from speculative_generate(TreeVerifier(target.model, target.cache),
                                        TreeDrafter(draft.model, draft.cache), self.prompt,
                                        max_tokens, policy or FallbackPolicy(), is_stop, choose, stats, pipeline)

    def history_tokens(self) -> list[int]:
        """Prompt plus answer so far: each cache holds a prefix of it (pass it as the
        next turn's cached_tokens)."""
        if self.prompt is None:
            raise RuntimeError("no prompt before finish()")
        return self.prompt + self.generated

    def close(self) -> None:
        """Stops the worker. A generate() left unfinished is cut back to what each
        cache is known to hold (its prompt part), so cached_tokens() stays true."""
        super().close()
        for lane in self._lanes.values():
            n = min(lane.cache.n, len(lane.tokens))
            lane.cache.trim(n)
            del lane.tokens[n:]

    def cached_tokens(self) -> list[int]:
        """What the caches hold: each a prefix of this list (the next session's
        cached_tokens, whether this one answered or was given up), once close()
        has stopped the worker."""
        return list(max((lane.tokens for lane in self._lanes.values()), key=len))

    # ---- background ----------------------------------------------------------------

    def _advance(self, text: str) -> bool:
        """Tokenizes what arrived, trims caches whose tokens it took back, then runs
        one block on each model that lags."""
        if text:
            self._retokenize(text)
        ran = False
        for lane in self._lanes.values():
            if lane.run_block(self._text.tokens, self._block):
                self.stats.blocks += 1
                ran = True
        return ran or bool(text)

    def _retokenize(self, text: str) -> None:
        self._text.feed(text)
        self._trim_lanes()

    def _erase(self, n_chars: int) -> None:
        self._text.retract(n_chars)
        self._trim_lanes()

    def _trim_lanes(self) -> None:
        for lane in self._lanes.values():
            lane.keep_matching(self._text.tokens)

    def _lagging(self) -> bool:
        return any(lane.lags(self._text.tokens) for lane in self._lanes.values())
