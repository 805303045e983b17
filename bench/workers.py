"""Benchmark workers, each run in a fresh process (often inside a memory cgroup)
by memory_limits.run_worker: decode some HumanEval prompts and print one JSON line.

    python bench/workers.py duet  '{"target": ..., "draft": null, "budget": "1GiB", ...}'
    python bench/workers.py llama '{"target": ..., ...}'
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

from common import edit_task, humaneval_prompts, llama_last_logits


def duet_worker(target: str, draft: str | None, budget: str | None, prompts: list[int], tokens: int,
                threads: int, n_ctx: int, trie: bool = False, task: str = "plain") -> dict:
    """task "plain": complete the HumanEval prompt; "edit": the chat request of
    common.edit_task on it (the answer repeats the prompt's code)."""
    from duet.engine import Engine

    texts = humaneval_prompts()
    runs, start = [], time.perf_counter()
    with Engine(target=target, draft=draft, budget=budget, threads=threads, n_ctx=n_ctx, trie=trie) as engine:
        load_seconds = time.perf_counter() - start
        for index in prompts:
            if task == "edit":
                result = engine.chat(edit_task(texts[index]), max_tokens=tokens)
            else:
                result = engine.generate(texts[index], max_tokens=tokens)
            runs.append({"tokens": result.tokens, **{k: v for k, v in result.stats.items()}})
        plan = engine.plan
        out = {"load_seconds": load_seconds, "runs": runs,
               "streamed_layers": len(plan.streamed) if plan else 0,
               "read_per_pass": plan.bytes_read_per_pass if plan else 0}
    return summarise(out)


def llama_worker(target: str, prompts: list[int], tokens: int, threads: int, n_ctx: int) -> dict:
    from duet.llama_baseline import open_llama
    from duet.memory import memory_usage
    from duet.models import resolve_model

    texts = humaneval_prompts()
    start = time.perf_counter()
    llm = open_llama(resolve_model(target), n_ctx=n_ctx, n_threads=threads, n_batch=256)
    load_seconds = time.perf_counter() - start
    runs = []
    for index in prompts:
        llm.reset()
        prompt = llm.tokenize(texts[index].encode(), add_bos=False, special=True)
        t0 = time.perf_counter()
        llm.eval(prompt)
        out, first = [], None
        for _ in range(tokens):
            out.append(int(np.argmax(llama_last_logits(llm))))
            first = first or time.perf_counter()
            if out[-1] in (llm.token_eos(), 151643, 151645) or len(out) == tokens:
                break
            llm.eval([out[-1]])
        end = time.perf_counter()
        runs.append({"tokens": out, "generated_tokens": len(out), "time_to_first_token": first - t0,
                     "tokens_per_second": (len(out) - 1) / (end - first) if end > first else 0.0,
                     "peak_memory": memory_usage().peak})
    return summarise({"load_seconds": load_seconds, "runs": runs})


def summarise(out: dict) -> dict:
    """Totals over the prompts: decode tokens/s as (tokens after the first) / time."""
    runs = out["runs"]
    gen = sum(r["generated_tokens"] - 1 for r in runs)
    secs = sum((r["generated_tokens"] - 1) / r["tokens_per_second"] for r in runs if r["tokens_per_second"])
    out["tokens_per_second"] = gen / secs if secs else 0.0
    out["peak"] = max(r["peak_memory"] for r in runs)
    out["time_to_first_token"] = sum(r["time_to_first_token"] for r in runs) / len(runs)
    for key in ("passes", "drafted", "accepted", "bytes_read", "read_seconds", "draft_seconds", "verify_seconds"):
        if key in runs[0]:
            out[key] = sum(r[key] for r in runs)
    if out.get("passes"):
        out["mean_accepted_per_pass"] = out["accepted"] / out["passes"]
    return out


if __name__ == "__main__":
    kind, params = sys.argv[1], json.loads(sys.argv[2])
    result = duet_worker(**params) if kind == "duet" else llama_worker(**params)
    print(json.dumps(result))
