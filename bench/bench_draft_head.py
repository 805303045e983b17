"""The drafter's decode step with its whole LM head and with a partial one (the
first --vocab token ids, as Engine(draft_vocab=...) sets it), the partial one in
the file's type and held narrower (draft_head.HELD_TYPE, as the engine holds
it), alternating in rounds in one process; also the head's matmul alone and its
bytes, and the share of the tokens of HumanEval's canonical solutions that the
first --vocab ids hold.

    python bench/bench_draft_head.py [--model qwen2.5-coder-0.5b] [--vocab 65536] [--threads 2]

Prints a table and writes bench/out/draft_head.json."""
from __future__ import annotations

import argparse
import time

import numpy as np

from common import best_seconds, humaneval_field, humaneval_prompts, print_table, write_json
from duet import _core
from duet.gguf_file import GGUFFile
from duet.model import Model
from duet.models import resolve_model
from duet.tokenizer import Tokenizer

ROUNDS = 6
STEPS = 32


def step_seconds(model: Model, prompt: list[int]) -> float:
    """Mean seconds of STEPS one-token forwards after the prompt."""
    cache = model.new_cache(len(prompt) + STEPS + 1)
    model.prefill(prompt, cache)
    start = time.perf_counter()
    for token in prompt[:STEPS]:
        model.forward([token], cache)
    return (time.perf_counter() - start) / STEPS


def head_seconds(model: Model, repeats: int = 30) -> float:
    h = np.random.default_rng(0).standard_normal((1, model.config.n_embd)).astype(np.float32)
    return best_seconds(lambda: model.logits(h), repeats)


def head_bytes(model: Model) -> int:
    return model.draft_head.nbytes if model.draft_head else model.output[1].nbytes


def head_type(model: Model) -> int:
    return model.draft_head.type_id if model.draft_head else model.output[0]


def vocab_coverage(tokenizer: Tokenizer, n_prefix: int) -> float:
    """Share of the tokens of HumanEval's canonical solutions with ids below n_prefix."""
    ids = np.concatenate([tokenizer.encode(code) for code in humaneval_field("canonical_solution")])
    return float(np.mean(ids < n_prefix))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--vocab", type=int, default=65536)
    parser.add_argument("--threads", "-t", type=int, default=2)
    args = parser.parse_args()

    gguf = GGUFFile(resolve_model(args.model))
    tokenizer = Tokenizer.from_metadata(gguf.metadata)
    prompt = tokenizer.encode(humaneval_prompts()[0])
    pool = _core.ThreadPool(args.threads)
    partial = {f"first {args.vocab} ids, file's type": False, f"first {args.vocab} ids, held narrower": True}
    models = {"whole head": Model(gguf, pool)} | {name: Model(gguf, pool) for name in partial}
    for name, narrow in partial.items():
        models[name].restrict_head(args.vocab, tokenizer.end_of_generation_ids, narrow)
    steps: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(ROUNDS):
        for name, model in models.items():
            steps[name].append(step_seconds(model, prompt))
    rows = [{"head": name, "step_ms_best": 1e3 * min(steps[name]), "step_ms_median": 1e3 * float(np.median(steps[name])),
             "head_matmul_ms": 1e3 * head_seconds(model), "head_MiB": head_bytes(model) / 2**20,
             "head_type": _core.type_traits(head_type(model))["name"]} for name, model in models.items()]
    for row in rows:
        row["step_vs_whole"] = row["step_ms_best"] / rows[0]["step_ms_best"]
    print_table(rows, ["head", "head_type", "head_MiB", "step_ms_best", "step_ms_median", "step_vs_whole",
                       "head_matmul_ms"])
    coverage = vocab_coverage(tokenizer, args.vocab)
    print(f"the first {args.vocab} ids hold {100 * coverage:.1f}% of the tokens of HumanEval's canonical solutions")
    print(f"wrote {write_json('draft_head.json', {'args': vars(args), 'rows': rows, 'coverage': coverage})}")


if __name__ == "__main__":
    main()
