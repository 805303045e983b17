"""The quantized kernels (duet._core) against plain references: gguf's numpy
dequantization, numpy quantizers written from the format definitions, and float64
matrix products; plus SIMD-vs-scalar agreement and batch invariance."""
import ctypes
import pathlib

import gguf
import numpy as np
import pytest

from duet import _core
from quant_blocks import (ALL_TYPES, BLOCK, FLOAT_TYPES, Q4_0, Q4_K, Q5_0, Q5_K, Q6_K, Q8_0, cols_for,
                          random_rows, row_bytes)

ISAS = _core.isa_runnable()
SIMD_ISAS = [isa for isa in ISAS if isa != "scalar"]
K_TYPES = {12, 13, 14}


def act_format(type_id):
    if type_id in FLOAT_TYPES:
        return None
    return "q8_256" if type_id in K_TYPES else "q8_32"


def act_dequantize(fmt, raw):
    """float64 values of a quantized activation row (q8_32 or q8_256 bytes)."""
    elems, size = (32, 36) if fmt == "q8_32" else (256, 292)
    blocks = raw.reshape(-1, size)
    d = blocks[:, :4].copy().view(np.float32).astype(np.float64)
    qs = blocks[:, 4:4 + elems].copy().view(np.int8).astype(np.float64)
    return (d * qs).reshape(-1)


def reference_q8_32(x):
    """Blocks of 32: d = f16(amax / 127), q = clip(rne(x * (127 / amax)), -127, 127)."""
    out = []
    for block in x.reshape(-1, 32):
        amax = np.float32(np.max(np.abs(block)))
        d = np.float32(np.float16(amax / np.float32(127)))
        inverse = np.float32(0) if amax == 0 else np.float32(127) / amax
        q = np.clip(np.rint(block * inverse), -127, 127).astype(np.int8)
        out.append(np.frombuffer(np.float32(d).tobytes() + q.tobytes(), np.uint8))
    return np.concatenate(out)


def reference_q8_256(x):
    """ggml's Q8_K: iscale = -127 / (signed value of largest magnitude)."""
    out = []
    for block in x.reshape(-1, 256):
        amax_index = int(np.argmax(np.abs(block)))
        if block[amax_index] == 0:
            out.append(np.zeros(292, np.uint8))
            continue
        iscale = np.float32(-127) / block[amax_index]
        q = np.minimum(127, np.rint(iscale * block)).astype(np.int8)
        bsums = q.reshape(16, 16).astype(np.int16).sum(axis=1).astype(np.int16)
        d = np.float32(1) / iscale
        out.append(np.frombuffer(np.float32(d).tobytes() + q.tobytes() + bsums.tobytes(), np.uint8))
    return np.concatenate(out)


def activations(rng, m, cols):
    x = rng.standard_normal((m, cols)).astype(np.float32)
    return x


def reference_matmul(type_id, w, rows, cols, x):
    """float64 W @ (the activations as the kernel sees them)."""
    w_f = gguf.quants.dequantize(w.reshape(rows, -1), gguf.GGMLQuantizationType(type_id)).astype(np.float64)
    fmt = act_format(type_id)
    if fmt is None:
        x_f = x.astype(np.float64)
    else:
        x_f = np.stack([act_dequantize(fmt, _core.quantize_act(fmt, row, "scalar")) for row in x])
    return x_f @ w_f.T, np.abs(x_f) @ np.abs(w_f).T


