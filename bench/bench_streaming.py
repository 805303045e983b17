"""Streaming input: answer latency when the prompt is prefilled while it is typed.

    python bench/bench_streaming.py [--prompts 3] [--cpm 240] [--threads 2] [--modes target,target+draft]
                                    [--livemind] [--skip N] [--budget 1GiB] [--out streaming.json]

The user types a HumanEval prompt (one with >= --min-tokens tokens) as the user
message of the chat template, at --cpm characters per minute, one key at a time.
Measured from the moment the last character arrives: time to the first answer token
and to the 64th, for the streaming session against processing the whole prompt
after the input ends (same models, same decoding, greedy; resident weights, or with
--budget the models as duet.Engine lays them out under that budget: the target's
layers streamed from storage on every pass, background prefill included).

Method (simulated clock, real compute). Typing takes minutes in real time, so the
keystrokes run on a simulated clock while all compute is real and timed:
  - the session runs without its thread (background=False); the loop hands it every
    keystroke whose time has come, then runs one unit of background work
    (session.step(): tokenize, one forward block per model) and advances the clock
    by its measured wall time; with nothing to do the clock jumps to the next key;
  - this is what the worker thread does on an otherwise idle machine, where
    keystrokes cost nothing (feed only appends);
  - when the last key arrives a block may be in flight: the clock's overshoot past
    the last key is that wait, and it is added to the latency; finish() and
    generation after it are then timed for real.
Writes bench/out/streaming.json and prints a table."""
from __future__ import annotations

import argparse
import os
import time

from common import humaneval_prompts, print_table, write_json
from duet import _core
from duet.engine import Engine
from duet.gguf_file import GGUFFile
from duet.livemind import LiveMindSession
from duet.model import Model
from duet.models import default_pair, resolve_model
from duet.policy import FallbackPolicy
from duet.streaming_input import StreamingSession, chat_prompt_parts
from duet.tokenizer import Tokenizer

ANSWER_TOKENS = 64
TREE_ROOM = 2 * FallbackPolicy().max_nodes + 1  # a tree and the provisional drafts beyond it


def never_stop(token: int) -> bool:
    """No stop token: every run writes the same 64 tokens."""
    return False


def token_times(tokens, start: float, n: int) -> tuple[list[int], float, float]:
    """Consumes up to n tokens; returns them and the seconds from start to the first and last."""
    out, first = [], None
    for token in tokens:
        out.append(token)
        if first is None:
            first = time.perf_counter() - start
        if len(out) >= n:
            break
    return out, first, time.perf_counter() - start


def new_session(target, draft, tokenizer, n_ctx, block) -> StreamingSession:
    prefix, suffix = chat_prompt_parts(tokenizer)
    return StreamingSession(target, target.new_cache(n_ctx), draft, None if draft is None else draft.new_cache(n_ctx),
                            tokenizer=tokenizer, prefix=prefix, suffix=suffix, block=block, background=False)


def whole_prompt_run(target, draft, tokenizer, text, n_ctx, block) -> tuple[list[int], float, float]:
    """The baseline: the text arrives whole when the input ends and is processed from
    empty caches, by the same decoding code."""
    session = new_session(target, draft, tokenizer, n_ctx, block)
    start = time.perf_counter()
    session.feed(text)
    session.finish()
    return token_times(session.generate(ANSWER_TOKENS, is_stop=never_stop), start, ANSWER_TOKENS)


def simulate_typing(session, text: str, cps: float) -> dict:
    """Types text into a background=False session on the simulated clock (see the
    module docstring); returns the clock's facts."""
    clock, busy, typed = 0.0, 0.0, 0
    key_time = lambda i: i / cps   # noqa: E731 - key i arrives at i/cps seconds
    while typed < len(text):
        while typed < len(text) and key_time(typed) <= clock:
            session.feed(text[typed])
            typed += 1
        start = time.perf_counter()
        worked = session.step()
        spent = time.perf_counter() - start
        if worked:
            clock += spent
            busy += spent
        elif typed < len(text):
            clock = key_time(typed)
    return {"in_flight_wait": clock - key_time(len(text) - 1), "typing_seconds": key_time(len(text) - 1),
            "background_busy_seconds": busy}


def timed_answer(session, clock: dict) -> dict:
    """finish() and the answer, timed from the last key (the in-flight wait included)."""
    start = time.perf_counter()
    prompt = session.finish()
    tokens, first, last = token_times(session.generate(ANSWER_TOKENS, is_stop=never_stop), start, ANSWER_TOKENS)
    wait = clock["in_flight_wait"]
    return {**clock, "tokens": tokens, "prompt": prompt, "first": wait + first, "last": wait + last}


def typed_run(target, draft, tokenizer, text, cps, n_ctx, block) -> dict:
    session = new_session(target, draft, tokenizer, n_ctx, block)
    result = timed_answer(session, simulate_typing(session, text, cps))
    return {**result, "rollbacks": session.stats.rollbacks, "prefilled": session.stats.prefilled_in_background}


def livemind_run(large, small, tokenizer, text, args) -> dict:
    """LiveMind's collaborative mode: the large model notes each sentence, the small one answers."""
    n_ctx = 4096
    session = LiveMindSession(large, large.new_cache(n_ctx), small, small.new_cache(n_ctx), tokenizer=tokenizer,
                              note_tokens=args.note_tokens, block=args.block, background=False)
    result = timed_answer(session, simulate_typing(session, text, args.cpm / 60.0))
    return {"mode": "livemind", "prompt_tokens": len(result["prompt"]), "typing_s": result["typing_seconds"],
            "busy_s": result["background_busy_seconds"], "in_flight_wait_s": result["in_flight_wait"],
            "stream_first_s": result["first"], "stream_64th_s": result["last"], "notes": session.note_texts(),
            "answer": tokenizer.decode(result["tokens"], special=False)}


