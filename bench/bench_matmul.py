"""Matmul speed of duet's kernels: GEMV bandwidth per type against a plain parallel
read of the same bytes (and a read that prefetches as the kernels do), batch-size
scaling, and a full pass over a real model's weights. Prints a table and writes
bench/out/matmul.json.

    PYTHONPATH=python python bench/bench_matmul.py [--threads 2] [--isa avx512,amx]

--isa takes a comma-separated list: the batch scaling runs on each path in turn (a
path against another in one run), the GEMV and the model pass on the first.
"""
import argparse
import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
from common import best_seconds  # noqa: E402
from duet import _core  # noqa: E402
from quant_blocks import ALL_TYPES, BLOCK, Q4_K, Q6_K, Q8_0, random_rows, row_bytes  # noqa: E402

MODEL = pathlib.Path("/root/.cache/duet/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
TYPE_NAMES = {t: _core.type_traits(t)["name"] for t in ALL_TYPES}


def best_time(fn, repeats):
    fn()  # warm: page in, fault in the output
    return best_seconds(fn, repeats)


def gemv_bandwidth(pool, isa, target_bytes, repeats):
    """(a) M = 1 over a matrix bigger than the caches, beside read_bytes of it."""
    rng = np.random.default_rng(0)
    cols = 4096
    results = []
    for type_id in ALL_TYPES:
        rows = max(1, target_bytes // row_bytes(type_id, cols))
        w = random_rows(type_id, rows, cols, rng).reshape(-1)
        x = rng.standard_normal((1, cols)).astype(np.float32)
        out = np.empty((1, rows), np.float32)
        t_mm = best_time(lambda: _core.matmul(type_id, w, rows, cols, x, pool, isa, out), repeats)
        reads = [best_time(lambda: _core.read_bytes(w, pool, prefetch=p), repeats) for p in (False, True)]
        results.append({"type": TYPE_NAMES[type_id], "rows": rows, "cols": cols, "bytes": int(w.nbytes),
                        "matmul_gbs": w.nbytes / t_mm / 1e9, **read_figures(w.nbytes, t_mm, *reads)})
    return results


def read_figures(n_bytes: int, t_mm: float, t_read: float, t_read_prefetch: float) -> dict:
    """The plain read's speed and the matmul's ratio to it, and the same for a read
    that asks for its bytes ahead as the decoding kernels do (the memory's speed)."""
    return {"read_gbs": n_bytes / t_read / 1e9, "ratio": t_read / t_mm,
            "read_prefetch_gbs": n_bytes / t_read_prefetch / 1e9, "ratio_prefetch": t_read_prefetch / t_mm}


def matrix_scaling(pool, isa, type_id, w, rows, cols, rng, repeats):
    """batch_scaling's rows for one matrix on one path."""
    results, base = [], None
    for m in [1, 2, 4, 8, 16, 32, 64]:
        x = rng.standard_normal((m, cols)).astype(np.float32)
        out = np.empty((m, rows), np.float32)
        t = best_time(lambda: _core.matmul(type_id, w, rows, cols, x, pool, isa, out), repeats)
        flags = np.ones(m, np.uint8)
        t_prompt = best_time(lambda: _core.matmul(type_id, w, rows, cols, x, pool, isa, out, flags), repeats)
        base = base or t
        results.append({"isa": isa, "type": TYPE_NAMES[type_id], "rows": rows, "cols": cols, "M": m,
                        "ms": t * 1e3, "ratio_to_m1": t / base,
                        "prompt_ms": t_prompt * 1e3, "prompt_ratio_to_m1": t_prompt / base})
    return results


def batch_scaling(pool, isas, repeats):
    """(b) time for M activation rows relative to M = 1 on model-shaped matrices (the
    1.5B's down projection and head, the 0.5B's head as its file has it), as decoded
    rows (a tree: vec_dot's order) and as prompt rows (llama.cpp's prompt-batch
    order, which K-quants compute in tiles), on each path."""
    rng = np.random.default_rng(1)
    results = []
    for type_id, rows, cols in [(Q4_K, 1536, 8960), (Q6_K, 151936, 1536), (Q8_0, 151936, 896)]:
        w = random_rows(type_id, rows, cols, rng).reshape(-1)
        for isa in isas:
            results += matrix_scaling(pool, isa, type_id, w, rows, cols, rng, repeats)
    return results


def model_pass(pool, isa, repeats):
    """(c) M = 1 over every 2-D weight tensor of the real model, vs reading them."""
    import gguf
    reader = gguf.GGUFReader(MODEL)
    tensors = []
    for t in reader.tensors:
        if len(t.shape) != 2:
            continue
        type_id = int(t.tensor_type)
        cols, rows = int(t.shape[0]), int(t.shape[1])
        data = np.ascontiguousarray(t.data).reshape(-1).view(np.uint8)
        tensors.append((type_id, rows, cols, data,
                        np.random.default_rng(rows).standard_normal((1, cols)).astype(np.float32),
                        np.empty((1, rows), np.float32)))
    total = sum(d.nbytes for _, _, _, d, _, _ in tensors)

    # Per tensor, the best of `repeats` runs, summed: on a shared machine a whole
    # pass is rarely free of interruptions, a single tensor's run often is.
    t_mm = sum(best_time(lambda: _core.matmul(type_id, data, rows, cols, x, pool, isa, out), repeats)
               for type_id, rows, cols, data, x, out in tensors)
    reads = [sum(best_time(lambda: _core.read_bytes(data, pool, prefetch=p), repeats)
                 for _, _, _, data, _, _ in tensors) for p in (False, True)]
    return {"model": MODEL.name, "tensors": len(tensors), "bytes": int(total), "matmul_ms": t_mm * 1e3,
            "matmul_gbs": total / t_mm / 1e9, **read_figures(total, t_mm, *reads)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--isa", default="")
    parser.add_argument("--mbytes", type=int, default=96, help="matrix size for the GEMV bandwidth runs")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-model", action="store_true")
    args = parser.parse_args()
    pool = _core.ThreadPool(args.threads)
    isas = args.isa.split(",") if args.isa else [_core.isa_default()]
    isa = isas[0]

    report = {"isa": isa, "threads": args.threads}
    report["gemv"] = gemv_bandwidth(pool, isa, args.mbytes << 20, args.repeats)
    print(f"(a) GEMV M=1, {args.threads} threads, isa={isa}")
    print(f"{'type':6} {'MB':>6} {'matmul GB/s':>12} {'read GB/s':>10} {'ratio':>6} {'read+pf GB/s':>13} {'ratio':>6}")
    for r in report["gemv"]:
        print(f"{r['type']:6} {r['bytes'] / 2**20:6.0f} {r['matmul_gbs']:12.2f} {r['read_gbs']:10.2f} {r['ratio']:6.2f} "
              f"{r['read_prefetch_gbs']:13.2f} {r['ratio_prefetch']:6.2f}")

    report["batch"] = batch_scaling(pool, isas, args.repeats)
    print("\n(b) batch scaling")
    print(f"{'isa':7} {'type':6} {'shape':>12} {'M':>3} {'ms':>9} {'xM=1':>6} {'prompt ms':>10} {'xM=1':>6}")
    for r in report["batch"]:
        print(f"{r['isa']:7} {r['type']:6} {r['rows']:>6}x{r['cols']:<5} {r['M']:3d} {r['ms']:9.3f} {r['ratio_to_m1']:6.2f} "
              f"{r['prompt_ms']:10.3f} {r['prompt_ratio_to_m1']:6.2f}")

    if not args.skip_model and MODEL.exists():
        report["model"] = model_pass(pool, isa, args.repeats)
        r = report["model"]
        print(f"\n(c) {r['model']}: {r['tensors']} 2-D tensors, {r['bytes'] / 2**20:.0f} MB, M=1")
        print(f"matmul {r['matmul_ms']:.1f} ms = {r['matmul_gbs']:.2f} GB/s; plain read {r['read_gbs']:.2f} GB/s, "
              f"ratio {r['ratio']:.2f}; read with prefetch {r['read_prefetch_gbs']:.2f} GB/s, "
              f"ratio {r['ratio_prefetch']:.2f}")

    out_dir = pathlib.Path(__file__).resolve().parent / "out"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "matmul.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
