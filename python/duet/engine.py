"""The embedded API: an Engine holds a target model (streamed under a memory
budget when it does not fit), an optional resident drafter, and generates text.

    with duet.Engine(budget="1GiB") as engine:
        print(engine.generate("def fib(n):", max_tokens=64).text)
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from duet import _core
from duet.config import ModelConfig
from duet.draft_head import DraftHead
from duet.drafter_parking import DrafterParking
from duet.generate import DecodeStats, decode_tokens
from duet.gguf_file import GGUFFile
from duet.kv_cache import KVCache
from duet.memory import format_size, memory_usage, parse_size, peak_memory
from duet.model import PREFILL_BLOCK, Model, head_name, layer_shape
from duet.ngram_store import NGramStore
from duet.models import default_pair, resolve_model
from duet.policy import FallbackPolicy
from duet.sampling import Sampler
from duet.speculative import SpeculativeStats, TreeDrafter, TreeVerifier, greedy_choice, sampled_choice, \
    speculative_generate
from duet.streaming_input import StreamingSession
from duet.tensor_rows import TensorRowReader
from duet.tokenizer import Tokenizer
from duet.trie_drafter import MergedDrafter, TrieDrafter
from duet.weight_store import MemoryPlan, StreamedLayers, layer_segments, plan_memory

# Token ids the drafter's head scores by default (draft_head.py): Qwen2's first
# 65536 hold 99.2% of the tokens of HumanEval's solutions (the first 32768: 96.3%;
# bench/bench_draft_head.py prints it).
# A token the head cannot score ends every draft chain that reaches it: at 1 GiB
# the wider head took HumanEval 0-2 from 5.25 to 6.39 accepted tokens per pass
# (bench_collab, README) for 31 MB more of the budget; resident, the same speed.
DRAFT_VOCAB = 65536

# Measured on the reference machine (DESIGN.md); used only to print expectations.
STORAGE_BYTES_PER_S = 1.2e9
MEMORY_BYTES_PER_S = 30e9
KV_BYTES = {"f16": 2, "f32": 4}


@dataclass
class TokenEvent:
    """One emitted token, as engine.stream yields it."""

    text: str                 # the text this token completes (may be empty mid-character)
    token: int
    from_draft: bool          # proposed by a drafter and accepted by the target
    tokens_per_second: float  # tokens after the first / seconds since the first, so far
    peak_memory: int          # bytes, the process's peak resident memory so far


@dataclass
class GenerationResult:
    """A whole generation, as engine.generate and engine.chat return it."""

    text: str                 # the decoded answer, special tokens left out
    tokens: list[int]         # the generated token ids (a final end-of-turn token included)
    stats: dict = field(default_factory=dict)  # engine.last_stats of this run


def kv_cache_bytes(config: ModelConfig, n_ctx: int, kv_type: str) -> int:
    return 2 * config.n_layer * n_ctx * config.n_head_kv * config.head_dim * KV_BYTES[kv_type]


def activation_bytes(config: ModelConfig, block_rows: int, logit_rows: int, n_ctx: int) -> int:
    """Scratch of a forward over block_rows tokens of which logit_rows need logits:
    the layer's buffers and mask, the logits, and the float64 copies sampling makes."""
    layer = 4 * (3 * config.n_embd + 3 * config.n_head * config.head_dim + 2 * config.n_ff) + n_ctx
    return block_rows * layer + 4 * logit_rows * config.n_vocab + 8 * 8 * config.n_vocab


def check_same_vocabulary(target: GGUFFile, draft: GGUFFile) -> None:
    ours, theirs = target.metadata.get("tokenizer.ggml.tokens"), draft.metadata.get("tokenizer.ggml.tokens")
    if ours != theirs:
        raise ValueError(f"draft and target have different vocabularies ({draft.path.name}: "
                         f"{len(theirs or [])} tokens, {target.path.name}: {len(ours or [])} tokens); "
                         f"a drafter must share the target's tokenizer")


