// The AVX2 path's kernels; types without one here use the scalar kernel.
#pragma once
#include <cstddef>
#include <cstdint>

#include "quant/kernels.h"

namespace duet::avx2 {

#define DUET_DECLARE_VEC_DOT(fmt) \
  void vec_dot_##fmt(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out);

DUET_DECLARE_VEC_DOT(f32)
DUET_DECLARE_VEC_DOT(f16)
DUET_DECLARE_VEC_DOT(bf16)
DUET_DECLARE_VEC_DOT(q4_0)
DUET_DECLARE_VEC_DOT(q5_0)
DUET_DECLARE_VEC_DOT(q8_0)
DUET_DECLARE_VEC_DOT(q4_k)
DUET_DECLARE_VEC_DOT(q5_k)
DUET_DECLARE_VEC_DOT(q6_k)
DUET_DECLARE_VEC_DOT(prompt_q4_k)
DUET_DECLARE_VEC_DOT(prompt_q5_k)
DUET_DECLARE_VEC_DOT(prompt_q6_k)
#undef DUET_DECLARE_VEC_DOT

// The GEMVs (a few activation rows, vec_dot's bits): Q4_0 and Q5_0 from block32_gemv.h.
GemvKernel gemv_q4_0, gemv_q5_0, gemv_q4_k, gemv_q5_k, gemv_q6_k;

void quantize_q8_32(const float* x, void* dst, int64_t n);
void quantize_q8_256(const float* x, void* dst, int64_t n);

TileKernel prompt_tile_q4_k, prompt_tile_q6_k, tile_q4_k, tile_q6_k;

// The 32-element formats in the block order, for any-order rows (block32_tile.h).
TileKernel any_order_tile_q4_0, any_order_tile_q5_0, any_order_tile_q8_0;

}  // namespace duet::avx2
