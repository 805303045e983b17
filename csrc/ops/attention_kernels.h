// The inner loops of attention, one set per ISA path. Internal to csrc/ops:
// attention.cpp gathers the visible cache rows of one kv head into f32 tiles, so a
// tile converted once serves every query head that shares that kv head.
#pragma once
#include <cstdint>

#include "ops/attention.h"
#include "runtime/cpu_features.h"

namespace duet {

// Most cache rows in one tile: 32 rows of head_dim 128 in f32 are 16 KiB, half of L1.
constexpr int kTileRows = 32;

struct AttentionKernels {
  // tile[i][0..head_dim) = row rows[i] of the cache as f32, for i < n. Row j starts at
  // element j * row_stride of base (one kv head of a [n_kv, n_head_kv, head_dim] layer).
  void (*gather_f32)(const void* base, int64_t row_stride, const int32_t* rows, int n, int head_dim, float* tile);
  void (*gather_f16)(const void* base, int64_t row_stride, const int32_t* rows, int n, int head_dim, float* tile);
  // scores[h * score_stride + i] = scale * dot(q[h], tile[i]) for h < n_heads, i < n;
  // q: [n_heads, head_dim]. Each value is the same sequence of operations whatever
  // n and n_heads are and wherever the row and the head sit.
  void (*score_tile)(const float* q, int n_heads, const float* tile, int n, int head_dim, float scale, float* scores,
                     int64_t score_stride);
  // weights[i] <- exp(weights[i] - max) for i < n (n >= 1); returns their sum.
  float (*softmax_numerators)(float* weights, int n);
  // acc[h][d] += weights[h * weight_stride + i] * tile[i][d] for h < n_heads, for
  // i = 0, 1, .., n - 1 in that order. acc: [n_heads, head_dim].
  void (*accumulate_tile)(const float* weights, int64_t weight_stride, int n_heads, const float* tile, int n,
                          int head_dim, float* acc);
};

const AttentionKernels& attention_kernels_scalar();
#if defined(DUET_X86)
const AttentionKernels& attention_kernels_avx2();
#endif

// The kernels of a runnable ISA; paths without their own use a slower one's.
const AttentionKernels& attention_kernels(Isa isa);

}  // namespace duet
