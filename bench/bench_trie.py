"""Trie drafts on the real pair: tokens/s of target-only, target + trie, small-model
tree, and small-model tree + trie, on HumanEval edit tasks and plain HumanEval
completions, greedy (every mode must emit the same tokens); resident, with the
policy and drafter head duet.Engine uses without a budget (target-only steps where
drafting does not pay, the drafter's partial head), or with --budget through
duet.Engine under that budget, each mode in a fresh process.

    python bench/bench_trie.py [--prompts 5] [--tokens 96] [--threads 2] [--budget 1GiB [--repeats 5]]
                               [--tasks edit plain]

Prints a table and writes bench/out/trie.json. Each mode keeps one n-gram store
and one fallback policy for the whole task set, as duet.Engine does (a session:
output counts and measured costs carry over, prompt counts do not).
Both caches hold prompt[:-1] before the clock starts, so every mode is timed from
the last prompt token on."""
from __future__ import annotations

import argparse
import os
import time

from common import edit_task, humaneval_prompts, print_table, write_json
from duet import _core
from duet.engine import DRAFT_VOCAB
from duet.generate import decode_tokens
from duet.gguf_file import GGUFFile
from duet.model import Model
from duet.models import resolve_model
from duet.ngram_store import NGramStore
from duet.policy import FallbackPolicy
from duet.sampling import Sampler
from duet.speculative import SpeculativeStats, TreeDrafter, TreeVerifier, speculative_generate
from duet.tokenizer import Tokenizer
from duet.trie_drafter import MergedDrafter, TrieDrafter

MODES = ("target", "target+trie", "tree", "tree+trie")


def task_prompts(tokenizer: Tokenizer, n: int) -> dict[str, list[list[int]]]:
    codes = humaneval_prompts()[:n]
    edits = [tokenizer.encode(tokenizer.apply_chat_template(edit_task(code))) for code in codes]
    plain = [tokenizer.encode(code) for code in codes]
    return {"edit": edits, "plain": plain}


class Runner:
    """The resident pair, and one n-gram store and one policy per mode (a session)."""

    def __init__(self, threads: int, max_tokens: int, max_nodes: int, trie_nodes: int):
        pool = _core.ThreadPool(threads)
        self.target = Model(GGUFFile(resolve_model("qwen2.5-coder-1.5b")), pool)
        self.drafter = Model(GGUFFile(resolve_model("qwen2.5-coder-0.5b")), pool)
        self.tokenizer = Tokenizer.from_metadata(self.target.gguf.metadata)
        self.drafter.restrict_head(DRAFT_VOCAB, always=self.tokenizer.end_of_generation_ids)
        self.max_tokens = max_tokens
        self.max_nodes = max_nodes
        self.trie_nodes = trie_nodes
        self.new_sessions()

    def new_sessions(self) -> None:
        self.stores = {mode: NGramStore() for mode in MODES if "trie" in mode}
        self.policies = {mode: FallbackPolicy(max_nodes=self.max_nodes, max_depth=self.max_nodes, solo_fallback=True)
                         for mode in MODES if mode != "target"}

    def is_stop(self, token: int) -> bool:
        return self.tokenizer.is_end_of_generation(token)

    def prefilled_cache(self, model: Model, prompt: list[int]):
        cache = model.new_cache(len(prompt) + self.max_tokens + 64)
        model.prefill(prompt[:-1], cache)
        return cache

    def run(self, mode: str, prompt: list[int]) -> dict:
        target_cache = self.prefilled_cache(self.target, prompt)
        if mode == "target":
            start = time.perf_counter()
            tokens = list(decode_tokens(self.target, target_cache, prompt, self.max_tokens, Sampler(temperature=0),
                                        self.is_stop))
            return {"tokens": tokens, "seconds": time.perf_counter() - start, "stats": None}
        drafter = self.make_drafter(mode, prompt)
        stats = SpeculativeStats()
        start = time.perf_counter()
        tokens = [t for t, _ in speculative_generate(TreeVerifier(self.target, target_cache), drafter, prompt,
                                                     self.max_tokens, self.policies[mode], self.is_stop, stats=stats)]
        return {"tokens": tokens, "seconds": time.perf_counter() - start, "stats": stats}

    def make_drafter(self, mode: str, prompt: list[int]):
        trie = TrieDrafter(self.stores[mode], max_nodes=self.trie_nodes) if "trie" in mode else None
        if mode == "target+trie":
            return trie
        tree = TreeDrafter(self.drafter, self.prefilled_cache(self.drafter, prompt))
        return tree if trie is None else MergedDrafter(tree, trie)


def summarise(task: str, mode: str, results: list[dict], reference: list[list[int]]) -> dict:
    tokens = sum(len(r["tokens"]) for r in results)
    seconds = sum(r["seconds"] for r in results)
    row = {"task": task, "mode": mode, "tokens": tokens, "seconds": seconds, "tps": tokens / seconds,
           "lossless": all(r["tokens"] == ref for r, ref in zip(results, reference))}
    stats = [r["stats"] for r in results if r["stats"] is not None]
    if stats:
        passes = sum(s.passes for s in stats)
        row["passes"] = passes
        row["solo_steps"] = sum(s.solo for s in stats)
        row["accepted_per_pass"] = sum(s.accepted for s in stats) / passes
        row["drafted_per_pass"] = sum(s.drafted for s in stats) / passes
        for source in ("draft", "trie"):
            row[f"{source}_accepted_per_pass"] = sum(s.accepted_by_source.get(source, 0) for s in stats) / passes
    return row