def kquant_ints(type_id, w, rows, cols):
    """A K-quant matrix's integers, from the format definitions: d, dmin [rows, nb]
    (dmin 0 for Q6_K), scales, mins [rows, nb, sub-blocks], q [rows, nb, 256] (q - 32
    for Q6_K)."""
    nb = cols // 256
    blocks = w.reshape(rows, nb, -1)

    def f16(offset):
        return blocks[..., offset:offset + 2].copy().view(np.float16)[..., 0].astype(np.float32)

    if type_id == Q6_K:
        ql, qh = blocks[..., :128].astype(np.int64), blocks[..., 128:192].astype(np.int64)
        q = np.zeros((rows, nb, 256), np.int64)
        for half in range(2):
            low, high = ql[..., 64 * half:64 * half + 64], qh[..., 32 * half:32 * half + 32]
            for k, (src, shift) in enumerate(((low[..., :32], 0), (low[..., 32:], 0), (low[..., :32], 4),
                                              (low[..., 32:], 4))):
                q[..., 128 * half + 32 * k:128 * half + 32 * k + 32] = (
                    ((src >> shift) & 0xF) | (((high >> (2 * k)) & 3) << 4))
        scales = blocks[..., 192:208].copy().view(np.int8).astype(np.int64)
        return f16(208), np.zeros((rows, nb), np.float32), scales, np.zeros_like(scales), q - 32
    packed = blocks[..., 4:16].astype(np.int64)
    scales, mins = np.zeros((rows, nb, 8), np.int64), np.zeros((rows, nb, 8), np.int64)
    for j in range(4):
        scales[..., j], mins[..., j] = packed[..., j] & 63, packed[..., j + 4] & 63
        scales[..., j + 4] = (packed[..., j + 8] & 0xF) | ((packed[..., j] >> 6) << 4)
        mins[..., j + 4] = (packed[..., j + 8] >> 4) | ((packed[..., j + 4] >> 6) << 4)
    # Q5_K keeps the 5th bits (qh, 32 bytes) between the scales and the nibbles.
    qh = blocks[..., 16:48].astype(np.int64) if type_id == Q5_K else np.zeros((rows, nb, 32), np.int64)
    qs = blocks[..., 48:176].astype(np.int64) if type_id == Q5_K else blocks[..., 16:144].astype(np.int64)
    q = np.zeros((rows, nb, 256), np.int64)
    for c in range(4):
        q[..., 64 * c:64 * c + 32] = (qs[..., 32 * c:32 * c + 32] & 0xF) | (((qh >> (2 * c)) & 1) << 4)
        q[..., 64 * c + 32:64 * c + 64] = (qs[..., 32 * c:32 * c + 32] >> 4) | (((qh >> (2 * c + 1)) & 1) << 4)
    return f16(0), f16(2), scales, mins, q


def fma32(a, b, c):
    """float32 a * b + c rounded once: the product is exact in float64, the sum
    rounded there and then to float32 (the two roundings agree but for ties)."""
    return (np.float64(a) * np.float64(b) + np.float64(c)).astype(np.float32)


