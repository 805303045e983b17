"""Decode and prefill speed of duet beside llama.cpp, same GGUF, same threads, one run.

    python bench/bench_decode.py [--threads 2] [--decode 128] [--prefill 512]

Prints a table and writes bench/out/decode.json."""
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


def duet_decode_rate(model: Model, prompt: list[int], n: int) -> float:
    cache = model.new_cache(len(prompt) + n + 1)
    logits = model.prefill(prompt, cache)
    start = time.perf_counter()
    for _ in range(n):
        logits = model.forward([int(np.argmax(logits))], cache)[0]
    return n / (time.perf_counter() - start)


def duet_prefill_rate(model: Model, prompt: list[int]) -> float:
    cache = model.new_cache(len(prompt) + 1)
    start = time.perf_counter()
    model.prefill(prompt, cache)
    return len(prompt) / (time.perf_counter() - start)


def llama_decode_rate(llm, prompt: list[int], n: int) -> float:
    llm.reset()
    llm.eval(prompt)
    start = time.perf_counter()
    for _ in range(n):
        llm.eval([int(np.argmax(llama_last_logits(llm)))])
    return n / (time.perf_counter() - start)


def llama_prefill_rate(llm, prompt: list[int]) -> float:
    llm.reset()
    start = time.perf_counter()
    llm.eval(prompt)
    return len(prompt) / (time.perf_counter() - start)


def bench_model(name: str, threads: int, n_decode: int, n_prefill: int) -> dict:
    path = resolve_model(name)
    gguf = GGUFFile(path)
    tokenizer = Tokenizer.from_metadata(gguf.metadata)
    text = "\n".join(humaneval_prompts())
    long_prompt = tokenizer.encode(text)[:n_prefill]
    short_prompt = tokenizer.encode(humaneval_prompts()[0])
    model = Model(gguf, _core.ThreadPool(threads))
    llm = llama_cpp_model(path, threads, n_ctx=max(n_prefill, len(short_prompt) + n_decode) + 16)
    row = {"model": name, "threads": threads}
    # Warm both once so that page faults of the first touch count for neither.
    duet_decode_rate(model, short_prompt, 4)
    row["duet_decode_tps"] = duet_decode_rate(model, short_prompt, n_decode)
    row["duet_prefill_tps"] = duet_prefill_rate(model, long_prompt)
    if llm is not None:
        llama_decode_rate(llm, short_prompt, 4)
        row["llama_decode_tps"] = llama_decode_rate(llm, short_prompt, n_decode)
        row["llama_prefill_tps"] = llama_prefill_rate(llm, long_prompt)
        row["decode_ratio"] = row["duet_decode_tps"] / row["llama_decode_tps"]
        row["prefill_ratio"] = row["duet_prefill_tps"] / row["llama_prefill_tps"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", "-t", type=int, default=2)
    parser.add_argument("--decode", type=int, default=128)
    parser.add_argument("--prefill", type=int, default=512)
    parser.add_argument("--models", nargs="+", default=["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"])
    args = parser.parse_args()
    rows = [bench_model(m, args.threads, args.decode, args.prefill) for m in args.models]
    print_table(rows, ["model", "threads", "duet_decode_tps", "llama_decode_tps", "decode_ratio",
                       "duet_prefill_tps", "llama_prefill_tps", "prefill_ratio"])
    print(f"wrote {write_json('decode.json', rows)}")


if __name__ == "__main__":
    main()
