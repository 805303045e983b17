"""Target-only decoding of the large model under a memory budget, cold: duet
(streaming layers through its own buffers) beside llama.cpp (mmap) under a memory
cgroup of the same size. One script run; every configuration in a fresh process.

    python bench/bench_paged.py [--budgets 0.6GiB,0.8GiB,1GiB] [--tokens 48]

Prints a table and writes bench/out/paged.json. Needs root for the cgroups;
without them the limits are not enforced (said in the output)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import print_table, write_json
from memory_limits import cgroups_available, run_worker

TARGET = "qwen2.5-coder-1.5b"
WORKERS = str(Path(__file__).with_name("workers.py"))


def worker(kind: str, limit: int | None, model_path, timeout: float, **params) -> dict:
    return run_worker([WORKERS, kind, json.dumps(params)], limit, model_path, timeout, f"{kind}-bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="0.6GiB,0.8GiB,1GiB")
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--prompt", type=int, default=2, help="HumanEval prompt index")
    parser.add_argument("--threads", "-t", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()

    from duet.memory import parse_size
    from duet.models import resolve_model

    model_path = resolve_model(TARGET)
    if not cgroups_available():
        print("no writable cgroup v1 memory controller: limits NOT enforced for llama.cpp", file=sys.stderr)
    params = dict(target=TARGET, prompts=[args.prompt], tokens=args.tokens, threads=args.threads, n_ctx=1024)
    resident = worker("duet", None, model_path, args.timeout, draft=None, budget=None, **params)
    rows = []
    for budget in args.budgets.split(","):
        limit = parse_size(budget)
        duet = worker("duet", limit, model_path, args.timeout, draft=None, budget=budget, **params)
        llama = worker("llama", limit, model_path, args.timeout, **params)
        rows.append(compare(budget, duet, llama, resident))
        print(json.dumps(rows[-1]), file=sys.stderr)
    print(f"resident (no budget): {resident.get('tokens_per_second')} tok/s, "
          f"peak {resident.get('peak', 0) / 2**20:.0f} MiB")
    print_table(rows, ["budget", "duet_tps", "llama_tps", "speedup", "duet_peak_MiB", "duet_cgroup_peak_MiB",
                       "llama_cgroup_peak_MiB", "streamed_layers", "pass_over_max_io_compute",
                       "same_tokens_as_resident", "duet_error", "llama_error"])
    print(f"wrote {write_json('paged.json', {'resident': resident, 'rows': rows})}")


def compare(budget: str, duet: dict, llama: dict, resident: dict) -> dict:
    row = {"budget": budget, "duet_tps": duet.get("tokens_per_second"), "llama_tps": llama.get("tokens_per_second"),
           "duet_peak_MiB": duet.get("peak", 0) / 2**20, "duet_cgroup_peak_MiB": duet.get("cgroup_peak", 0) / 2**20,
           "llama_cgroup_peak_MiB": llama.get("cgroup_peak", 0) / 2**20,
           "streamed_layers": duet.get("streamed_layers"), "duet_error": duet.get("error"),
           "llama_error": llama.get("error")}
    if duet.get("tokens_per_second") and llama.get("tokens_per_second"):
        row["speedup"] = duet["tokens_per_second"] / llama["tokens_per_second"]
    if duet.get("runs") and resident.get("runs"):
        row["same_tokens_as_resident"] = [r["tokens"] for r in duet["runs"]] == [r["tokens"] for r in resident["runs"]]
    if duet.get("bytes_read") and resident.get("tokens_per_second"):
        # A pass should take about max(IO, compute): IO at the reader's measured
        # rate, compute from the resident run of the same model.
        io = duet["read_per_pass"] * duet["read_seconds"] / duet["bytes_read"]
        compute = 1 / resident["tokens_per_second"]
        row["pass_over_max_io_compute"] = (1 / duet["tokens_per_second"]) / max(io, compute)
    return row


if __name__ == "__main__":
    main()