def mark_speedups(task_rows: list[dict]) -> None:
    """Each row's tokens/s against the task's first mode (a failed run has none)."""
    base = task_rows[0]["tps"]
    for row in task_rows:
        row["speedup"] = row["tps"] / base if row["tps"] and base else None


PAGED_MODES = {"target": dict(draft=None, trie=False), "target+trie": dict(draft=None, trie=True),
               "tree": dict(draft="qwen2.5-coder-0.5b", trie=False),
               "tree+trie": dict(draft="qwen2.5-coder-0.5b", trie=True)}


def paged_rows(args) -> list[dict]:
    """Each mode through duet.Engine under the budget, in its own process (bench_paged's
    worker). With --repeats the modes take turns, so that a slow spell of this shared
    machine falls on all of them, and each row gives the median run."""
    from bench_paged import TARGET, worker
    from duet.memory import parse_size

    model_path, limit = resolve_model(TARGET), parse_size(args.budget)
    rows = []
    for task in args.tasks:
        runs: dict[str, list[dict]] = {mode: [] for mode in args.modes}
        for repeat in range(args.repeats):
            for mode in args.modes:
                result = worker("duet", limit, model_path, args.timeout, target=TARGET, budget=args.budget,
                                prompts=list(range(args.prompts)), tokens=args.tokens, threads=args.threads,
                                n_ctx=1024, task=task, **PAGED_MODES[mode])
                runs[mode].append(result)
                print(f"{task:5} {mode:11} run {repeat + 1}: {result.get('tokens_per_second')} tok/s", flush=True)
        reference = [r["tokens"] for r in runs[args.modes[0]][0].get("runs", [])]
        for mode in args.modes:
            rows.append(paged_row(task, mode, args.budget, runs[mode], reference))
        mark_speedups(rows[-len(args.modes):])
    return rows


def paged_row(task: str, mode: str, budget: str, results: list[dict], reference: list[list[int]]) -> dict:
    """One mode's runs: the median run's figures, every run's tokens/s, and whether
    every run emitted the reference tokens."""
    errors = [r["error"] for r in results if r.get("error")]
    speeds = sorted(r["tokens_per_second"] for r in results if r.get("tokens_per_second"))
    median = results[0] if not speeds else \
        next(r for r in results if r.get("tokens_per_second") == speeds[(len(speeds) - 1) // 2])
    return {"task": task, "mode": mode, "budget": budget, "tps": median.get("tokens_per_second"),
            "tps_runs": [round(r["tokens_per_second"], 2) if r.get("tokens_per_second") else None for r in results],
            # Verification passes are what the drafters change; tokens/s also carries
            # the storage's speed, which varies from run to run on a shared machine.
            "passes_runs": [r.get("passes") for r in results],
            # The engine counts switches over its prompts: the last prompt's count is the run's.
            "switches_runs": [max((x.get("parking_switches", 0) for x in r.get("runs", [])), default=0)
                              for r in results],
            "lossless": all([x["tokens"] for x in r.get("runs", [])] == reference for r in results),
            "peak_MiB": max(r.get("peak", 0) for r in results) / 2**20,
            "accepted_per_pass": median.get("mean_accepted_per_pass"), "error": errors[0] if errors else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--threads", "-t", type=int, default=2)
    parser.add_argument("--max-nodes", type=int, default=24, help="the policy's tree size and depth cap")
    parser.add_argument("--trie-nodes", type=int, default=16, help="draft nodes the trie may add per pass")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--tasks", nargs="+", default=["edit", "plain"], choices=["edit", "plain"])
    parser.add_argument("--budget", help="run through duet.Engine under this budget (e.g. 1GiB)")
    parser.add_argument("--timeout", type=float, default=3600, help="per mode, with --budget")
    parser.add_argument("--repeats", type=int, default=1, help="with --budget: runs of each mode, taking turns")
    args = parser.parse_args()
    if args.budget:
        rows = paged_rows(args)
        print_table(rows, ["task", "mode", "budget", "tps", "speedup", "tps_runs", "passes_runs", "switches_runs",
                           "lossless", "peak_MiB", "accepted_per_pass", "error"])
        print(f"wrote {write_json('trie_paged.json', {'args': vars(args), 'rows': rows})}")
        return
    runner = Runner(args.threads, args.tokens, args.max_nodes, args.trie_nodes)
    load_before = os.getloadavg()
    # Warm both models once so that first-touch page faults count for no mode.
    runner.run("tree", runner.tokenizer.encode("def f(x):\n    return x\n")[:8])
    runner.new_sessions()
    rows = []
    for task, prompts in task_prompts(runner.tokenizer, args.prompts).items():
        if task not in args.tasks:
            continue
        reference = None
        for mode in args.modes:
            results = [runner.run(mode, prompt) for prompt in prompts]
            reference = reference or [r["tokens"] for r in results]
            rows.append(summarise(task, mode, results, reference))
            print(f"{task:5} {mode:11} {rows[-1]['tps']:.2f} tok/s", flush=True)
        mark_speedups(rows[-len(args.modes):])
    print_table(rows, ["task", "mode", "tokens", "tps", "speedup", "lossless", "accepted_per_pass",
                       "trie_accepted_per_pass", "draft_accepted_per_pass", "drafted_per_pass", "solo_steps"])
    payload = {"args": vars(args), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
               "cpu_count": os.cpu_count(), "rows": rows}
    print(f"load average before {load_before}, after {payload['loadavg_after']}")
    print(f"wrote {write_json('trie.json', payload)}")


if __name__ == "__main__":
    main()
