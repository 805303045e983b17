"""Shared pieces of the benchmarks: prompts, llama.cpp baseline, output."""
from __future__ import annotations

import gzip
import json
import os
import re
import sys
import time
from pathlib import Path

HUMANEVAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "HumanEval.jsonl.gz"
OUT_DIR = Path(__file__).resolve().parent / "out"


def humaneval_field(field: str, path: Path | None = None) -> list[str]:
    """One field ("prompt", "canonical_solution", ...) of every HumanEval problem."""
    path = Path(os.environ.get("DUET_HUMANEVAL", path or HUMANEVAL))
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line)[field] for line in f]


def humaneval_prompts(path: Path | None = None) -> list[str]:
    return humaneval_field("prompt", path)


def llama_cpp_model(path, threads: int, n_ctx: int = 2048, n_batch: int = 512):
    """llama.cpp over the same GGUF, the baseline; None when llama-cpp-python is absent."""
    from duet.llama_baseline import open_llama

    try:
        return open_llama(path, n_threads=threads, n_threads_batch=threads, n_ctx=n_ctx, n_batch=n_batch,
                          n_ubatch=n_batch)
    except ImportError as e:
        print(f"no llama.cpp baseline: {e}", file=sys.stderr)
        return None


def llama_last_logits(llm):
    """The logits of llama.cpp's last evaluated token (without logits_all, llama-cpp-python
    keeps them only in the context)."""
    import numpy as np

    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))


def best_seconds(fn, repeats: int) -> float:
    """The shortest of `repeats` timed calls of fn: on a shared machine the
    slower runs measure the neighbours."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = [max(len(c), *(len(fmt(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths)))


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.1f}"
    return "" if value is None else str(value)


def write_json(name: str, payload) -> Path:
    OUT_DIR.mkdir(exist_ok=True)
    path = OUT_DIR / name
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)
    return path


def edit_task(code: str) -> list[dict]:
    """The prompt's code with a small change asked for, so most of the answer is a copy."""
    name = re.search(r"def (\w+)\(", code).group(1)
    request = (f"Rename the function `{name}` to `{name}_renamed` and return the same code, with its "
               f"docstring, changing nothing else.\n\n```python\n{code}```")
    return [{"role": "user", "content": request}]
