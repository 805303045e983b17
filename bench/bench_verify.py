"""What a verification pass computes: one forward of the resident target over M
tree nodes (a chain, after a prompt), for M from 1 up, each the best of a few
runs, with its time against M = 1. Under a budget a pass also waits for the
streamed layers; where this time passes that wait, a larger tree is no longer free.
Prints a table and writes bench/out/verify.json.

    PYTHONPATH=python python bench/bench_verify.py [--sizes 1,8,16,24,32,40,48,64] [-t 2]
"""
from __future__ import annotations

import argparse

from common import best_seconds, print_table, write_json
from duet import _core
from duet.gguf_file import GGUFFile
from duet.model import Model
from duet.models import resolve_model

PROMPT_TOKENS = 300  # attention over a prompt of about this length, as after a HumanEval prompt


def pass_seconds(model: Model, cache, n_nodes: int, repeats: int) -> float:
    """Best time of a forward over n_nodes new tokens with every row's logits, as a
    verification takes them; the cache is trimmed back after each run."""
    base = cache.n

    def verify() -> None:
        model.forward(list(range(1000, 1000 + n_nodes)), cache, logits_rows="all")
        cache.trim(base)

    return best_seconds(verify, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--sizes", default="1,8,16,24,32,40,48,64", help="tree sizes M, comma-separated")
    parser.add_argument("--threads", "-t", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    model = Model(GGUFFile(str(resolve_model(args.model))), _core.ThreadPool(args.threads))
    cache = model.new_cache(1024)
    model.prefill(list(range(100, 100 + PROMPT_TOKENS)), cache)
    pass_seconds(model, cache, 1, 1)  # warm: page the weights in
    sizes = [int(s) for s in args.sizes.split(",")]
    times = {m: pass_seconds(model, cache, m, args.repeats) for m in sizes}
    one = times[1] if 1 in times else pass_seconds(model, cache, 1, args.repeats)
    rows = [{"nodes": m, "ms": 1000 * t, "vs_one_node": t / one, "ms_per_node": 1000 * t / m}
            for m, t in times.items()]
    print_table(rows, ["nodes", "ms", "vs_one_node", "ms_per_node"])
    print(f"wrote {write_json('verify.json', {'args': vars(args), 'isa': _core.isa_default(), 'rows': rows})}")


if __name__ == "__main__":
    main()
