"""Greedy parity with llama.cpp, same GGUF: on HumanEval prompts, how many 64-token
continuations are token-exact against llama.cpp's plain CPU path (weights in the
file's layout, as duet uses them) and against its default (Q4_K rows repacked eight
at a time for kernels that round otherwise), and how long the common prefixes are.

    python bench/bench_parity.py [--prompts 20] [--tokens 64] [--models NAME,NAME]

Prints a table and writes bench/out/parity.json."""
from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

from common import humaneval_prompts, print_table, write_json

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
from test_model_real import MODELS, duet_greedy, llama_greedy  # noqa: E402

from duet import _core  # noqa: E402
from duet.gguf_file import GGUFFile  # noqa: E402
from duet.incremental_tokenizer import common_prefix_length  # noqa: E402
from duet.llama_baseline import cpu_has_amx, open_llama  # noqa: E402
from duet.model import Model  # noqa: E402
from duet.models import resolve_model  # noqa: E402
from duet.tokenizer import Tokenizer  # noqa: E402


def parity_rows(name: str, prompts: list[str], n_tokens: int) -> list[dict]:
    path = resolve_model(name)
    gguf = GGUFFile(path)
    tokenizer = Tokenizer.from_metadata(gguf.metadata)
    model = Model(gguf, _core.ThreadPool(2))
    encoded = [tokenizer.encode(text) for text in prompts]
    ours = [duet_greedy(model, prompt, n_tokens)[0] for prompt in encoded]
    rows = []
    for repack in (False,) if cpu_has_amx() else (False, True):  # with AMX, llama.cpp's default is plain
        llm = open_llama(path, plain=not repack, n_ctx=2048, n_batch=512, n_threads=2, logits_all=True)
        prefixes = [common_prefix_length(a, llama_greedy(llm, prompt, n_tokens)[0]) for a, prompt in zip(ours, encoded)]
        del llm
        rows.append({"model": name, "llama.cpp": "default (repacked)" if repack else "plain",
                     "token-exact": f"{sum(p == n_tokens for p in prefixes)}/{len(prefixes)}",
                     "mean common prefix": float(np.mean(prefixes)), "prefixes": prefixes})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    prompts = humaneval_prompts()[:args.prompts]
    rows = [row for name in args.models.split(",") for row in parity_rows(name, prompts, args.tokens)]
    print_table(rows, ["model", "llama.cpp", "token-exact", "mean common prefix"])
    print(f"wrote {write_json('parity.json', {'tokens': args.tokens, 'rows': rows})}")


if __name__ == "__main__":
    main()
