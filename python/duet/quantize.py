"""Reference (numpy) quantizers producing ggml block bytes.

gguf.quants can quantize F32/F16/BF16/Q4_0/Q5_0/Q8_0 but not the K-quants, so Q4_K, Q5_K
and Q6_K are done here. They are simple min/max (or absmax) quantizers, not llama.cpp's
error-minimising search: what matters is that the bytes follow the block format exactly
(reference/kernels-and-gguf.md §2), so `gguf.quants.dequantize` reads back an approximation
of the input. Used to build test models, not to make good quantized models.
"""
from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType
from gguf import quants as gguf_quants

QK_K = 256
K_QUANT_TYPES = ("Q4_K", "Q5_K", "Q6_K")


def _blocks(values: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """[..., n] float -> ([n_blocks, 256] float32, leading shape); n must be a multiple of 256."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 0 or values.shape[-1] % QK_K:
        raise ValueError(f"K-quants need the last dimension to be a multiple of {QK_K}, got shape {values.shape}")
    return values.reshape(-1, QK_K), values.shape[:-1]


def _f16_bytes(values: np.ndarray) -> np.ndarray:
    """[n] float -> [n, 2] uint8 (IEEE half, little-endian)."""
    return values.astype("<f2").view(np.uint8).reshape(-1, 2)


def _as_f16(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float16).astype(np.float32)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator != 0)


def _pack_k_scales(scales: np.ndarray, mins: np.ndarray) -> np.ndarray:
    """[nb, 8] 6-bit scales and mins -> [nb, 12] bytes (inverse of get_scale_min_k4)."""
    packed = np.empty((scales.shape[0], 12), dtype=np.uint8)
    packed[:, 0:4] = scales[:, 0:4] | ((scales[:, 4:8] >> 4) << 6)
    packed[:, 4:8] = mins[:, 0:4] | ((mins[:, 4:8] >> 4) << 6)
    packed[:, 8:12] = (scales[:, 4:8] & 0xF) | ((mins[:, 4:8] & 0xF) << 4)
    return packed


def _affine_k_quant(blocks: np.ndarray, q_max: int):
    """Per 32-value sub-block min/max codes for Q4_K (q_max 15) and Q5_K (q_max 31).

    Returns q [nb, 256] uint8 codes, d [nb], dmin [nb], sc [nb, 8], m [nb, 8] (6-bit)."""
    sub = blocks.reshape(-1, 8, 32)
    # y = d*sc*q - dmin*m with m >= 0, so the offset can only move values down: include 0.
    low = np.minimum(sub.min(axis=2), 0.0)
    high = np.maximum(sub.max(axis=2), 0.0)
    sub_scale = (high - low) / q_max
    sub_min = -low
    d = _as_f16(sub_scale.max(axis=1) / 63)
    dmin = _as_f16(sub_min.max(axis=1) / 63)
    sc = np.clip(np.rint(_safe_divide(sub_scale, d[:, None])), 0, 63).astype(np.uint8)
    m = np.clip(np.rint(_safe_divide(sub_min, dmin[:, None])), 0, 63).astype(np.uint8)
    step = d[:, None] * sc
    offset = dmin[:, None] * m
    q = np.rint(_safe_divide(sub + offset[:, :, None], np.broadcast_to(step[:, :, None], sub.shape)))
    q = np.clip(q, 0, q_max).astype(np.uint8).reshape(-1, QK_K)
    return q, d, dmin, sc, m


def _pack_nibbles_q4k(q: np.ndarray) -> np.ndarray:
    """[nb, 256] codes -> [nb, 128]: chunk c low nibbles = elements 64c..+31, high = 64c+32..+63."""
    chunks = q.reshape(-1, 4, 2, 32) & 0xF
    return (chunks[:, :, 0, :] | (chunks[:, :, 1, :] << 4)).reshape(-1, 128)


def quantize_q4_k(values: np.ndarray) -> np.ndarray:
    """[..., n] float -> [..., n/256*144] uint8 Q4_K blocks."""
    blocks, lead = _blocks(values)
    q, d, dmin, sc, m = _affine_k_quant(blocks, 15)
    out = np.concatenate([_f16_bytes(d), _f16_bytes(dmin), _pack_k_scales(sc, m), _pack_nibbles_q4k(q)], axis=1)
    return out.reshape(*lead, -1)


def quantize_q5_k(values: np.ndarray) -> np.ndarray:
    """[..., n] float -> [..., n/256*176] uint8 Q5_K blocks."""
    blocks, lead = _blocks(values)
    q, d, dmin, sc, m = _affine_k_quant(blocks, 31)
    high_bits = (q.reshape(-1, 8, 32) >> 4).astype(np.uint8)  # [nb, sub-block 2c or 2c+1, l]
    qh = np.zeros((q.shape[0], 32), dtype=np.uint8)
    for sub_block in range(8):
        qh |= high_bits[:, sub_block, :] << sub_block
    out = np.concatenate(
        [_f16_bytes(d), _f16_bytes(dmin), _pack_k_scales(sc, m), qh, _pack_nibbles_q4k(q)], axis=1
    )
    return out.reshape(*lead, -1)


def quantize_q6_k(values: np.ndarray) -> np.ndarray:
    """[..., n] float -> [..., n/256*210] uint8 Q6_K blocks (16 sub-blocks of 16, int8 scales)."""
    blocks, lead = _blocks(values)
    sub = blocks.reshape(-1, 16, 16)
    sub_scale = np.abs(sub).max(axis=2) / 31  # codes stay in -31..31 of the -32..31 range
    d = _as_f16(sub_scale.max(axis=1) / 127)
    sc = np.clip(np.rint(_safe_divide(sub_scale, d[:, None])), 0, 127).astype(np.int8)
    step = d[:, None] * sc
    q = np.rint(_safe_divide(sub, np.broadcast_to(step[:, :, None], sub.shape)))
    q = (np.clip(q, -32, 31) + 32).astype(np.uint8).reshape(-1, 2, 4, 32)  # [nb, half, quarter, l]
    ql = np.concatenate(
        [(q[:, :, 0] & 0xF) | ((q[:, :, 2] & 0xF) << 4), (q[:, :, 1] & 0xF) | ((q[:, :, 3] & 0xF) << 4)],
        axis=2,
    ).reshape(-1, 128)
    qh = ((q[:, :, 0] >> 4) | ((q[:, :, 1] >> 4) << 2) | ((q[:, :, 2] >> 4) << 4) | ((q[:, :, 3] >> 4) << 6))
    out = np.concatenate([ql, qh.reshape(-1, 64), sc.view(np.uint8), _f16_bytes(d)], axis=1)
    return out.reshape(*lead, -1)


_K_QUANTIZERS = {
    GGMLQuantizationType.Q4_K: quantize_q4_k,
    GGMLQuantizationType.Q5_K: quantize_q5_k,
    GGMLQuantizationType.Q6_K: quantize_q6_k,
}


def quantize(values: np.ndarray, qtype: GGMLQuantizationType | str) -> np.ndarray:
    """[..., n] float -> ggml storage for qtype: float32/float16 arrays for F32/F16, else
    [..., n_bytes_per_row] uint8 blocks (the shape GGUFWriter.add_tensor expects)."""
    qtype = GGMLQuantizationType[qtype] if isinstance(qtype, str) else GGMLQuantizationType(qtype)
    if qtype in _K_QUANTIZERS:
        return _K_QUANTIZERS[qtype](values)
    try:
        return gguf_quants.quantize(np.asarray(values, dtype=np.float32), qtype)
    except NotImplementedError:
        raise ValueError(
            f"cannot quantize to {qtype.name} (supported: F32, F16, BF16, Q4_0, Q5_0, Q8_0, {', '.join(K_QUANT_TYPES)})"
        ) from None
