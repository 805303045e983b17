// The AVX-512 (+VNNI) path's kernels. It mirrors the AVX2 path (same unpacking,
// same per-row float sequence) and widens the integer dot products: 512-bit for
// the K-quants, VNNI vpdpbusd / vpdpwssd where they fuse a multiply and an add.
// Types without a kernel here use the AVX2 one.
#pragma once
#include <cstddef>
#include <cstdint>

#include "quant/kernels.h"

namespace duet::avx512 {

#define DUET_DECLARE_VEC_DOT(fmt) \
  void vec_dot_##fmt(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out);

DUET_DECLARE_VEC_DOT(q4_0)
DUET_DECLARE_VEC_DOT(q5_0)
DUET_DECLARE_VEC_DOT(q8_0)
DUET_DECLARE_VEC_DOT(q4_k)
DUET_DECLARE_VEC_DOT(q5_k)
DUET_DECLARE_VEC_DOT(q6_k)
#undef DUET_DECLARE_VEC_DOT

// The GEMVs (a few activation rows, vec_dot's bits): Q4_0, Q5_0 and Q8_0 from
// block32_gemv.h, the K-quants AVX2's with vpdpwssd (vnni_dot.h).
GemvKernel gemv_q4_0, gemv_q5_0, gemv_q8_0, gemv_q4_k, gemv_q5_k, gemv_q6_k;

TileKernel prompt_tile_q4_k, prompt_tile_q6_k, tile_q4_k, tile_q6_k, tile_q4_0, tile_q5_0, tile_q8_0;

// The 32-element formats in the block order, for any-order rows (block32_tile.h).
TileKernel any_order_tile_q4_0, any_order_tile_q5_0, any_order_tile_q8_0;

}  // namespace duet::avx512
