// Portable attention kernels: the reference the SIMD paths are tested against.
#include <cmath>
#include <cstring>

#include "ops/attention_kernels.h"
#include "ops/half.h"

namespace duet {

namespace {

void gather_f16(const void* base, int64_t row_stride, const int32_t* rows, int n, int head_dim, float* tile) {
  for (int i = 0; i < n; ++i) {
    const uint16_t* row = static_cast<const uint16_t*>(base) + rows[i] * row_stride;
    for (int d = 0; d < head_dim; ++d) tile[i * head_dim + d] = half_to_float(row[d]);
  }
}

void gather_f32(const void* base, int64_t row_stride, const int32_t* rows, int n, int head_dim, float* tile) {
  for (int i = 0; i < n; ++i) {
    std::memcpy(tile + i * head_dim, static_cast<const float*>(base) + rows[i] * row_stride, head_dim * sizeof(float));
  }
}

void score_tile_scalar(const float* q, int n_heads, const float* tile, int n, int head_dim, float scale,
                       float* scores, int64_t score_stride) {
  for (int h = 0; h < n_heads; ++h) {
    const float* qh = q + h * head_dim;
    for (int i = 0; i < n; ++i) {
      const float* row = tile + i * head_dim;
      float dot = 0.0f;
      for (int d = 0; d < head_dim; ++d) dot += qh[d] * row[d];
      scores[h * score_stride + i] = dot * scale;
    }
  }
}

float softmax_numerators_scalar(float* weights, int n) {
  float max_weight = weights[0];
  for (int i = 1; i < n; ++i) max_weight = weights[i] > max_weight ? weights[i] : max_weight;
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) {
    weights[i] = std::exp(weights[i] - max_weight);
    sum += weights[i];
  }
  return sum;
}

void accumulate_tile_scalar(const float* weights, int64_t weight_stride, int n_heads, const float* tile, int n,
                            int head_dim, float* acc) {
  for (int h = 0; h < n_heads; ++h) {
    for (int i = 0; i < n; ++i) {
      const float w = weights[h * weight_stride + i];
      const float* row = tile + i * head_dim;
      for (int d = 0; d < head_dim; ++d) acc[h * head_dim + d] += w * row[d];
    }
  }
}

}  // namespace

const AttentionKernels& attention_kernels_scalar() {
  static const AttentionKernels kernels{gather_f32, gather_f16, score_tile_scalar,
                                        softmax_numerators_scalar, accumulate_tile_scalar};
  return kernels;
}

}  // namespace duet