def reference_prompt_order(type_id, w, rows, cols, x):
    """llama.cpp's prompt-batch order for K-quants (its tiled matmul on x86, checked
    bit for bit against llama.cpp's batched output on the real models): per block the
    exact integer sums, then d * scaled - dmin * mins rounded once, then one FMA with
    the activation block's scale into the row's sum."""
    d, dmin, scales, mins, q = kquant_ints(type_id, w, rows, cols)
    sub = 256 // scales.shape[-1]
    out = np.zeros((len(x), rows), np.float32)
    for m, row in enumerate(x):
        a = _core.quantize_act("q8_256", row, "scalar").reshape(-1, 292)
        ad = a[:, :4].copy().view(np.float32)[:, 0]
        qs = a[:, 4:260].copy().view(np.int8).astype(np.int64)
        bsums = a[:, 260:].copy().view(np.int16).astype(np.int64)
        scaled = (scales * (q * qs).reshape(rows, -1, 256 // sub, sub).sum(-1)).sum(-1)
        mins_sum = (mins * bsums.reshape(-1, 8, 2).sum(-1)).sum(-1) if type_id != Q6_K else np.zeros_like(scaled)
        for b in range(cols // 256):
            block = fma32(-dmin[:, b], mins_sum[:, b].astype(np.float32), d[:, b] * scaled[:, b].astype(np.float32))
            out[m] = fma32(block, ad[b], out[m])
    return out


def reference_block_order(type_id, w, rows, cols, x):
    """The block order of a 32-element format (any-order rows): per block the exact
    integer dot product, then one FMA with d * the activation block's d into the
    row's sum, blocks in order."""
    block_bytes = row_bytes(type_id, 32)
    d = w.reshape(rows, -1, block_bytes)[..., :2].copy().view(np.float16)[..., 0].astype(np.float32)
    w_f = gguf.quants.dequantize(w.reshape(rows, -1), gguf.GGMLQuantizationType(type_id)).reshape(rows, -1, 32)
    q = np.rint(np.divide(w_f, d[..., None], out=np.zeros_like(w_f), where=d[..., None] != 0)).astype(np.int64)
    out = np.zeros((len(x), rows), np.float32)
    for m, row in enumerate(x):
        a = _core.quantize_act("q8_32", row, "scalar").reshape(-1, 36)
        ad = a[:, :4].copy().view(np.float32)[:, 0]
        sums = (q * a[:, 4:].copy().view(np.int8).astype(np.int64)).sum(-1)
        for b in range(cols // 32):
            out[m] = fma32(d[:, b] * ad[b], sums[:, b].astype(np.float32), out[m])
    return out


def assert_close_to_reference(got, ref, scale):
    # float32 accumulation of per-block products: error bounded relative to sum |w*x|.
    np.testing.assert_array_less(np.abs(got - ref), 2e-5 * scale + 1e-30)


# ---- formats ------------------------------------------------------------------

def test_type_traits_match_gguf():
    for type_id in ALL_TYPES:
        t = _core.type_traits(type_id)
        block_elems, block_bytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(type_id)]
        assert (t["block_elems"], t["block_bytes"]) == (block_elems, block_bytes)
        assert t["name"] == gguf.GGMLQuantizationType(type_id).name


@pytest.mark.parametrize("type_id", [3, 10, 11, 15, 23, 99, -1])
def test_unsupported_type_raises(type_id):
    with pytest.raises(ValueError, match="unsupported tensor type"):
        _core.type_traits(type_id)
    with pytest.raises(ValueError, match="unsupported tensor type"):
        _core.dequantize(type_id, np.zeros(64, np.uint8), 32)


# ---- dequantize -----------------------------------------------------------------

@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("type_id", ALL_TYPES)
def test_dequantize_matches_gguf(type_id, isa):
    rng = np.random.default_rng(type_id)
    cols = cols_for(type_id) * 4
    w = random_rows(type_id, 3, cols, rng)
    want = gguf.quants.dequantize(w, gguf.GGMLQuantizationType(type_id)).reshape(-1)
    got = _core.dequantize(type_id, w, 3 * cols, isa)
    np.testing.assert_array_equal(got.view(np.uint32), want.astype(np.float32).view(np.uint32))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("type_id", [Q4_0, Q5_0, Q8_0])
def test_dequantize_of_gguf_quantized_floats(type_id, isa):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 32 * 7)).astype(np.float32)
    qtype = gguf.GGMLQuantizationType(type_id)
    w = gguf.quants.quantize(x, qtype)
    got = _core.dequantize(type_id, w, x.size, isa)
    np.testing.assert_array_equal(got, gguf.quants.dequantize(w, qtype).reshape(-1))


def test_dequantize_wrong_size_raises():
    with pytest.raises(ValueError, match="expected 144"):
        _core.dequantize(Q4_K, np.zeros(143, np.uint8), 256)
    with pytest.raises(ValueError, match="not a multiple"):
        _core.dequantize(Q4_K, np.zeros(144, np.uint8), 200)


def test_dequantize_rejects_non_contiguous_and_wrong_dtype():
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.dequantize(Q8_0, np.zeros(68, np.uint8)[::2], 32)
    with pytest.raises(TypeError, match="uint8"):
        _core.dequantize(Q8_0, np.zeros(34, np.int16), 32)


# ---- activation quantizers ------------------------------------------------------

def tricky_activations(rng, n):
    x = rng.standard_normal(n).astype(np.float32) * np.float32(3)
    x[:32] = 0.0                      # an all-zero block
    x[256:256 + 16] = 2.5             # ties for the largest magnitude, both signs
    x[256 + 16:256 + 32] = -2.5
    x[512:544] = np.float32(1e-30)    # d rounds to zero in f16
    x[768:1024] = rng.uniform(-1, 1, 256).astype(np.float32)
    x[770], x[773], x[1000] = -2.0, 2.0, 2.0  # the first of the opposite maxima sets the sign of d
    return x


@pytest.mark.parametrize("isa", ISAS)
def test_quantize_q8_32_matches_reference(isa):
    x = tricky_activations(np.random.default_rng(1), 1024)
    np.testing.assert_array_equal(_core.quantize_act("q8_32", x, isa), reference_q8_32(x))


@pytest.mark.parametrize("isa", ISAS)
def test_quantize_q8_256_matches_reference(isa):
    x = tricky_activations(np.random.default_rng(2), 1024)
    np.testing.assert_array_equal(_core.quantize_act("q8_256", x, isa), reference_q8_256(x))


def ggml_cpu_library():
    """llama.cpp's CPU library as llama-cpp-python ships it, or a skip."""
    llama_cpp = pytest.importorskip("llama_cpp")
    lib_dir = pathlib.Path(llama_cpp.__file__).parent / "lib"
    ctypes.CDLL(str(lib_dir / "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(str(lib_dir / "libggml-cpu.so"), mode=ctypes.RTLD_GLOBAL)
    lib.ggml_cpu_init()
    return lib


@pytest.mark.parametrize("isa", ISAS)
def test_quantize_q8_32_matches_llama_cpp(isa):
    """The same bytes as llama.cpp's own Q8_0 activation quantizer (its block holds d
    in f16 before the 32 values; ours holds d as f32)."""
    ggml = ggml_cpu_library()
    x = tricky_activations(np.random.default_rng(3), 1024)
    theirs = np.empty(len(x) // 32 * 34, np.uint8)
    ggml.quantize_row_q8_0(ctypes.c_void_p(x.ctypes.data), ctypes.c_void_p(theirs.ctypes.data), ctypes.c_int64(len(x)))
    theirs = theirs.reshape(-1, 34)
    ours = _core.quantize_act("q8_32", x, isa).reshape(-1, 36)
    np.testing.assert_array_equal(ours[:, 4:], theirs[:, 2:])
    np.testing.assert_array_equal(ours[:, :4].copy().view(np.float32)[:, 0],
                                  theirs[:, :2].copy().view(np.float16)[:, 0].astype(np.float32))


def test_quantize_q4_0_matches_gguf():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((40, 96)).astype(np.float32) * rng.uniform(0.01, 10, (40, 1)).astype(np.float32)
    x[0] = 0.0                       # zero blocks: d = 0
    x[1, :32] = np.tile([-2.0, 2.0], 16)  # ties of magnitude: the first wins
    x[2, 32:64] = 1e-30              # d underflows f16
    expected = gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q4_0)
    assert np.array_equal(_core.quantize_q4_0(x), expected.reshape(-1))


def test_quantize_q4_0_bad_input():
    with pytest.raises(ValueError, match="multiple of 32"):
        _core.quantize_q4_0(np.zeros(40, dtype=np.float32))
    with pytest.raises((ValueError, TypeError)):
        _core.quantize_q4_0(np.zeros(64, dtype=np.float64))


def test_quantize_act_bad_input():
    with pytest.raises(ValueError, match="multiple of 256"):
        _core.quantize_act("q8_256", np.zeros(100, np.float32))
    with pytest.raises(ValueError, match="format"):
        _core.quantize_act("q4", np.zeros(256, np.float32))


# ---- vec_dot and matmul ---------------------------------------------------------

@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("type_id", ALL_TYPES)
def test_vec_dot_matches_float64(type_id, isa):
    rng = np.random.default_rng(100 + type_id)
    cols = cols_for(type_id)
    w = random_rows(type_id, 1, cols, rng)[0]
    x = activations(rng, 8, cols)
    got = _core.vec_dot(type_id, w, x, isa)
    ref, scale = reference_matmul(type_id, w, 1, cols, x)
    assert_close_to_reference(got, ref[:, 0], scale[:, 0])


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("type_id", ALL_TYPES)
@pytest.mark.parametrize("rows", [1, 7, 33, 131])
def test_matmul_matches_float64(type_id, isa, rows):
    rng = np.random.default_rng(rows * 1000 + type_id)
    cols = cols_for(type_id)
    w = random_rows(type_id, rows, cols, rng)
    x = activations(rng, 11, cols)
    got = _core.matmul(type_id, w, rows, cols, x, _core.ThreadPool(2), isa)
    ref, scale = reference_matmul(type_id, w, rows, cols, x)
    assert_close_to_reference(got, ref, scale)


@pytest.mark.parametrize("isa", SIMD_ISAS)
@pytest.mark.parametrize("type_id", ALL_TYPES)
def test_simd_matmul_close_to_scalar(type_id, isa):
    rng = np.random.default_rng(5 + type_id)
    rows, cols = 33, cols_for(type_id) * 2
    w = random_rows(type_id, rows, cols, rng)
    x = activations(rng, 9, cols)
    pool = _core.ThreadPool(2)
    simd = _core.matmul(type_id, w, rows, cols, x, pool, isa)
    scalar = _core.matmul(type_id, w, rows, cols, x, pool, "scalar")
    _, scale = reference_matmul(type_id, w, rows, cols, x)
    assert_close_to_reference(simd, scalar, scale)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("type_id", ALL_TYPES)
def test_matmul_batch_invariant(type_id, isa):
    rng = np.random.default_rng(50 + type_id)
    rows, cols = 37, cols_for(type_id)
    w = random_rows(type_id, rows, cols, rng)
    x = activations(rng, 17, cols)
    pool = _core.ThreadPool(2)
    single = np.concatenate([_core.matmul(type_id, w, rows, cols, x[m:m + 1], pool, isa) for m in range(17)])
    for m_rows in range(1, 18):
        got = _core.matmul(type_id, w, rows, cols, x[:m_rows], pool, isa)
        np.testing.assert_array_equal(got.view(np.uint32), single[:m_rows].view(np.uint32))
    # The same rows in another order and among other rows.
    order = rng.permutation(17)
    others = activations(rng, 5, cols)
    mixed = np.concatenate([others[:2], x[order], others[2:]])
    got = _core.matmul(type_id, w, rows, cols, mixed, pool, isa)
    np.testing.assert_array_equal(got[2:19].view(np.uint32), single[order].view(np.uint32))


@pytest.mark.parametrize("type_id", [Q4_0, Q4_K])
def test_matmul_batch_quantized_across_threads_is_invariant(type_id):
    """A batch big enough that its activation rows are quantized by both threads
    (32768 elements or more; one row is quantized by the caller) gives each row the
    bits it has alone."""
    rng = np.random.default_rng(80 + type_id)
    rows, cols, m = 21, 256 * 9, 19
    assert m * cols >= 32768 > cols
    w = random_rows(type_id, rows, cols, rng)
    x = activations(rng, m, cols)
    pool = _core.ThreadPool(2)
    single = np.concatenate([_core.matmul(type_id, w, rows, cols, x[i:i + 1], pool) for i in range(m)])
    got = _core.matmul(type_id, w, rows, cols, x, pool)
    np.testing.assert_array_equal(got.view(np.uint32), single.view(np.uint32))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("type_id", sorted(K_TYPES))
@pytest.mark.parametrize("rows,m", [(29, 10), (77, 70)])
def test_prompt_rows_sum_in_llama_cpp_prompt_order(type_id, isa, rows, m):
    """Prompt rows of a K-quant matmul have the bits of llama.cpp's prompt-batch
    order; decoded rows keep vec_dot's, which differ in the last bits. Row counts
    that are not whole prompt tiles (8 or 16 rows), batches above one tile call's
    64 rows."""
    rng = np.random.default_rng(70 + type_id + m)
    cols = cols_for(type_id)
    w = random_rows(type_id, rows, cols, rng)
    x = activations(rng, m, cols)
    pool = _core.ThreadPool(2)
    got = _core.matmul(type_id, w, rows, cols, x, pool, isa, prompt=np.ones(m, np.uint8))
    np.testing.assert_array_equal(got.view(np.uint32), reference_prompt_order(type_id, w, rows, cols, x).view(np.uint32))
    decoded = _core.matmul(type_id, w, rows, cols, x, pool, isa)
    assert np.any(decoded != got), "the two orders should differ somewhere"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("type_id", ALL_TYPES)
def test_matmul_batch_invariant_with_prompt_rows(type_id, isa):
    """Prompt and decoded rows mixed (a tree whose root is a prompt token): each
    row's result is its result alone with its own flag. Types without a prompt
    order give prompt rows vec_dot's bits."""
    rng = np.random.default_rng(60 + type_id)
    rows, cols = 23, cols_for(type_id)
    w = random_rows(type_id, rows, cols, rng)
    x = activations(rng, 12, cols)
    flags = (rng.random(12) < 0.5).astype(np.uint8)
    pool = _core.ThreadPool(2)
    single = np.concatenate([_core.matmul(type_id, w, rows, cols, x[m:m + 1], pool, isa, prompt=flags[m:m + 1])
                             for m in range(12)])
    got = _core.matmul(type_id, w, rows, cols, x, pool, isa, prompt=flags)
    np.testing.assert_array_equal(got.view(np.uint32), single.view(np.uint32))
    if type_id not in K_TYPES or isa not in ("scalar", "avx2", "avx512", "amx"):
        plain = _core.matmul(type_id, w, rows, cols, x, pool, isa)
        np.testing.assert_array_equal(got.view(np.uint32), plain.view(np.uint32))


def test_matmul_prompt_flags_are_checked():
    w = random_rows(Q4_K, 2, 256, np.random.default_rng(0))
    with pytest.raises(ValueError, match="prompt"):
        _core.matmul(Q4_K, w, 2, 256, np.zeros((3, 256), np.float32), _core.ThreadPool(1), prompt=np.ones(2, np.uint8))
    with pytest.raises(ValueError, match="0 .decoded., 1 .prompt. or 2"):
        _core.matmul(Q4_K, w, 2, 256, np.zeros((2, 256), np.float32), _core.ThreadPool(1), prompt=np.full(2, 3, np.uint8))


# Paths with a block-order tile for the 32-element formats' any-order rows.
BLOCK_ORDER_ISAS = {"avx2", "avx512", "amx"}
ANY_ORDER = np.uint8(_core.ROW_ANY_ORDER)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("type_id", ALL_TYPES)
@pytest.mark.parametrize("m", [3, 12, 70])
def test_any_order_rows_match_float64(type_id, isa, m):
    """Any-order rows (a drafter's) take whichever kernels are fastest for their
    batch: a GEMV, a tile in either llama.cpp order, or the block order. Each is
    as close to the exact product as the others."""
    rng = np.random.default_rng(90 + type_id + m)
    rows, cols = 37, cols_for(type_id)
    w = random_rows(type_id, rows, cols, rng)
    x = activations(rng, m, cols)
    got = _core.matmul(type_id, w, rows, cols, x, _core.ThreadPool(2), isa, prompt=np.full(m, ANY_ORDER))
    ref, scale = reference_matmul(type_id, w, rows, cols, x)
    assert_close_to_reference(got, ref, scale)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("type_id", [Q4_0, Q5_0, Q8_0])
@pytest.mark.parametrize("m", [9, 70])
def test_any_order_rows_of_32_element_formats_sum_in_block_order(type_id, isa, m):
    """More any-order rows than a GEMV takes: on a path with the block-order tile,
    the weight rows of whole tiles (16 on AVX-512, 8 on AVX2: 32 of the 37
    either way) sum block by block, with the same bits on every such path (and
    differ from vec_dot's order somewhere), the last rows in the prompt order;
    elsewhere every row has the prompt order's bits. Decoded rows beside them keep
    their own."""
    rng = np.random.default_rng(110 + type_id + m)
    rows, cols = 37, cols_for(type_id) * 3
    w = random_rows(type_id, rows, cols, rng)
    x = activations(rng, m + 2, cols)
    pool = _core.ThreadPool(2)
    flags = np.full(m + 2, ANY_ORDER)
    flags[-2:] = 0
    got = _core.matmul(type_id, w, rows, cols, x, pool, isa, prompt=flags)
    prompt_order = _core.matmul(type_id, w, rows, cols, x, pool, isa, prompt=np.ones(m + 2, np.uint8))
    tiled = 32 if isa in BLOCK_ORDER_ISAS else 0
    expected = prompt_order[:m].copy()
    if tiled:
        expected[:, :tiled] = reference_block_order(type_id, w[:tiled], tiled, cols, x[:m])
    np.testing.assert_array_equal(got[:m].view(np.uint32), expected.view(np.uint32))
    decoded = _core.matmul(type_id, w, rows, cols, x[-2:], pool, isa)
    np.testing.assert_array_equal(got[m:].view(np.uint32), decoded.view(np.uint32))
    if tiled:
        assert np.any(got[:m, :tiled] != prompt_order[:m, :tiled]), "the block order should differ somewhere"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("type_id", ALL_TYPES)
@pytest.mark.parametrize("rows", [1, 3, 5, 259])
def test_matmul_one_row_has_vec_dot_bits(type_id, isa, rows):
    """M = 1 runs a path's GEMV kernel where it has one: every weight row's result
    must have the bits of vec_dot (the M > 1 kernel) on that row, whatever the row
    count and however the threads split the rows."""
    rng = np.random.default_rng(rows * 10 + type_id)
    cols = cols_for(type_id)
    w = random_rows(type_id, rows, cols, rng)
    x = activations(rng, 8, cols)
    got = _core.matmul(type_id, w, rows, cols, x[:1], _core.ThreadPool(2), isa)[0]
    alone = np.array([_core.vec_dot(type_id, w[r], x[:1], isa)[0] for r in range(rows)], np.float32)
    reversed_x = np.ascontiguousarray(x[::-1])
    last_of_eight = np.array([_core.vec_dot(type_id, w[r], reversed_x, isa)[7] for r in range(rows)], np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), alone.view(np.uint32))
    np.testing.assert_array_equal(got.view(np.uint32), last_of_eight.view(np.uint32))


def test_matmul_writes_into_out():
    rng = np.random.default_rng(3)
    w = random_rows(Q4_K, 5, 256, rng)
    x = activations(rng, 2, 256)
    out = np.full((2, 5), np.nan, np.float32)
    result = _core.matmul(Q4_K, w, 5, 256, x, _core.ThreadPool(1), out=out)
    assert np.shares_memory(result, out)
    np.testing.assert_array_equal(out, _core.matmul(Q4_K, w, 5, 256, x, _core.ThreadPool(1)))


def test_matmul_bad_input_raises():
    rng = np.random.default_rng(4)
    w = random_rows(Q4_K, 5, 256, rng)
    x = activations(rng, 2, 256)
    pool = _core.ThreadPool(1)
    with pytest.raises(ValueError, match="w holds"):
        _core.matmul(Q4_K, w[:4], 5, 256, x, pool)
    with pytest.raises(ValueError, match="x must be 2-D"):
        _core.matmul(Q4_K, w, 5, 256, np.ascontiguousarray(x[:, :128]), pool)
    with pytest.raises(ValueError, match="out must be"):
        _core.matmul(Q4_K, w, 5, 256, x, pool, out=np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="cannot run|unknown ISA"):
        _core.matmul(Q4_K, w, 5, 256, x, pool, "avx512" if "avx512" not in ISAS else "neon")
    with pytest.raises(ValueError, match="unsupported tensor type"):
        _core.matmul(3, w, 5, 256, x, pool)


def test_vec_dot_bad_input_raises():
    w = np.zeros(row_bytes(Q8_0, 64), np.uint8)
    with pytest.raises(ValueError, match="w_row holds"):
        _core.vec_dot(Q8_0, w, np.zeros((1, 96), np.float32))
    with pytest.raises(ValueError, match="rows"):
        _core.vec_dot(Q8_0, w, np.zeros((9, 64), np.float32))


# ---- embedding and read_bytes ---------------------------------------------------

@pytest.mark.parametrize("type_id", ALL_TYPES)
def test_embedding_rows_are_dequantized_rows(type_id):
    rng = np.random.default_rng(9)
    n_vocab, n_embd = 11, cols_for(type_id)
    table = random_rows(type_id, n_vocab, n_embd, rng)
    ids = np.array([3, 0, 10, 3], np.int32)
    got = _core.embedding(type_id, table, n_vocab, n_embd, ids)
    want = gguf.quants.dequantize(table, gguf.GGMLQuantizationType(type_id))[ids]
    np.testing.assert_array_equal(got, want)


def test_embedding_bad_id_raises_index_error():
    table = random_rows(Q8_0, 4, 32, np.random.default_rng(0))
    with pytest.raises(IndexError, match="outside the vocabulary"):
        _core.embedding(Q8_0, table, 4, 32, np.array([1, 4], np.int32))
    with pytest.raises(IndexError):
        _core.embedding(Q8_0, table, 4, 32, np.array([-1], np.int32))


@pytest.mark.parametrize("n", [0, 5, 4096, 100_003])
def test_read_bytes_is_xor_of_words(n):
    buf = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8)
    padded = np.zeros((n + 7) // 8 * 8, np.uint8)
    padded[:n] = buf
    want = int(np.bitwise_xor.reduce(padded.view(np.uint64))) if n else 0
    assert _core.read_bytes(buf, _core.ThreadPool(2)) == want


@pytest.mark.parametrize("isa", _core.isa_runnable())
@pytest.mark.parametrize("fmt", ["q8_32", "q8_256"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_activations_never_crash(isa, fmt, bad):
    """A damaged model can feed NaN or inf into a matmul: the bytes are then
    meaningless, but quantizing them must stay inside the block (found by fuzzing)."""
    x = np.random.default_rng(0).standard_normal(512).astype(np.float32)
    x[[3, 300]] = bad
    assert _core.quantize_act(fmt, x, isa).size > 0
