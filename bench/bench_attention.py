"""Decode-shaped attention timings (one query over a full f16 cache) per ISA path.

Usage: PYTHONPATH=python python bench/bench_attention.py [n_threads]
Prints the best of many calls, which is the stable number on a shared machine.
"""
import sys

import numpy as np

from common import best_seconds
from duet import _core

SHAPES = [  # (label, n_head, n_head_kv, head_dim): Qwen2.5 1.5B and 0.5B
    ("1.5B", 12, 2, 128),
    ("0.5B", 14, 2, 64),
]


def main():
    pool = _core.ThreadPool(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    rng = np.random.default_rng(0)
    for label, n_head, n_head_kv, head_dim in SHAPES:
        for n_kv in [512, 3000]:
            q = rng.standard_normal((1, n_head, head_dim)).astype(np.float32)
            k = rng.standard_normal((n_kv, n_head_kv, head_dim)).astype(np.float16)
            v = rng.standard_normal((n_kv, n_head_kv, head_dim)).astype(np.float16)
            mask = np.ones((1, n_kv), np.uint8)
            out = np.empty_like(q)
            for isa in _core.isa_runnable():
                seconds = best_seconds(
                    lambda: _core.attention(q, k, v, n_kv, mask, head_dim**-0.5, pool, isa=isa, out=out), 200)
                print(f"{label} n_kv={n_kv:5d} {isa:7s} {seconds * 1e6:8.1f} us/layer")


if __name__ == "__main__":
    main()
