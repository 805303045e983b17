"""Random valid weight rows of every supported ggml type, for the kernel tests and
benchmarks: random bytes with the f16 scale fields replaced by finite values."""
import numpy as np

F32, F16, Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K, BF16 = 0, 1, 2, 6, 8, 12, 13, 14, 30
ALL_TYPES = [F32, F16, BF16, Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K]
FLOAT_TYPES = {F32, F16, BF16}

# Byte offsets of the f16 scale fields inside each block.
SCALE_OFFSETS = {Q4_0: [0], Q5_0: [0], Q8_0: [0], Q4_K: [0, 2], Q5_K: [0, 2], Q6_K: [208]}
BLOCK = {F32: (1, 4), F16: (1, 2), BF16: (1, 2), Q4_0: (32, 18), Q5_0: (32, 22), Q8_0: (32, 34),
         Q4_K: (256, 144), Q5_K: (256, 176), Q6_K: (256, 210)}


def row_bytes(type_id: int, cols: int) -> int:
    elems, nbytes = BLOCK[type_id]
    assert cols % elems == 0
    return cols // elems * nbytes


def random_rows(type_id: int, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [rows, row_bytes] holding rows x cols weights of type_id."""
    if type_id == F32:
        return rng.standard_normal((rows, cols), dtype=np.float32).view(np.uint8)
    if type_id == F16:
        return rng.standard_normal((rows, cols)).astype(np.float16).view(np.uint8)
    if type_id == BF16:
        bits = rng.standard_normal((rows, cols), dtype=np.float32).view(np.uint32) >> 16
        return bits.astype(np.uint16).view(np.uint8)
    elems, nbytes = BLOCK[type_id]
    blocks = rng.integers(0, 256, size=(rows, cols // elems, nbytes), dtype=np.uint8)
    for offset in SCALE_OFFSETS[type_id]:
        scale = rng.uniform(-0.05, 0.05, size=blocks.shape[:2]).astype(np.float16)
        blocks[:, :, offset:offset + 2] = scale.view(np.uint8).reshape(*blocks.shape[:2], 2)
    return blocks.reshape(rows, -1)


def cols_for(type_id: int) -> int:
    """A row length that is a valid multiple of the block and of no SIMD tile."""
    if type_id in FLOAT_TYPES:
        return 157
    return 256 * 3 if BLOCK[type_id][0] == 256 else 32 * 5
