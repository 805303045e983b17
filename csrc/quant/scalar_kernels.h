// The scalar path: the reference every SIMD path is tested against. One source
// file per block format; kernel_table.cpp assembles them.
#pragma once
#include <cstddef>
#include <cstdint>

namespace duet::scalar {

#define DUET_DECLARE_TYPE_KERNELS(fmt)                                    \
  void dequantize_row_##fmt(const void* w, float* y, int64_t n);          \
  void vec_dot_##fmt(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out);

DUET_DECLARE_TYPE_KERNELS(f32)
DUET_DECLARE_TYPE_KERNELS(f16)
DUET_DECLARE_TYPE_KERNELS(bf16)
DUET_DECLARE_TYPE_KERNELS(q4_0)
DUET_DECLARE_TYPE_KERNELS(q5_0)
DUET_DECLARE_TYPE_KERNELS(q8_0)
DUET_DECLARE_TYPE_KERNELS(q4_k)
DUET_DECLARE_TYPE_KERNELS(q5_k)
DUET_DECLARE_TYPE_KERNELS(q6_k)
#undef DUET_DECLARE_TYPE_KERNELS

// The K-quants' prompt-batch order (kernels.h, TypeKernels::vec_dot_prompt).
#define DUET_DECLARE_VEC_DOT_PROMPT(fmt) \
  void vec_dot_prompt_##fmt(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out);

DUET_DECLARE_VEC_DOT_PROMPT(q4_k)
DUET_DECLARE_VEC_DOT_PROMPT(q5_k)
DUET_DECLARE_VEC_DOT_PROMPT(q6_k)
#undef DUET_DECLARE_VEC_DOT_PROMPT

void quantize_q8_32(const float* x, void* dst, int64_t n);
void quantize_q8_256(const float* x, void* dst, int64_t n);

// Weights to Q4_0 as ggml's reference quantizer makes them (a drafter's head held
// narrower at load, draft_head.py): not a hot path, so scalar only.
void quantize_row_q4_0(const float* x, void* dst, int64_t n);

}  // namespace duet::scalar
