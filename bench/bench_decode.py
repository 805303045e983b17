"""Decode and prefill speed of duet beside llama.cpp, same GGUF, same threads, one run.

    python bench/bench_decode.py [--threads 2] [--decode 128] [--prefill 512] [--compare-isa avx512]

Decode runs `--decode` tokens per engine in alternating rounds; prefill runs the
`--prefill`-token prompt once per round, with `--compare-isa` also on that kernel
path (duet's default path against another, in the same rounds). Prints a table and
writes bench/out/decode.json."""
from __future__ import annotations

import argparse
import time

import numpy as np

from common import humaneval_prompts, llama_cpp_model, llama_last_logits, print_table, write_json
from duet import _core
from duet.gguf_file import GGUFFile
from duet.model import Model
from duet.models import resolve_model
from duet.tokenizer import Tokenizer


# The machines are shared: a run of one engine can land in a noisy second that the
# other's run misses. So the two engines alternate in short rounds and each keeps
# its best round, and prefill alternates too.
ROUNDS = 6


class DuetDecoder:
    """duet's greedy decode, resumable round after round."""

    def __init__(self, model: Model, prompt: list[int], n_ctx: int):
        self.model = model
        self.cache = model.new_cache(n_ctx)
        self.logits = model.prefill(prompt, self.cache)

    def step(self, n: int) -> None:
        for _ in range(n):
            self.logits = self.model.forward([int(np.argmax(self.logits))], self.cache)[0]


class LlamaDecoder:
    """llama.cpp's greedy decode over the same prompt, resumable."""

    def __init__(self, llm, prompt: list[int]):
        self.llm = llm
        llm.reset()
        llm.eval(prompt)

    def step(self, n: int) -> None:
        for _ in range(n):
            self.llm.eval([int(np.argmax(llama_last_logits(self.llm)))])


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def duet_prefill(model: Model, prompt: list[int]) -> None:
    model.prefill(prompt, model.new_cache(len(prompt) + 1))


def llama_prefill(llm, prompt: list[int]) -> None:
    llm.reset()
    llm.eval(prompt)


def best_rates(runs: dict, count: int) -> dict:
    """{name: count / best time} over ROUNDS alternating rounds of each run."""
    best = {name: float("inf") for name in runs}
    for _ in range(ROUNDS):
        for name, fn in runs.items():
            best[name] = min(best[name], timed(fn))
    return {name: count / t for name, t in best.items()}


def bench_model(name: str, threads: int, n_decode: int, n_prefill: int, compare_isa: str) -> dict:
    path = resolve_model(name)
    gguf = GGUFFile(path)
    tokenizer = Tokenizer.from_metadata(gguf.metadata)
    text = "\n".join(humaneval_prompts())
    long_prompt = tokenizer.encode(text)[:n_prefill]
    short_prompt = tokenizer.encode(humaneval_prompts()[0])
    pool = _core.ThreadPool(threads)
    model = Model(gguf, pool)
    n_ctx = max(n_prefill, len(short_prompt) + n_decode) + 16
    llm = llama_cpp_model(path, threads, n_ctx=n_ctx)
    row = {"model": name, "threads": threads, "isa": model.isa or _core.isa_default()}
    per_round = max(1, n_decode // ROUNDS)
    duet = DuetDecoder(model, short_prompt, n_ctx)
    duet.step(2)  # first touch of every page outside the timing
    decode = {"duet": lambda: duet.step(per_round)}
    prefill = {"duet": lambda: duet_prefill(model, long_prompt)}
    if compare_isa:
        other = Model(gguf, pool, isa=compare_isa)
        prefill[f"duet_{compare_isa}"] = lambda: duet_prefill(other, long_prompt)
    if llm is not None:
        llama = LlamaDecoder(llm, short_prompt)
        llama.step(2)
        decode["llama"] = lambda: llama.step(per_round)
        prefill["llama"] = lambda: llama_prefill(llm, long_prompt)
    for name, rate in best_rates(decode, per_round).items():
        row[f"{name}_decode_tps"] = rate
    for name, rate in best_rates(prefill, len(long_prompt)).items():
        row[f"{name}_prefill_tps"] = rate
    if llm is not None:
        row["decode_ratio"] = row["duet_decode_tps"] / row["llama_decode_tps"]
        row["prefill_ratio"] = row["duet_prefill_tps"] / row["llama_prefill_tps"]
    if compare_isa:
        row[f"prefill_vs_{compare_isa}"] = row["duet_prefill_tps"] / row[f"duet_{compare_isa}_prefill_tps"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", "-t", type=int, default=2)
    parser.add_argument("--decode", type=int, default=128)
    parser.add_argument("--prefill", type=int, default=512)
    parser.add_argument("--models", nargs="+", default=["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"])
    parser.add_argument("--compare-isa", default="", help="also time duet's prefill on this kernel path")
    args = parser.parse_args()
    rows = [bench_model(m, args.threads, args.decode, args.prefill, args.compare_isa) for m in args.models]
    compared = [f"duet_{args.compare_isa}_prefill_tps", f"prefill_vs_{args.compare_isa}"] if args.compare_isa else []
    print_table(rows, ["model", "threads", "isa", "duet_decode_tps", "llama_decode_tps", "decode_ratio",
                       "duet_prefill_tps", "llama_prefill_tps", "prefill_ratio", *compared])
    print(f"wrote {write_json('decode.json', rows)}")


if __name__ == "__main__":
    main()
