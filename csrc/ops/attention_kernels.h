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
// folds the lanes. llama.cpp has two orders, each in the vector width w of its build
// (ops/exp_ggml.h): decoding one token (ggml's f16 vec_dot, four vectors: 4w lanes)
// and a prompt batch (tinyBLAS, one vector: w lanes). Matching them, and ggml's exp,
// makes our steps bit-identical to llama.cpp's.
inline int prompt_lanes(int width) { return width; }
inline int decode_lanes(int width) { return 4 * width; }
constexpr int kMaxLanes = 4 * kGgmlWidth16;

// Most cache rows in one tile: 64 rows of head_dim 128 in f32 are 32 KiB, an L1.
// A tile starts every row's lane afresh at lane 0.
constexpr int kTileRows = 64;
static_assert(kTileRows % kMaxLanes == 0, "tiles must start at lane 0");

// The n_lanes (8, 16, 32 or 64) values lane[l * stride] summed in llama.cpp's order.
// Four vectors (32 or 64 lanes) are paired first, vectors 0+2 and 1+3, then added
// (ggml's four accumulators). A 16-wide vector folds its halves into 8 lanes, which
// fold as an 8-wide vector: halves added, then 4 lanes in a shuffle and an add
// ((0+2)+(1+3)), except that AVX2's four-vector reduce ends in two horizontal adds
// ((0+1)+(2+3)).
inline float lanes_reduce(const float* lane, int64_t stride, int n_lanes) {
  const bool four_vectors = n_lanes > kGgmlWidth16;
  const int width = four_vectors ? n_lanes / 4 : n_lanes;
  float vec[kGgmlWidth16];
  for (int l = 0; l < width; ++l) {
    vec[l] = four_vectors ? (lane[l * stride] + lane[(2 * width + l) * stride]) +
                                (lane[(width + l) * stride] + lane[(3 * width + l) * stride])
                          : lane[l * stride];
  }
  if (width == kGgmlWidth16) {
    for (int l = 0; l < 8; ++l) vec[l] = vec[l] + vec[l + 8];
  }
  float quad[4];
  for (int m = 0; m < 4; ++m) quad[m] = vec[m] + vec[m + 4];
  const bool horizontal_adds = n_lanes == decode_lanes(kGgmlWidth8);
  return horizontal_adds ? (quad[0] + quad[1]) + (quad[2] + quad[3]) : (quad[0] + quad[2]) + (quad[1] + quad[3]);
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
  // weights[i] <- exp(weights[i] - max) for i < n (n >= 1), exp computed as ggml's build
  // of the given width; returns their sum as ggml's softmax takes it: groups of `width`
  // summed in float (lanes_reduce's order for one vector), groups in double.
  double (*softmax_numerators)(float* weights, int n, int width);
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
  // What accumulate_tile over every tile and then reduce_lanes give, with the value
  // rows read straight from the cache: rows visible[i] for i < n_visible (row j at
  // element j * row_stride of v). Returns false, having written nothing, where this
  // path has no such kernel for n_lanes and head_dim (nullptr: none at all).
  bool (*attend_values)(const float* weights, int64_t weight_stride, int n_heads, const void* v, KvType kv_type,
                        int64_t row_stride, const int32_t* visible, int n_visible, int head_dim, int n_lanes,
                        float* out);
};

const AttentionKernels& attention_kernels_scalar();
#if defined(DUET_X86)
const AttentionKernels& attention_kernels_avx2();
const AttentionKernels& attention_kernels_avx512();  // the decode order's own; the rest the AVX2 kernels
#endif

// The kernels of a runnable ISA; paths without their own use a slower one's.
const AttentionKernels& attention_kernels(Isa isa);

}  // namespace duet
