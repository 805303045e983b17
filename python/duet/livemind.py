"""LiveMind's collaborative mode over streamed input (Chen et al., arXiv 2406.14319).

While the user types, the complete sentences typed so far become a user turn of
an append-only transcript, and the large model writes a short note on the partial
request as the assistant's reply (LiveMind's UA_SPI layout: each step only appends,
so both KV caches are reused). When the input ends, the rest of the text is the
last user turn and the small model writes the final answer with the notes in
context. The small model follows the transcript in the background too, so only
the last turn is left to prefill when the input ends.

The transcript is ChatML (the default pair's template). Unlike StreamingSession
this is not exact: the answer is the small model's, steered by the large model's
notes; it is off unless asked for (see bench/bench_streaming.py --livemind)."""
from __future__ import annotations

import re
from typing import Callable, Iterator

import numpy as np

from duet.background_input import BackgroundInput
from duet.generate import DecodeStats, decode_tokens
from duet.kv_cache import KVCache
from duet.model import Model
from duet.sampling import Sampler
from duet.streaming_input import CacheLane
from duet.tokenizer import Tokenizer

SYSTEM_PROMPT = ("The user's request arrives in parts while they type. After each part, write one short "
                 "sentence: what you understand so far and what the answer will need. Do not answer "
                 "before the request is complete.")
FINAL_NOTE = "\n\n(The request is complete. Answer it now.)"
_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n[ \t]*\n")


def last_sentence_end(text: str, start: int, min_chars: int) -> int | None:
    """End of the last complete sentence in text[start:] (after ., ! or ? followed by
    whitespace, or a blank line) if at least min_chars follow start, else None."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text, start) if m.end() - start >= min_chars]
    return ends[-1] if ends else None


class LiveMindSession(BackgroundInput):
    """large infers while the input is typed, small answers at the end.

    Both caches start empty. note_tokens: the longest note; min_sentence_chars:
    shorter text waits for the next sentence (LiveMind merges short sentences too)."""

    def __init__(self, large: Model, large_cache: KVCache, small: Model, small_cache: KVCache, *,
                 tokenizer: Tokenizer, system: str = SYSTEM_PROMPT, note_tokens: int = 32,
                 min_sentence_chars: int = 40, block: int = 32, background: bool = True):
        super().__init__(background, name="duet-livemind")
        if large_cache.n or small_cache.n:
            raise ValueError("LiveMindSession starts from empty caches")
        self.tokenizer = tokenizer
        self._im_end = tokenizer.token_id("<|im_end|>")
        if self._im_end is None or tokenizer.token_id("<|im_start|>") is None:
            raise ValueError("LiveMind's transcript is ChatML: the vocab needs <|im_start|> and <|im_end|>")
        self._large = CacheLane(large, large_cache)
        self._small = CacheLane(small, small_cache)
        self._note_tokens = note_tokens
        self._min_chars = min_sentence_chars
        self._block = block
        self.transcript: list[int] = self._encode(f"<|im_start|>system\n{system}<|im_end|>\n")
        self.notes: list[list[int]] = []        # the large model's notes, in order
        self._typed = ""
        self._consumed = 0                      # characters of _typed already in the transcript
        self._note_due = False                  # a user turn waits for its note
        self._note_logits: np.ndarray | None = None   # next-token logits while a note is written
        self.prompt: list[int] | None = None
        self.generated: list[int] = []
        self._start()

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, parse_special=True)

    # ---- background ----------------------------------------------------------------

    def _advance(self, text: str) -> bool:
        """At most one large forward (a block, or one note token) and one small block;
        with neither to do, the complete sentences typed so far become a user turn."""
        self._typed += text
        ran = self._advance_large()
        if self._small.run_block(self.transcript, self._block):
            ran = True
        if not ran:
            ran = self._take_sentences()
        return ran or bool(text)

    def _advance_large(self) -> bool:
        if self._note_logits is not None:
            self._write_note_token()
            return True
        wanted = self.transcript[:-1] if self._note_due else self.transcript
        if self._large.run_block(wanted, self._block):
            return True
        if self._note_due:
            self._note_due = False
            self.notes.append([])
            self._note_logits = self._large.model.forward(self.transcript[-1:], self._large.cache, prompt=True)[0]
            self._large.tokens.append(self.transcript[-1])
            return True
        return False

    def _write_note_token(self) -> None:
        token = int(np.argmax(self._note_logits))
        note = self.notes[-1]
        note.append(token)
        self.transcript.append(token)
        if token == self._im_end or len(note) >= self._note_tokens:
            self._close_note()
            return
        self._note_logits = self._large.model.forward([token], self._large.cache)[0]
        self._large.tokens.append(token)

    def _close_note(self) -> None:
        if not self.notes[-1] or self.notes[-1][-1] != self._im_end:
            self.transcript.append(self._im_end)
        self.transcript += self._encode("\n")
        self._note_logits = None

    def _take_sentences(self) -> bool:
        end = last_sentence_end(self._typed, self._consumed, self._min_chars)
        if end is None:
            return False
        self._append_user_turn(self._typed[self._consumed:end].strip())
        self._consumed = end
        self._note_due = True
        return True

    def _append_user_turn(self, text: str) -> None:
        self.transcript += self._encode(f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n")

    def _lagging(self) -> bool:
        return (self._note_logits is not None or self._note_due
                or len(self._large.tokens) < len(self.transcript)
                or len(self._small.tokens) < len(self.transcript)
                or last_sentence_end(self._typed, self._consumed, self._min_chars) is not None)

    # ---- end of input ----------------------------------------------------------------

    def finish(self) -> list[int]:
        """Ends the input (a note in progress ends where it is); returns the small
        model's prompt: the transcript and the last user turn."""
        self._typed += self._end_input()
        if self._note_logits is not None:
            self._close_note()
        elif self._note_due:   # a user turn that got no note: close its empty reply
            self.transcript += self._encode("<|im_end|>\n")
            self._note_due = False
        self._append_user_turn(self._typed[self._consumed:].strip() + FINAL_NOTE)
        self.prompt = list(self.transcript)
        self._small.keep_matching(self.prompt[:-1])
        return self.prompt

    def note_texts(self) -> list[str]:
        return [self.tokenizer.decode(note, special=False) for note in self.notes]

    def generate(self, max_tokens: int, sampler: Sampler | None = None, stats: DecodeStats | None = None,
                 is_stop: Callable[[int], bool] | None = None) -> Iterator[int]:
        """The small model's answer (finishing the input first if needed)."""
        if self._state == "open":
            self.finish()
        if self._state != "finished" or self.generated:
            raise RuntimeError("generate() runs once per session, after finish()")
        for token in decode_tokens(self._small.model, self._small.cache, self.prompt, max_tokens,
                                   sampler or Sampler(temperature=0.0),
                                   is_stop or self.tokenizer.is_end_of_generation, stats):
            self.generated.append(token)
            yield token
