// The ARM paths' kernels: neon (baseline AArch64, products by vmull + vpadal) and
// dotprod (ARMv8.2 vdotq_s32). Both are built from the same loops
// (neon/neon_loops.h) with a different 16-byte integer dot product; types without
// a kernel here use the scalar one, as do the activation quantizers.
#pragma once
#include <cstddef>
#include <cstdint>

namespace duet::neon {  // float weights: no integer dot product, so neon serves both paths
void vec_dot_f32(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out);
void vec_dot_f16(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out);
void vec_dot_bf16(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out);
}  // namespace duet::neon

#define DUET_DECLARE_ARM_KERNELS(isa)                                                                    \
  namespace duet::isa {                                                                                  \
  void vec_dot_q4_0(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out); \
  void vec_dot_q5_0(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out); \
  void vec_dot_q8_0(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out); \
  void vec_dot_q4_k(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out); \
  void vec_dot_q5_k(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out); \
  void vec_dot_q6_k(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out); \
  }

DUET_DECLARE_ARM_KERNELS(neon)
DUET_DECLARE_ARM_KERNELS(dotprod)
#undef DUET_DECLARE_ARM_KERNELS