class Engine:
    """Text generation with a target model and an optional drafter.

    target, draft: a catalog name or a GGUF path; draft=None for target-only
    decoding. By default the catalog's default pair.
    budget: peak resident memory of the whole process ("1GiB", bytes); None: no limit.
    threads: compute threads (default: all cores). n_ctx: context size in tokens.
    pipeline: draft on while the target verifies (default: when the target streams,
    since only then does the target leave the cores idle while it waits for weights).
    trie: also draft from n-grams of the prompt and of earlier outputs (kept across
    requests in engine.ngrams); merged into the drafter's trees, or alone without one.
    With a drafter and a streamed target, the drafter is parked (its memory given to
    target layers) while the trie alone is measured to be faster (engine.parking).
    draft_vocab: the drafter's head scores the first draft_vocab token ids and the
    rarer ones it is fed (draft_head.py); None: the whole vocabulary. The output
    does not depend on it, only the drafter's speed and acceptance.
    """

    def __init__(
        self,
        target: str | os.PathLike | None = None,
        draft: str | os.PathLike | None = "default",
        budget: str | int | None = None,
        threads: int | None = None,
        n_ctx: int = 2048,
        kv_type: str = "f16",
        max_tree_nodes: int = 24,
        direct_io: bool = True,
        pipeline: bool | None = None,
        trie: bool = False,
        draft_vocab: int | None = DRAFT_VOCAB,
    ):
        threads = (os.cpu_count() or 1) if threads is None else threads
        if threads < 1:
            raise ValueError(f"thread count must be at least 1, got {threads}")
        if kv_type not in KV_BYTES:
            raise ValueError(f"kv_type must be one of {sorted(KV_BYTES)}, got {kv_type!r}")
        default_target, default_draft = default_pair()
        self.target_gguf = GGUFFile(resolve_model(target or default_target))
        draft = default_draft if draft == "default" else draft
        self.draft_gguf = GGUFFile(resolve_model(draft)) if draft else None
        if self.draft_gguf is not None:
            check_same_vocabulary(self.target_gguf, self.draft_gguf)
        self.tokenizer = Tokenizer.from_metadata(self.target_gguf.metadata)
        for gguf in (self.target_gguf, self.draft_gguf):
            if gguf is not None:  # the budget counts what stays resident
                gguf.drop_vocabulary()
        self.target_config = ModelConfig.from_gguf(self.target_gguf)
        if n_ctx < 2:
            raise ValueError(f"context size must be at least 2 tokens, got {n_ctx}")
        self.n_ctx = n_ctx
        self.kv_type = kv_type
        self.max_tree_nodes = max_tree_nodes
        self.trie_nodes = min(16, max_tree_nodes) if trie else 0  # the trie's nodes in a tree, at most
        self.draft_vocab = draft_vocab
        self.pool = _core.ThreadPool(threads)
        self.threads = threads
        self.budget = parse_size(budget) if budget is not None else None
        self.plan = self._make_plan() if self.budget is not None else None
        layers = None
        if self.plan is not None and self.plan.streamed:
            layers = StreamedLayers(self.target_gguf, self.plan, layer_shape(self.target_config), direct_io)
        self.target = Model(self.target_gguf, self.pool, layers=layers)
        self.draft = Model(self.draft_gguf, self.pool) if self.draft_gguf is not None else None
        if self.draft is not None:
            # The drafter's prompt pass took 0.50 s for HumanEval 1's 138 tokens in
            # llama.cpp's orders, 0.38 s in any order (Q5_0 in the block order;
            # Zen 4, session 35): time after the first token, which a short answer
            # felt most.
            self.draft.any_order = True
        if self.draft is not None and draft_vocab is not None:
            self.draft.restrict_head(draft_vocab, always=self.tokenizer.end_of_generation_ids)
        if self.budget is not None:
            # Nothing of the target is read through its map; the drafter's map is read
            # where its layers and the scored rows of its head are.
            self.target_gguf.limit_cache([])
        if self.draft is not None and self.budget is not None:
            # Rows read with pread, so that the rows it is fed never count as mapped pages.
            self.draft.embedding_rows = TensorRowReader(self.draft_gguf.path, self.draft_gguf.tensor("token_embd.weight"))
            self.draft_gguf.limit_cache(self._drafter_ranges(), wait=True)
        elif self.draft is not None:
            # Read now, not from the storage by the first request's drafting, after its
            # first token: a short answer paid for it (HumanEval 1, 28 tokens after the
            # first, drafter cold: 17.9-18.4 tok/s, 19.3-20.5 with this; session 34).
            # Into the page cache only: mapped, its pages would count as the runtime's
            # in fixed_costs.
            self.draft_gguf.fetch(self._drafter_ranges())
        # The depth cap is the size cap: where acceptance runs long (HumanEval edits at
        # 1 GiB: 16 accepted per pass at a depth cap of 16, 20 at 24) a chain as deep
        # as the tree may be pays; the cost floor stops poorer chains sooner anyway.
        # Target-only steps may replace rounds only with the target resident: streamed,
        # a step reads the whole pass for one token, and a probe's verdict is skewed by
        # the layers read ahead (tried at 1 GiB on HumanEval, it halved the speed).
        self.policy = FallbackPolicy(max_nodes=max_tree_nodes, max_depth=max_tree_nodes,
                                     solo_fallback=layers is None)
        self.ngrams = NGramStore() if trie else None
        self.pipeline = bool(layers is not None) if pipeline is None else pipeline
        # With the target streamed, the trie may carry the text without the small model.
        self.parking = self._make_parking(layers) if trie and layers is not None and self.draft else None
        self.last_stats: dict = {}
        self._chat_caches: tuple[KVCache, KVCache | None] | None = None   # (target, drafter)
        self._chat_session: StreamingSession | None = None                # the one using them

    # ---- memory -------------------------------------------------------------------

    def fixed_costs(self) -> dict[str, int]:
        """Bytes resident whatever the plan decides about the target's layers."""
        tc = self.target_config
        tree_rows = self.max_tree_nodes + 1
        costs = {"runtime": memory_usage().rss}
        costs["target head"] = sum(t.n_bytes for n, t in self.target_gguf.tensors.items()
                                   if n in ("output.weight", "output_norm.weight"))
        costs["target kv cache"] = kv_cache_bytes(tc, self.n_ctx, self.kv_type)
        costs["activations"] = activation_bytes(tc, max(PREFILL_BLOCK, tree_rows), tree_rows, self.n_ctx)
        if self.draft_gguf is not None:
            dc = ModelConfig.from_gguf(self.draft_gguf)
            head = self.draft_gguf.tensor(head_name(dc))
            costs["drafter"] = sum(t.n_bytes for n, t in self.draft_gguf.tensors.items()
                                   if n not in ("token_embd.weight", head.name))
            costs["drafter head"] = self._draft_head_bytes(head)
            costs["drafter kv cache"] = kv_cache_bytes(dc, self.n_ctx, self.kv_type)
            if self.trie_nodes:
                # Merged, the trie's nodes join the small model's tree past the policy's
                # size cap, each with a row of logits (not parked: the trie drafts alone).
                costs["drafter trie rows"] = 4 * self.trie_nodes * tc.n_vocab
        return costs

    def _drafter_ranges(self) -> list[tuple[int, int]]:
        """(offset, length) of the drafter's bytes read through its map: every tensor
        but the embedding table, and the head only when it is scored whole (a draft
        vocabulary's rows are read once with pread, draft_head.py)."""
        head = self.draft_gguf.tensor(head_name(self.draft.config))
        skipped = {"token_embd.weight"} | ({head.name} if self.draft_vocab is not None else set())
        return [(t.offset, t.n_bytes) for n, t in self.draft_gguf.tensors.items() if n not in skipped]

    def _draft_head_bytes(self, head) -> int:
        """The drafter's head as it will be held: the draft vocabulary's rows only,
        in draft_head's narrower type (its embedding rows are read with pread, a few
        KB per call)."""
        if self.draft_vocab is None:
            return head.n_bytes
        n_embd, n_vocab = head.shape
        return DraftHead.held_nbytes(head.type_id, head.n_bytes // n_vocab, n_embd, n_vocab, self.draft_vocab)

    def _make_plan(self) -> MemoryPlan:
        segments = layer_segments(self.target_gguf, self.target_config.n_layer)
        return plan_memory(segments, self.budget, self.fixed_costs())

    def _make_parking(self, layers: StreamedLayers) -> DrafterParking:
        """The plan with the drafter parked (its weights and its cache's rows released;
        MergedDrafter releases the rows) and the switch to it."""
        fixed = {k: v for k, v in self.plan.fixed.items() if not k.startswith("drafter")}
        segments = layer_segments(self.target_gguf, self.target_config.n_layer)
        parked = plan_memory(segments, self.budget, fixed, n_buffers=layers.n_buffers)
        return DrafterParking(layers, self.plan, parked, self.draft_gguf, self._drafter_ranges(),
                              self.draft.draft_head)

    def describe_plan(self) -> str:
        """The memory plan in words: fixed costs, resident and streamed layers, expected pass time."""
        if self.plan is None:
            return "no budget: every weight resident (memory-mapped)"
        text = self.plan.describe(STORAGE_BYTES_PER_S, MEMORY_BYTES_PER_S)
        if self.parking is None:
            return text
        parked = self.parking.parked_plan
        return (f"{text}\ndrafter parked    {len(parked.resident)} layers resident, "
                f"read per pass {format_size(parked.bytes_read_per_pass)}")

    # ---- generation -----------------------------------------------------------------

    def _prompt_tokens(self, prompt: str | list[int], chat: bool) -> list[int]:
        if isinstance(prompt, str):
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}]) if chat else prompt
            tokens = self.tokenizer.encode(text)
        else:
            tokens = [int(t) for t in prompt]
        if not tokens:
            raise ValueError("the prompt is empty")
        bad = [t for t in tokens if not 0 <= t < self.target_config.n_vocab]
        if bad:
            raise ValueError(f"token id {bad[0]} outside the vocabulary of {self.target_config.n_vocab}")
        return tokens

    def _check_length(self, n_prompt: int, max_tokens: int) -> None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        drafting = self.draft is not None or self.ngrams is not None
        needed = n_prompt + max_tokens + (2 * self.max_tree_nodes + 1 if drafting else 0)
        if needed > self.n_ctx:
            raise ValueError(f"the prompt ({n_prompt} tokens) plus {max_tokens} new tokens need a context of "
                             f"{needed}, more than the context size {self.n_ctx} (raise n_ctx / -c)")

    def stream(
        self,
        prompt: str | list[int] | StreamingSession,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        min_p: float = 0.0,
        seed: int | None = None,
        chat: bool = False,
        use_draft: bool = True,
    ) -> Iterator[TokenEvent]:
        """Yields one TokenEvent per emitted token. An event's text holds back a
        character whose bytes are not complete yet; generate() has the full text.
        prompt: text, token ids, or a session from chat_session() (its input is
        finished here if still open; chat and use_draft do not apply to it).
        Statistics of the run are in engine.last_stats afterwards."""
        sampler = Sampler(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, seed=seed)
        if isinstance(prompt, StreamingSession):
            start, io_before = time.perf_counter(), self._io_stats()   # finishing the input is part of the wait
            n_prompt, steps, stats = self._session_steps(prompt, max_tokens, sampler)
        else:
            tokens = self._prompt_tokens(prompt, chat)
            self._check_length(len(tokens), max_tokens)
            start, io_before = time.perf_counter(), self._io_stats()
            n_prompt = len(tokens)
            steps, stats = self._fresh_steps(tokens, max_tokens, sampler, use_draft)
        decoder = self.tokenizer.stream_decoder()
        emitted = 0
        first_time = None
        for token, from_draft in steps:
            now = time.perf_counter()
            first_time = first_time or now
            emitted += 1
            rate = (emitted - 1) / (now - first_time) if now > first_time else 0.0
            yield TokenEvent(decoder.feed(token), token, from_draft, rate, peak_memory())
        self.last_stats = self._summarise(stats, n_prompt, emitted, start, first_time, io_before)
        if isinstance(prompt, StreamingSession):
            # The prompt's cost is what was left when the input ended: finishing it and
            # the tokens the background had not run, up to the first answer token.
            self.last_stats["prompt_seconds"] = self.last_stats["time_to_first_token"] or 0.0

    def _fresh_steps(self, tokens: list[int], max_tokens: int, sampler: Sampler, use_draft: bool):
        """(token, from_draft) steps of a prompt decoded from empty caches, and their stats."""
        target_cache = self.target.new_cache(self.n_ctx, self.kv_type)
        drafter = self._drafter() if use_draft else None
        if drafter is not None:
            return self._collaborative_steps(drafter, tokens, max_tokens, sampler, target_cache)
        stats = DecodeStats()
        steps = ((t, False) for t in decode_tokens(self.target, target_cache, tokens, max_tokens, sampler,
                                                   self.tokenizer.is_end_of_generation, stats))
        return steps, stats

    def _session_steps(self, session: StreamingSession, max_tokens: int, sampler: Sampler):
        """(prompt length, steps, stats) of a streaming session's answer."""
        prompt = session.finish() if session.prompt is None else session.prompt
        self._check_length(len(prompt), max_tokens)
        stats = SpeculativeStats() if session.drafting else DecodeStats()
        steps = session.generate_steps(max_tokens, sampler, self.policy, stats, pipeline=self.pipeline)
        return len(prompt), steps, stats

    def chat_session(self, messages: Sequence[dict] = (), block: int = 32) -> StreamingSession:
        """A StreamingSession for the next user message after `messages` (the conversation
        so far, as chat() takes it): feed() the message while it is typed (retract()
        takes text back), then stream(session) answers it. Target and drafter prefill
        in the background meanwhile. The engine keeps one pair of caches for chat
        sessions, so a session reuses what they hold of its prompt (the earlier turns);
        opening a session closes the one before. block: most tokens per background pass."""
        if self.parking is not None and self.parking.parked:
            self.parking.unpark()  # a session's background prefill runs the drafter
        previous, cached = self._chat_session, []
        if previous is not None:
            previous.close()
            cached = previous.cached_tokens()
        if self._chat_caches is None:
            self._chat_caches = (self.target.new_cache(self.n_ctx, self.kv_type),
                                 self.draft.new_cache(self.n_ctx, self.kv_type) if self.draft is not None else None)
        target_cache, draft_cache = self._chat_caches
        self._chat_session = StreamingSession.for_chat(
            self.target, target_cache, self.draft, draft_cache, tokenizer=self.tokenizer, history=messages,
            cached_tokens=cached, block=block)
        return self._chat_session

    def _drafter(self):
        """The drafter for one request: the small model's trees, the trie's, both
        merged, or None for target-only decoding."""
        tree = TreeDrafter(self.draft, self.draft.new_cache(self.n_ctx, self.kv_type)) if self.draft else None
        trie = TrieDrafter(self.ngrams, max_nodes=self.trie_nodes) if self.ngrams is not None else None
        if tree is not None and trie is not None:
            # A trie-only round skips the small model's sequential passes, which pays
            # when they cost time. In the pipeline the small model drafts while the
            # target waits for its weights, and a pass costs the reading time whatever
            # the tree: a trie-only round there wastes a pass the small model would have
            # filled (at 1 GiB on edit tasks: 7 accepted per pass merged, 17 tree alone).
            # Parked (a streamed target, drafter_parking.py), every round is trie-only.
            return MergedDrafter(tree, trie, trie_only_depth=None if self.pipeline else 4, parking=self.parking)
        return tree or trie

    def _collaborative_steps(self, drafter, tokens, max_tokens, sampler, target_cache):
        verifier = TreeVerifier(self.target, target_cache)
        choose = greedy_choice if sampler.greedy else sampled_choice(sampler)
        stats = SpeculativeStats()
        steps = speculative_generate(verifier, drafter, tokens, max_tokens, self.policy,
                                     self.tokenizer.is_end_of_generation, choose, stats, self.pipeline)
        return steps, stats

    def _io_stats(self) -> dict:
        layers = self.target.layers
        return layers.io_stats() if isinstance(layers, StreamedLayers) else {"bytes_read": 0, "seconds_busy": 0.0}

    def _summarise(self, stats, n_prompt: int, emitted: int, start: float, first_time, io_before: dict) -> dict:
        end = time.perf_counter()
        io = self._io_stats()
        out = {
            "prompt_tokens": n_prompt,
            "generated_tokens": emitted,
            "seconds": end - start,
            "time_to_first_token": (first_time - start) if first_time else None,
            "tokens_per_second": (emitted - 1) / (end - first_time) if first_time and end > first_time else 0.0,
            "peak_memory": peak_memory(),
            "budget": self.budget,
            "bytes_read": io["bytes_read"] - io_before["bytes_read"],
            "read_seconds": io["seconds_busy"] - io_before["seconds_busy"],
        }
        if isinstance(stats, SpeculativeStats):
            out.update(stats.as_dict())
        else:
            out.update({"prompt_seconds": stats.prompt_seconds, "decode_seconds": stats.decode_seconds})
        if self.parking is not None:
            out.update({"drafter_parked": self.parking.parked, "parking_switches": self.parking.switches})
        return out

    def generate(self, prompt: str | list[int], max_tokens: int = 256, **options) -> GenerationResult:
        """The whole answer at once: text, token ids, and the run's statistics."""
        tokens = [event.token for event in self.stream(prompt, max_tokens, **options)]
        return GenerationResult(self.tokenizer.decode(tokens, special=False), tokens, dict(self.last_stats))

    def chat(self, messages: list[dict], max_tokens: int = 256, **options) -> GenerationResult:
        """Answers a conversation rendered with the model's chat template."""
        prompt = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        return self.generate(prompt, max_tokens, **options)

    # ---- lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        """Frees the models' memory; the engine cannot be used afterwards."""
        if self._chat_session is not None:
            self._chat_session.close()   # its worker may be running on the models
        self._chat_session = self._chat_caches = None
        self.target = self.draft = None
        self.target_gguf = self.draft_gguf = None
        self.pool = None

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
