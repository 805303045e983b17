"""duet's GEMV kernels beside llama.cpp's, on the same bytes in one process: M = 1
over a matrix that stays in cache (the kernels' arithmetic) and over one far bigger
than the caches (their use of memory bandwidth), per K-quant type, on 1 and 2
threads. llama.cpp's side is its own vec_dot from the libggml-cpu.so that
llama-cpp-python ships, called per row by bench/ggml_rows.c. Prints a table and
writes bench/out/kernels.json.

    PYTHONPATH=python python bench/bench_kernels.py [--repeats 7]
"""
import argparse
import ctypes
import json
import pathlib
import subprocess
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
from bench_matmul import best_time  # noqa: E402
from duet import _core  # noqa: E402
from quant_blocks import Q4_0, Q5_0, Q8_0, Q4_K, Q6_K, random_rows, row_bytes  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "out"
# type -> (ggml's vec_dot symbol, the quantizer of its activation row)
GGML_KERNELS = {Q4_K: ("ggml_vec_dot_q4_K_q8_K", "quantize_row_q8_K"),
                Q6_K: ("ggml_vec_dot_q6_K_q8_K", "quantize_row_q8_K"),
                Q5_0: ("ggml_vec_dot_q5_0_q8_0", "quantize_row_q8_0"),
                Q8_0: ("ggml_vec_dot_q8_0_q8_0", "quantize_row_q8_0"),
                Q4_0: ("ggml_vec_dot_q4_0_q8_0", "quantize_row_q8_0")}
ACT_BYTES_PER_ELEMENT = {"quantize_row_q8_K": 292 / 256, "quantize_row_q8_0": 34 / 32}


def ggml_library() -> ctypes.CDLL:
    import llama_cpp
    lib_dir = pathlib.Path(llama_cpp.__file__).parent / "lib"
    ctypes.CDLL(str(lib_dir / "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(str(lib_dir / "libggml-cpu.so"), mode=ctypes.RTLD_GLOBAL)
    lib.ggml_cpu_init()
    return lib


def rows_shim() -> ctypes.CDLL:
    """bench/ggml_rows.c, compiled here: plain C, no ISA flags (it only loops)."""
    OUT.mkdir(exist_ok=True)
    so = OUT / "ggml_rows.so"
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-pthread", str(HERE / "ggml_rows.c"), "-o", str(so)],
                   check=True)
    shim = ctypes.CDLL(str(so))
    shim.ggml_rows.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int64,
                               ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    return shim


def ggml_gemv(ggml, shim, type_id, w, rows, cols, x, n_threads):
    """A function running llama.cpp's GEMV of w [rows, cols] by x [cols]; its output."""
    dot_name, quantize_name = GGML_KERNELS[type_id]
    dot = ctypes.cast(getattr(ggml, dot_name), ctypes.c_void_p).value
    quantize = getattr(ggml, quantize_name)
    quantize.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    act = np.empty(int(cols * ACT_BYTES_PER_ELEMENT[quantize_name]), np.uint8)
    out = np.empty(rows, np.float32)

    def run():
        quantize(x.ctypes.data, act.ctypes.data, cols)  # per call, as duet's matmul does
        shim.ggml_rows(dot, cols, w.ctypes.data, row_bytes(type_id, cols), rows, act.ctypes.data,
                       out.ctypes.data, n_threads)
    return run, out


def compare(ggml, shim, type_id, mbytes, cols, n_threads, repeats, rng):
    rows = max(n_threads, int(mbytes * 2**20) // row_bytes(type_id, cols))
    w = random_rows(type_id, rows, cols, rng)
    x = rng.standard_normal(cols).astype(np.float32)
    pool = _core.ThreadPool(n_threads)
    ours = np.empty((1, rows), np.float32)
    t_duet = best_time(lambda: _core.matmul(type_id, w, rows, cols, x[None, :], pool, "", ours), repeats)
    run_ggml, theirs = ggml_gemv(ggml, shim, type_id, w, rows, cols, x, n_threads)
    t_ggml = best_time(run_ggml, repeats)
    # Same bytes, same activation: the two must agree (else the comparison is void);
    # not bit for bit, as ggml keeps the Q8_0 activation scale in f16 and duet in f32.
    error = np.linalg.norm(ours[0] - theirs) / np.linalg.norm(theirs)
    assert error < 1e-2, f"duet and llama.cpp disagree on {_core.type_traits(type_id)['name']}: {error:.3g}"
    return {"type": _core.type_traits(type_id)["name"], "threads": n_threads, "mbytes": w.nbytes / 2**20,
            "rows": rows, "cols": cols, "duet_gbs": w.nbytes / t_duet / 1e9, "ggml_gbs": w.nbytes / t_ggml / 1e9,
            "ratio": t_ggml / t_duet}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    ggml, shim = ggml_library(), rows_shim()
    rng = np.random.default_rng(0)
    results = []
    print(f"isa={_core.isa_default()}; ratio = llama.cpp time / duet time (>1: duet faster)")
    print(f"{'type':6} {'thr':>3} {'MB':>6} {'duet GB/s':>10} {'ggml GB/s':>10} {'ratio':>6}")
    for type_id in GGML_KERNELS:
        # In L2 on one thread (the arithmetic; ggml_rows starts its threads per call,
        # too slow to time a quarter megabyte), then far beyond the L3.
        for n_threads, mbytes in ((1, 0.25), (1, 96), (2, 96)):
            r = compare(ggml, shim, type_id, mbytes, 1536, n_threads, args.repeats, rng)
            results.append(r)
            print(f"{r['type']:6} {n_threads:3d} {r['mbytes']:6.2f} {r['duet_gbs']:10.2f} {r['ggml_gbs']:10.2f} "
                  f"{r['ratio']:6.2f}", flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "kernels.json").write_text(json.dumps({"isa": _core.isa_default(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
