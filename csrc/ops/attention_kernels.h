// The inner loops of attention, one set per ISA path. Internal to csrc/ops:
// attention.cpp gathers the visible cache rows of one kv head into f32 tiles, so a
// tile converted once serves every query head that shares that kv head.
#pragma once
#include <cstdint>

#include "ops/attention.h"
#include "ops/exp_ggml.h"
#include "runtime/cpu_features.h"

namespace duet {

// Every dot product of attention is summed as llama.cpp sums it, in lanes: element i
// goes to lane i % n_lanes, each lane sums its elements in order, and lanes_reduce
// folds the lanes. llama.cpp has two orders: decoding one token (ggml's f16 vec_dot,
// 32 lanes) and a prompt batch (tinyBLAS, 8 lanes). Matching them, and ggml's exp,
// makes our steps bit-identical to llama.cpp's.
constexpr int kDecodeLanes = 32;
constexpr int kPromptLanes = 8;
constexpr int kMaxLanes = kDecodeLanes;

// Most cache rows in one tile: 32 rows of head_dim 128 in f32 are 16 KiB, half of L1.
// A tile starts every row's lane afresh at lane 0.
constexpr int kTileRows = 32;
static_assert(kTileRows % kDecodeLanes == 0 && kTileRows % kPromptLanes == 0, "tiles must start at lane 0");

// The n_lanes (8 or 32) values lane[l * stride] summed in llama.cpp's order. With 32,
// lanes 16 apart and 8 apart are paired first (ggml's four accumulators); then the
// eight sums fold as an 8-wide vector: halves added, then 32 lanes end in two
// horizontal adds ((0+1)+(2+3)), 8 lanes in a shuffle and an add ((0+2)+(1+3)).
inline float lanes_reduce(const float* lane, int64_t stride, int n_lanes) {
  float folded[8];
  for (int l = 0; l < 8; ++l) {
    folded[l] = n_lanes == kPromptLanes ? lane[l * stride]
                                        : (lane[l * stride] + lane[(16 + l) * stride]) +
                                              (lane[(8 + l) * stride] + lane[(24 + l) * stride]);
  }
  float quad[4];
  for (int m = 0; m < 4; ++m) quad[m] = folded[m] + folded[m + 4];
  return n_lanes == kPromptLanes ? (quad[0] + quad[2]) + (quad[1] + quad[3]) : (quad[0] + quad[1]) + (quad[2] + quad[3]);
}

struct AttentionKernels {
  // tile[i][0..head_dim) = row rows[i] of the cache as f32, for i < n. Row j starts at
  // element j * row_stride of base (one kv head of a [n_kv, n_head_kv, head_dim] layer).
  void (*gather_f32)(const void* base, int64_t row_stride, const int32_t* rows, int n, int head_dim, float* tile);
  void (*gather_f16)(const void* base, int64_t row_stride, const int32_t* rows, int n, int head_dim, float* tile);
  // scores[h * score_stride + i] = scale * dot(q[h], tile[i]) for h < n_heads, i < n;
  // q: [n_heads, head_dim]. The dot in n_lanes lanes over d (elements past the last
  // whole n_lanes added in double afterwards, as ggml does), the same sequence of
  // operations whatever n and n_heads are and wherever the row and the head sit.
  void (*score_tile)(const float* q, int n_heads, const float* tile, int n, int head_dim, float scale, float* scores,
                     int64_t score_stride, int n_lanes);
  // weights[i] <- exp(weights[i] - max) for i < n (n >= 1), exp computed as ggml's; returns
  // their sum as ggml's softmax takes it: groups of 8 summed in float, groups in double.
  double (*softmax_numerators)(float* weights, int n);
  // weights[i] <- weights[i] * scale for i < n, rounded to the nearest f16 value
  // when to_half (the probabilities then carry what an f16 operand would).
  void (*scale_weights)(float* weights, int n, float scale, bool to_half);
  // lanes[h][i % n_lanes][d] += weights[h * weight_stride + i] * tile[i][d] (fused) for
  // h < n_heads, i < n, d < head_dim; the tile's first row is a visible row whose index
  // is a multiple of kTileRows. lanes: [n_heads, kMaxLanes, head_dim].
  void (*accumulate_tile)(const float* weights, int64_t weight_stride, int n_heads, const float* tile, int n,
                          int head_dim, float* lanes, int n_lanes);
  // out[h][d] = lanes_reduce over lanes[h][.][d]. out: [n_heads, head_dim].
  void (*reduce_lanes)(const float* lanes, int n_heads, int head_dim, int n_lanes, float* out);
};

const AttentionKernels& attention_kernels_scalar();
#if defined(DUET_X86)
const AttentionKernels& attention_kernels_avx2();
#endif

// The kernels of a runnable ISA; paths without their own use a slower one's.
const AttentionKernels& attention_kernels(Isa isa);

}  // namespace duet