def bench_prompt(target, draft, tokenizer, text, args) -> dict:
    full_prompt = tokenizer.encode(tokenizer.apply_chat_template([{"role": "user", "content": text}]))
    n_ctx = len(full_prompt) + ANSWER_TOKENS + TREE_ROOM + 8
    base_tokens, base_first, base_last = whole_prompt_run(target, draft, tokenizer, text, n_ctx, args.block)
    typed = typed_run(target, draft, tokenizer, text, args.cpm / 60.0, n_ctx, args.block)
    return {
        "mode": "target+draft" if draft is not None else "target",
        "answer": tokenizer.decode(typed["tokens"], special=False),
        "chars": len(text), "prompt_tokens": len(full_prompt),
        "prefilled_target": typed["prefilled"]["target"],
        "prefilled_draft": typed["prefilled"].get("draft"),
        "typing_s": typed["typing_seconds"], "busy_s": typed["background_busy_seconds"],
        "in_flight_wait_s": typed["in_flight_wait"], "rollbacks": typed["rollbacks"],
        "base_first_s": base_first, "stream_first_s": typed["first"],
        "first_ratio": typed["first"] / base_first,
        "base_64th_s": base_last, "stream_64th_s": typed["last"], "64th_ratio": typed["last"] / base_last,
        "same_prompt": typed["prompt"] == full_prompt, "same_answer": typed["tokens"] == base_tokens,
    }


def long_prompts(tokenizer: Tokenizer, min_tokens: int, count: int) -> list[str]:
    prompts = [p for p in humaneval_prompts() if len(tokenizer.encode(p)) >= min_tokens]
    step = max(1, len(prompts) // count)
    return prompts[::step][:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=3)
    parser.add_argument("--skip", type=int, default=0, help="leave out the first SKIP of the chosen prompts")
    parser.add_argument("--min-tokens", type=int, default=200)
    parser.add_argument("--cpm", type=float, default=240.0, help="typing speed, characters per minute")
    parser.add_argument("--threads", "-t", type=int, default=2)
    parser.add_argument("--block", type=int, default=32, help="most tokens per background forward")
    parser.add_argument("--modes", default="target,target+draft",
                        help="comma-separated streaming modes to run: target, target+draft")
    parser.add_argument("--livemind", action="store_true",
                        help="also LiveMind's collaborative mode (target notes, drafter answers)")
    parser.add_argument("--note-tokens", type=int, default=24, help="longest LiveMind note")
    parser.add_argument("--budget", help="lay the models out as duet.Engine does under this budget (e.g. 1GiB)")
    parser.add_argument("--out", default="streaming.json", help="file name under bench/out")
    args = parser.parse_args()
    target_name, draft_name = default_pair()
    modes = [m for m in args.modes.split(",") if m]
    if not set(modes) <= {"target", "target+draft"}:
        parser.error(f"unknown mode in {args.modes!r}")
    needs_draft = "target+draft" in modes or args.livemind
    if args.budget:
        engine = Engine(draft="default" if needs_draft else None, budget=args.budget, threads=args.threads,
                        n_ctx=1024)
        target, draft, tokenizer = engine.target, engine.draft, engine.tokenizer
    else:
        pool = _core.ThreadPool(args.threads)
        target = Model(GGUFFile(resolve_model(target_name)), pool)
        draft = Model(GGUFFile(resolve_model(draft_name)), pool) if needs_draft else None
        tokenizer = Tokenizer.from_metadata(target.gguf.metadata)
    load_before = os.getloadavg()
    warm = tokenizer.encode("def warm_up():")
    for model in [target] + ([draft] if draft else []):   # first-touch page faults count for no run
        model.prefill(warm, model.new_cache(len(warm)))
    rows = []
    payload = {"cpm": args.cpm, "threads": args.threads, "budget": args.budget, "block": args.block, "answer_tokens": ANSWER_TOKENS,
               "target": target_name, "draft": draft_name, "load_average_before": load_before, "rows": rows}
    for text in long_prompts(tokenizer, args.min_tokens, args.prompts)[args.skip:]:
        for mode_draft in [draft if mode == "target+draft" else None for mode in modes]:
            row = bench_prompt(target, mode_draft, tokenizer, text, args)
            print_table([row], COLUMNS)
            print("answer:", repr(row["answer"][:200]), flush=True)
            rows.append(row)
            write_json(args.out, payload)   # a run cut short keeps its rows
        if args.livemind:
            row = livemind_run(target, draft, tokenizer, text, args)
            print_table([row], COLUMNS)
            print("notes:", row["notes"], "\nanswer:", repr(row["answer"]), flush=True)
            rows.append(row)
            write_json(args.out, payload)
    print()
    print_table(rows, COLUMNS)
    payload["load_average_after"] = os.getloadavg()
    print(f"load average before {load_before}, after {payload['load_average_after']}")
    print(f"wrote {write_json(args.out, payload)}")


COLUMNS = ["mode", "prompt_tokens", "prefilled_target", "typing_s", "busy_s", "in_flight_wait_s",
           "base_first_s", "stream_first_s", "first_ratio", "base_64th_s", "stream_64th_s", "64th_ratio",
           "same_answer"]


if __name__ == "__main__":
    main()
