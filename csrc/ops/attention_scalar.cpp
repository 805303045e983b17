// Portable attention kernels: the reference the SIMD paths are tested against.
#include <cmath>
#include <cstring>

#include "ops/attention_kernels.h"
#include "ops/half.h"
#include "quant/formats.h"

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

float dot_in_lanes(const float* x, const float* y, int n, int n_lanes) {
  float lane[kMaxLanes] = {};
  int d = 0;
  for (; d + n_lanes <= n; d += n_lanes) {
    for (int l = 0; l < n_lanes; ++l) lane[l] = std::fma(x[d + l], y[d + l], lane[l]);
  }
  double sum = lanes_reduce(lane, 1, n_lanes);
  for (; d < n; ++d) sum += static_cast<double>(x[d] * y[d]);
  return static_cast<float>(sum);
}

void score_tile_scalar(const float* q, int n_heads, const float* tile, int n, int head_dim, float scale,
                       float* scores, int64_t score_stride, int n_lanes) {
  for (int h = 0; h < n_heads; ++h) {
    for (int i = 0; i < n; ++i) {
      scores[h * score_stride + i] = dot_in_lanes(q + h * head_dim, tile + i * head_dim, head_dim, n_lanes) * scale;
    }
  }
}

double softmax_numerators_scalar(float* weights, int n, int width) {
  float max_weight = weights[0];
  for (int i = 1; i < n; ++i) max_weight = weights[i] > max_weight ? weights[i] : max_weight;
  double sum = 0.0;
  for (int i = 0; i < n; i += width) {
    float group[kGgmlWidth16];
    for (int l = 0; l < width; ++l) {
      group[l] = i + l < n ? exp_ggml_scalar(weights[i + l] - max_weight, width) : 0.0f;
    }
    for (int l = 0; i + l < n && l < width; ++l) weights[i + l] = group[l];
    sum += lanes_reduce(group, 1, prompt_lanes(width));  // one vector's horizontal add
  }
  return sum;
}

void scale_weights_scalar(float* weights, int n, float scale, bool to_half) {
  for (int i = 0; i < n; ++i) {
    const float w = weights[i] * scale;
    weights[i] = to_half ? half_to_float(fp32_to_fp16(w)) : w;
  }
}

void accumulate_tile_scalar(const float* weights, int64_t weight_stride, int n_heads, const float* tile, int n,
                            int head_dim, float* lanes, int n_lanes) {
  for (int h = 0; h < n_heads; ++h) {
    for (int i = 0; i < n; ++i) {
      const float w = weights[h * weight_stride + i];
      const float* row = tile + i * head_dim;
      float* lane = lanes + (static_cast<int64_t>(h) * kMaxLanes + i % n_lanes) * head_dim;
      for (int d = 0; d < head_dim; ++d) lane[d] = std::fma(w, row[d], lane[d]);
    }
  }
}

void reduce_lanes_scalar(const float* lanes, int n_heads, int head_dim, int n_lanes, float* out) {
  for (int h = 0; h < n_heads; ++h) {
    const float* head_lanes = lanes + static_cast<int64_t>(h) * kMaxLanes * head_dim;
    for (int d = 0; d < head_dim; ++d) out[h * head_dim + d] = lanes_reduce(head_lanes + d, head_dim, n_lanes);
  }
}

}  // namespace

const AttentionKernels& attention_kernels_scalar() {
  static const AttentionKernels kernels{gather_f32,           gather_f16,
                                        score_tile_scalar,    softmax_numerators_scalar,
                                        scale_weights_scalar, accumulate_tile_scalar,
                                        reduce_lanes_scalar,  nullptr};
  return kernels;
}

}  // namespace duet
