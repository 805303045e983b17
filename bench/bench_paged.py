"""Target-only decoding of the large model under a memory budget, cold: duet
(streaming layers through its own buffers) beside llama.cpp (mmap) under a memory
cgroup of the same size. One script run; every configuration in a fresh process.

    python bench/bench_paged.py [--budgets 0.6GiB,0.8GiB,1GiB] [--tokens 24]

Prints a table and writes bench/out/paged.json. Needs root for the cgroups;
without them the limits are not enforced (said in the output)."""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from common import humaneval_prompts, print_table, write_json
from memory_limits import cgroups_available, run_worker

TARGET = "qwen2.5-coder-1.5b"
N_CTX = 1024


def worker_duet(budget: str | None, tokens: int, threads: int) -> dict:
    from duet.engine import Engine

    with Engine(target=TARGET, draft=None, budget=budget, threads=threads, n_ctx=N_CTX) as engine:
        result = engine.generate(humaneval_prompts()[2], max_tokens=tokens)
        stats = result.stats
        plan = engine.plan
        out = {
            "tokens_per_second": stats["tokens_per_second"],
            "peak": stats["peak_memory"],
            "bytes_read": stats["bytes_read"],
            "read_seconds": stats["read_seconds"],
            "decode_seconds": stats.get("decode_seconds"),
            "streamed_layers": len(plan.streamed) if plan else 0,
            "read_per_pass": plan.bytes_read_per_pass if plan else 0,
            "tokens": result.tokens,
        }
    return out


def worker_llama(tokens: int, threads: int) -> dict:
    from llama_cpp import Llama

    from duet.memory import memory_usage
    from duet.models import resolve_model

    llm = Llama(model_path=str(resolve_model(TARGET)), n_ctx=N_CTX, n_threads=threads, verbose=False)
    prompt = llm.tokenize(humaneval_prompts()[2].encode(), add_bos=False, special=True)
    llm.eval(prompt)
    out, start = [], time.perf_counter()
    for _ in range(tokens):
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))
        out.append(int(np.argmax(logits)))
        if len(out) == 1:
            start = time.perf_counter()  # time between tokens, as duet reports it
        llm.eval([out[-1]])
    return {"tokens_per_second": (tokens - 1) / (time.perf_counter() - start), "peak": memory_usage().peak,
            "tokens": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="0.6GiB,0.8GiB,1GiB")
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--threads", "-t", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--worker", choices=["duet", "llama"], help=argparse.SUPPRESS)
    parser.add_argument("--budget", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        budget = None if args.budget in (None, "none") else args.budget
        result = worker_duet(budget, args.tokens, args.threads) if args.worker == "duet" else \
            worker_llama(args.tokens, args.threads)
        print(json.dumps(result))
        return

    from duet.memory import parse_size
    from duet.models import resolve_model

    model_path = resolve_model(TARGET)
    if not cgroups_available():
        print("no writable cgroup v1 memory controller: limits NOT enforced for llama.cpp", file=sys.stderr)
    common = [__file__, "--tokens", str(args.tokens), "--threads", str(args.threads)]
    resident = run_worker(common + ["--worker", "duet", "--budget", "none"], None, model_path, args.timeout,
                          "duet-resident")
    rows = []
    for budget in args.budgets.split(","):
        limit = parse_size(budget)
        duet = run_worker(common + ["--worker", "duet", "--budget", budget], limit, model_path, args.timeout,
                          "duet-bench")
        llama = run_worker(common + ["--worker", "llama"], limit, model_path, args.timeout, "llama-bench")
        row = {"budget": budget, "duet_tps": duet.get("tokens_per_second"), "llama_tps": llama.get("tokens_per_second"),
               "duet_peak_MiB": duet.get("peak", 0) / 2**20, "duet_cgroup_peak_MiB": duet.get("cgroup_peak", 0) / 2**20,
               "llama_cgroup_peak_MiB": llama.get("cgroup_peak", 0) / 2**20,
               "streamed_layers": duet.get("streamed_layers"), "duet_error": duet.get("error"),
               "llama_error": llama.get("error")}
        if duet.get("tokens_per_second") and llama.get("tokens_per_second"):
            row["speedup"] = duet["tokens_per_second"] / llama["tokens_per_second"]
        if duet.get("tokens") and resident.get("tokens"):
            row["same_tokens_as_resident"] = duet["tokens"] == resident["tokens"]
        if duet.get("read_seconds") and resident.get("tokens_per_second"):
            # A pass should take about max(IO, compute): IO from the reader's busy
            # time, compute from the resident run of the same model.
            io = duet["read_per_pass"] * duet["read_seconds"] / duet["bytes_read"]
            compute = 1 / resident["tokens_per_second"]
            row["pass_over_max_io_compute"] = (1 / duet["tokens_per_second"]) / max(io, compute)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    print(f"resident (no budget): {resident.get('tokens_per_second')} tok/s, peak {resident.get('peak', 0) / 2**20:.0f} MiB")
    print_table(rows, ["budget", "duet_tps", "llama_tps", "speedup", "duet_peak_MiB", "duet_cgroup_peak_MiB",
                       "llama_cgroup_peak_MiB", "streamed_layers", "pass_over_max_io_compute",
                       "same_tokens_as_resident", "duet_error", "llama_error"])
    print(f"wrote {write_json('paged.json', {'resident': resident, 'rows': rows})}")


if __name__ == "__main__":
    main()
