"""Streaming input: prefill while the user is still typing, answer when the input ends.

A StreamingSession takes the user's text piece by piece (`feed`, which never waits
for compute). A background worker tokenizes the text so far (duet.incremental_tokenizer),
and runs the tokens that can no longer change through the target and the drafter,
a block at a time, one forward per model at a time. `finish` appends the prompt's
fixed end (the chat template's `<|im_end|>\\n<|im_start|>assistant\\n`), tokenizes the
whole text exactly as the engine would, and keeps of each cache the prefix that
matches; generation then runs only the few tokens left, with the usual decoding
(duet.generate.decode_tokens, or duet.speculative.speculative_generate with a
drafter), so the answer is the non-streaming answer.

The last prompt token is never run in the background: decoding needs its logits."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

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
class _Lane:
    """One model and its cache; `tokens` are what the cache holds, slot by slot."""
    model: Model
    cache: KVCache
    tokens: list[int] = field(default_factory=list)   # [cache.n]

    def keep_matching(self, wanted: list[int]) -> None:
        """Trims the cache back to its longest prefix that agrees with wanted."""
        n = common_prefix_length(self.tokens, wanted)
        if n < len(self.tokens):
            self.cache.trim(n)
            del self.tokens[n:]

    def run_block(self, wanted: list[int], block: int) -> bool:
        """Runs the next block of wanted tokens the cache lacks; False when none."""
        start = len(self.tokens)
        tokens = wanted[start:start + block]
        if not tokens:
            return False
        self.model.forward(tokens, self.cache, logits_rows=None)
        self.tokens.extend(tokens)
        return True


@dataclass
class StreamingStats:
    prefilled_in_background: dict = field(default_factory=dict)  # lane name -> tokens in cache at finish
    prompt_tokens: int = 0
    rollbacks: int = 0      # tokenizer updates that took back released tokens
    blocks: int = 0         # background forward passes


class StreamingSession:
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
        if (draft is None) != (draft_cache is None):
            raise ValueError("a drafter needs its own cache, and a drafter cache needs a drafter")
        if block < 1:
            raise ValueError(f"block must be at least 1, got {block}")
        self.tokenizer = tokenizer
        self._suffix = suffix
        self._block = block
        self._text = IncrementalTokenizer(tokenizer, prefix, stable_end=stable_end)
        self._lanes = {"target": self._lane(target, target_cache, cached_tokens)}
        if draft is not None:
            self._lanes["draft"] = self._lane(draft, draft_cache, cached_tokens)
        self.stats = StreamingStats()
        self.prompt: list[int] | None = None     # set by finish()
        self.generated: list[int] = []
        self._pending: list[str | bytes] = []
        self._state = "open"                     # open -> finished -> closed
        self._stop = False
        self._error: BaseException | None = None
        self._idle = False                       # the worker waits with nothing to do
        self._wake = threading.Condition()
        self._worker = None
        self._text.feed("")          # the prefix's stable tokens can run before any typing
        for lane in self._lanes.values():
            lane.keep_matching(self._text.tokens)
        if background:
            self._worker = threading.Thread(target=self._work, name="duet-streaming-prefill", daemon=True)
            self._worker.start()

    @staticmethod
    def _lane(model: Model, cache: KVCache, cached_tokens: Sequence[int]) -> _Lane:
        if cache.n > len(cached_tokens):
            raise ValueError(f"the cache holds {cache.n} tokens but cached_tokens names only "
                             f"{len(cached_tokens)}; pass what the caches hold")
        return _Lane(model, cache, list(cached_tokens[:cache.n]))

    # ---- input ---------------------------------------------------------------------

    def feed(self, piece: str | bytes) -> None:
        """Appends typed text (bytes may end inside a character); returns at once."""
        if not isinstance(piece, (str, bytes, bytearray)):
            raise TypeError(f"feed takes str or bytes, got {type(piece).__name__}")
        with self._wake:
            if self._state != "open":
                raise RuntimeError(f"the session is {self._state}; feed comes before finish()")
            self._pending.append(piece)
            self._idle = False
            self._wake.notify_all()

    def step(self) -> bool:
        """Does one unit of background work on the calling thread (background=False):
        tokenizes what arrived, then runs one block on each model that lags.
        Returns False when there was nothing to do."""
        if self._worker is not None:
            raise RuntimeError("step() is for sessions made with background=False")
        with self._wake:
            if self._state != "open":
                raise RuntimeError(f"the session is {self._state}")
        return self._advance()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Waits until the worker has run everything released so far (or failed);
        False on timeout."""
        if self._worker is None:
            raise RuntimeError("wait_idle() is for background sessions; call step() instead")
        with self._wake:
            return self._wake.wait_for(lambda: self._idle or self._error is not None
                                       or not self._worker.is_alive(), timeout)

    def finish(self) -> list[int]:
        """Ends the input: waits for the block in flight, tokenizes the whole text and
        keeps what the caches hold of it. Returns the prompt tokens."""
        with self._wake:
            if self._state != "open":
                raise RuntimeError(f"the session is {self._state}; finish() comes once")
            self._state = "finished"
            self._stop = True
            self._wake.notify_all()
        if self._worker is not None:
            self._worker.join()
        self._raise_worker_error()
        self._text.feed(self._take_pending())
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

    def generate(self, max_tokens: int, sampler: Sampler | None = None,
                 policy: FallbackPolicy | None = None,
                 stats: DecodeStats | SpeculativeStats | None = None,
                 is_stop: Callable[[int], bool] | None = None) -> Iterator[int]:
        """Yields the answer's tokens (finishing the input first if needed); stops
        after a stop token (default: end of generation), which is yielded too.
        Greedy by default; with a drafter the tokens come from speculative_generate."""
        if self._state == "open":
            self.finish()
        self._raise_worker_error()
        if self._state != "finished" or self.generated:
            raise RuntimeError("generate() runs once per session, after finish()")
        sampler = sampler or Sampler(temperature=0.0)
        try:
            for token in self._tokens_from(max_tokens, sampler, policy, stats,
                                           is_stop or self.tokenizer.is_end_of_generation):
                self.generated.append(token)
                yield token
        finally:
            self._settle_lanes()

    def _settle_lanes(self) -> None:
        """After decoding a cache may hold accepted tokens that were never emitted
        (the answer stopped mid-pass); cut it to the history so history_tokens() holds."""
        history = self.history_tokens()
        for lane in self._lanes.values():
            n = min(lane.cache.n, len(history))
            lane.cache.trim(n)
            lane.tokens = history[:n]

    def _tokens_from(self, max_tokens, sampler, policy, stats, is_stop) -> Iterator[int]:
        target = self._lanes["target"]
        if "draft" not in self._lanes:
            yield from decode_tokens(target.model, target.cache, self.prompt, max_tokens, sampler,
                                     is_stop, stats)
            return
        draft = self._lanes["draft"]
        choose = greedy_choice if sampler.greedy else sampled_choice(sampler)
        for token, _ in speculative_generate(TreeVerifier(target.model, target.cache),
                                             TreeDrafter(draft.model, draft.cache), self.prompt,
                                             max_tokens, policy or FallbackPolicy(), is_stop,
                                             choose, stats):
            yield token

    def history_tokens(self) -> list[int]:
        """Prompt plus answer so far: each cache holds a prefix of it (pass it as the
        next turn's cached_tokens)."""
        if self.prompt is None:
            raise RuntimeError("no prompt before finish()")
        return self.prompt + self.generated

    def close(self) -> None:
        """Stops the background worker (waiting for the block in flight)."""
        with self._wake:
            self._state = "closed"
            self._stop = True
            self._wake.notify_all()
        if self._worker is not None:
            self._worker.join()

    def __enter__(self) -> "StreamingSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- background ----------------------------------------------------------------

    def _work(self) -> None:
        try:
            while True:
                with self._wake:
                    while not (self._stop or self._pending or self._lagging()):
                        self._idle = True
                        self._wake.notify_all()
                        self._wake.wait()
                    self._idle = False
                    if self._stop:
                        return
                self._advance()
        except BaseException as exc:   # handed to finish()/generate() on the caller's thread
            with self._wake:
                self._error = exc
                self._wake.notify_all()

    def _advance(self) -> bool:
        text = self._take_pending()
        if text:
            self._text.feed(text)
            for lane in self._lanes.values():
                lane.keep_matching(self._text.tokens)
        ran = False
        for lane in self._lanes.values():
            if lane.run_block(self._text.tokens, self._block):
                self.stats.blocks += 1
                ran = True
        return ran or bool(text)

    def _lagging(self) -> bool:
        return any(len(lane.tokens) < len(self._text.tokens) for lane in self._lanes.values())

    def _take_pending(self) -> str | bytes:
        with self._wake:
            pieces, self._pending = self._pending, []
        if not pieces:
            return ""
        if all(isinstance(p, str) for p in pieces):
            return "".join(pieces)
        for piece in pieces[:-1]:   # mixed str and bytes: keep their order
            self._text.feed(piece)
        return pieces[-1]

    def _raise_worker_error(self) -> None:
        with self._wake:
            error = self._error
        if error is not None:
            raise RuntimeError(f"background prefill failed: {error}") from error
