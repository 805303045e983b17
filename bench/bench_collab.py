"""Collaborative decoding (0.5B drafts, 1.5B verifies) beside duet target-only and
llama.cpp target-only: at one budget for the whole process (llama.cpp under a
memory cgroup of the same size), and with no budget. Cold start, one script run,
each configuration in a fresh process per prompt, the configurations taking turns
prompt by prompt, so that a drift in the shared host's speed (its storage above
all) reaches every configuration alike. Tokens/s count after the first token,
which every configuration takes from the prompt's pass (first_token_s: the mean
time to it).

    python bench/bench_collab.py [--budget 1GiB] [--prompts 0,1,2] [--tokens 128]

Prints a table and writes bench/out/collab.json."""
from __future__ import annotations

import argparse
import json
import sys

from bench_paged import TARGET, worker
from common import print_table, write_json
from memory_limits import cgroups_available
from workers import summarise

DRAFT = "qwen2.5-coder-0.5b"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="1GiB")
    parser.add_argument("--prompts", default="0,1,2", help="HumanEval prompt indices")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", "-t", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()

    from duet.memory import parse_size
    from duet.models import resolve_model

    model_path = resolve_model(TARGET)
    if not cgroups_available():
        print("no writable cgroup v1 memory controller: limits NOT enforced", file=sys.stderr)
    params = dict(target=TARGET, tokens=args.tokens, threads=args.threads, n_ctx=1024)
    limit = parse_size(args.budget)
    configs = [
        ("duet collaborative", args.budget, "duet", dict(draft=DRAFT, budget=args.budget)),
        ("duet target-only", args.budget, "duet", dict(draft=None, budget=args.budget)),
        ("llama.cpp target-only", args.budget, "llama", {}),
        ("duet collaborative", "none", "duet", dict(draft=DRAFT, budget=None)),
        ("duet target-only", "none", "duet", dict(draft=None, budget=None)),
        ("llama.cpp target-only", "none", "llama", {}),
    ]
    per_prompt: dict[tuple, list[dict]] = {}
    for prompt in [int(p) for p in args.prompts.split(",")]:
        for name, budget, kind, extra in configs:
            result = worker(kind, limit if budget != "none" else None, model_path, args.timeout, prompts=[prompt],
                            **params, **extra)
            per_prompt.setdefault((name, budget), []).append(result)
            print(json.dumps({"prompt": prompt, "config": name, "budget": budget,
                              "tokens_per_second": result.get("tokens_per_second"), "error": result.get("error")}),
                  file=sys.stderr)
    rows, results = [], {}
    for name, budget, kind, extra in configs:
        result = results[(name, budget)] = combined(per_prompt[(name, budget)])
        rows.append({"config": name, "budget": budget, "tokens_per_second": result.get("tokens_per_second"),
                     "first_token_s": result.get("time_to_first_token"),
                     "peak_MiB": result.get("peak", 0) / 2**20, "cgroup_peak_MiB": result.get("cgroup_peak", 0) / 2**20,
                     "mean_accepted_per_pass": result.get("mean_accepted_per_pass"),
                     "acceptance": (result["accepted"] / result["drafted"]) if result.get("drafted") else None,
                     "error": result.get("error")})
    for row in rows:
        base = results.get(("llama.cpp target-only", row["budget"]), {}).get("tokens_per_second")
        own = results.get(("duet target-only", row["budget"]), {}).get("tokens_per_second")
        if row["tokens_per_second"] and base:
            row["vs_llama"] = row["tokens_per_second"] / base
        if row["tokens_per_second"] and own:
            row["vs_duet_target_only"] = row["tokens_per_second"] / own
        reference = results.get(("duet target-only", "none"), {}).get("runs")
        mine = results[(row["config"], row["budget"])].get("runs")
        if reference and mine and row["config"].startswith("duet"):
            row["same_text_as_target_only"] = [r["tokens"] for r in mine] == [r["tokens"] for r in reference]
    print_table(rows, ["config", "budget", "tokens_per_second", "first_token_s", "vs_llama", "vs_duet_target_only",
                       "peak_MiB", "cgroup_peak_MiB", "mean_accepted_per_pass", "acceptance",
                       "same_text_as_target_only", "error"])
    print(f"wrote {write_json('collab.json', {'rows': rows, 'runs': {f'{k[0]} @ {k[1]}': v for k, v in results.items()}})}")


def combined(results: list[dict]) -> dict:
    """One configuration's per-prompt worker results as one: totals over every prompt."""
    errors = [r["error"] for r in results if r.get("error")]
    if errors:
        return {"error": errors[0]}
    out = summarise({"runs": [run for r in results for run in r["runs"]]})
    out["cgroup_peak"] = max(r.get("cgroup_peak", 0) for r in results)
    return out


if __name__ == "__main__":
    main()
