// AVX2 + FMA + F16C attention kernels. Every output element is one fixed sequence
// of operations that depends only on head_dim and on the query's own visible rows
// (never on the tile size, on a row's or a head's place in a block, or on the other
// heads), so a query's result does not depend on the other queries.
#include <immintrin.h>

#include <cmath>
#include <limits>

#include "ops/attention_kernels.h"
#include "ops/avx2/exp_ggml_avx2.h"
#include "ops/half.h"

namespace duet {

namespace {

void gather_f16_avx2(const void* base, int64_t row_stride, const int32_t* rows, int n, int head_dim, float* tile) {
  for (int i = 0; i < n; ++i) {
    const uint16_t* row = static_cast<const uint16_t*>(base) + rows[i] * row_stride;
    float* out = tile + i * head_dim;
    int d = 0;
    for (; d + 8 <= head_dim; d += 8) {
      _mm256_storeu_ps(out + d, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + d))));
    }
    for (; d < head_dim; ++d) out[d] = half_to_float(row[d]);
  }
}

inline float horizontal_sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The kAcc 8-lane accumulators of a dot in lanes (lane l of accumulator j is lane
// 8j + l) reduced in lanes_reduce's order: kAcc 1 or 2 is one vector of the prompt
// order (AVX2, AVX-512), 4 or 8 the four vectors of the decode order.
template <int kAcc>
inline float lanes_reduce_avx2(const __m256 acc[kAcc]) {
  if constexpr (kAcc == 1) {
    return horizontal_sum(acc[0]);
  } else if constexpr (kAcc == 2) {
    return horizontal_sum(_mm256_add_ps(acc[0], acc[1]));
  } else if constexpr (kAcc == 4) {
    const __m256 folded = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
    const __m128 quad = _mm_add_ps(_mm256_castps256_ps128(folded), _mm256_extractf128_ps(folded, 1));
    const __m128 pairs = _mm_hadd_ps(quad, quad);
    return _mm_cvtss_f32(_mm_hadd_ps(pairs, pairs));
  } else {
    static_assert(kAcc == 8, "1, 2, 4 or 8 accumulators");
    const __m256 lo = _mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6]));
    const __m256 hi = _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7]));
    return horizontal_sum(_mm256_add_ps(lo, hi));
  }
}

// Scores of one head against kRows consecutive tile rows, summed in 8 * kAcc lanes:
// each loaded q block feeds every row. Each row's dot has its own lanes, so its value
// does not depend on kRows.
template <int kRows, int kAcc>
void score_rows(const float* q, const float* rows, int head_dim, float scale, float* scores) {
  constexpr int kLanes = 8 * kAcc;
  __m256 acc[kRows][kAcc];
  for (int r = 0; r < kRows; ++r) {
    for (int j = 0; j < kAcc; ++j) acc[r][j] = _mm256_setzero_ps();
  }
  int d = 0;
  for (; d + kLanes <= head_dim; d += kLanes) {
    for (int j = 0; j < kAcc; ++j) {
      const __m256 qv = _mm256_loadu_ps(q + d + 8 * j);
      for (int r = 0; r < kRows; ++r) {
        acc[r][j] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(rows + r * head_dim + d + 8 * j), acc[r][j]);
      }
    }
  }
  for (int r = 0; r < kRows; ++r) {
    double sum = lanes_reduce_avx2<kAcc>(acc[r]);
    for (int t = d; t < head_dim; ++t) sum += static_cast<double>(q[t] * rows[r * head_dim + t]);
    scores[r] = static_cast<float>(sum) * scale;
  }
}

template <int kAcc>
void score_head(const float* q, const float* tile, int n, int head_dim, float scale, float* scores) {
  int i = 0;
  for (; i + 2 <= n; i += 2) score_rows<2, kAcc>(q, tile + i * head_dim, head_dim, scale, scores + i);
  if (i < n) score_rows<1, kAcc>(q, tile + i * head_dim, head_dim, scale, scores + i);
}

void score_tile_avx2(const float* q, int n_heads, const float* tile, int n, int head_dim, float scale, float* scores,
                     int64_t score_stride, int n_lanes) {
  const auto score = n_lanes == 8 ? score_head<1> : n_lanes == 16 ? score_head<2> : n_lanes == 32 ? score_head<4>
                                                                                    : score_head<8>;
  for (int h = 0; h < n_heads; ++h) score(q + h * head_dim, tile, n, head_dim, scale, scores + h * score_stride);
}

double softmax_numerators_avx2(float* weights, int n, int width) {
  __m256 max8 = _mm256_set1_ps(weights[0]);
  int i = 0;
  for (; i + 8 <= n; i += 8) max8 = _mm256_max_ps(max8, _mm256_loadu_ps(weights + i));
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(max8), _mm256_extractf128_ps(max8, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  float max_weight = _mm_cvtss_f32(m4);
  for (; i < n; ++i) max_weight = weights[i] > max_weight ? weights[i] : max_weight;

  const __m256 max_all = _mm256_set1_ps(max_weight);
  // exp of one group of `width` weights in place; their sum in one vector's order.
  auto group_exp_sum = [&](float* group) {
    for (int t = 0; t < width; t += 8) {
      _mm256_storeu_ps(group + t, exp_ggml_avx2(_mm256_sub_ps(_mm256_loadu_ps(group + t), max_all), width));
    }
    const __m256 lo = _mm256_loadu_ps(group);
    return horizontal_sum(width == kGgmlWidth16 ? _mm256_add_ps(lo, _mm256_loadu_ps(group + 8)) : lo);
  };
  double sum = 0.0;
  for (i = 0; i + width <= n; i += width) sum += group_exp_sum(weights + i);
  if (i < n) {  // the tail as a group whose missing lanes are masked (-inf), as in ggml: exp gives 0
    float tail[kGgmlWidth16];
    for (int t = 0; t < width; ++t) tail[t] = i + t < n ? weights[i + t] : -std::numeric_limits<float>::infinity();
    sum += group_exp_sum(tail);
    for (int t = 0; i + t < n; ++t) weights[i + t] = tail[t];
  }
  return sum;
}

void scale_weights_avx2(float* weights, int n, float scale, bool to_half) {
  const __m256 scale8 = _mm256_set1_ps(scale);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 w = _mm256_mul_ps(_mm256_loadu_ps(weights + i), scale8);
    if (to_half) w = _mm256_cvtph_ps(_mm256_cvtps_ph(w, _MM_FROUND_TO_NEAREST_INT));
    _mm256_storeu_ps(weights + i, w);
  }
  for (; i < n; ++i) {
    const float w = weights[i] * scale;
    weights[i] = to_half ? _cvtsh_ss(_cvtss_sh(w, _MM_FROUND_TO_NEAREST_INT)) : w;
  }
}

// The prompt order's kLanes (8 or 16) lanes of one head for eight consecutive d stay
// in registers over the whole tile (row i feeds lane i % kLanes); the decode order's
// would not fit.
template <int kLanes>
void accumulate_prompt_lanes(const float* weights, const float* tile, int n, int head_dim, int d, float* lanes) {
  __m256 acc[kLanes];
  for (int l = 0; l < kLanes; ++l) acc[l] = _mm256_loadu_ps(lanes + l * head_dim + d);
  auto add_row = [&](int i, int l) {
    acc[l] = _mm256_fmadd_ps(_mm256_set1_ps(weights[i]), _mm256_loadu_ps(tile + i * head_dim + d), acc[l]);
  };
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) {  // lane indices known at compile time: registers
    for (int l = 0; l < kLanes; ++l) add_row(i + l, l);
  }
  for (int l = 0; i + l < n; ++l) add_row(i + l, l);
  for (int l = 0; l < kLanes; ++l) _mm256_storeu_ps(lanes + l * head_dim + d, acc[l]);
}

void accumulate_tile_avx2(const float* weights, int64_t weight_stride, int n_heads, const float* tile, int n,
                          int head_dim, float* lanes, int n_lanes) {
  for (int h = 0; h < n_heads; ++h) {
    float* head_lanes = lanes + static_cast<int64_t>(h) * kMaxLanes * head_dim;
    const float* head_weights = weights + h * weight_stride;
    int d_vector = 0;  // d below it are done in registers
    if (n_lanes <= kGgmlWidth16) {
      const auto accumulate = n_lanes == 8 ? accumulate_prompt_lanes<8> : accumulate_prompt_lanes<16>;
      for (; d_vector + 8 <= head_dim; d_vector += 8) accumulate(head_weights, tile, n, head_dim, d_vector, head_lanes);
    }
    for (int i = 0; i < n; ++i) {
      const float* row = tile + i * head_dim;
      float* lane = head_lanes + static_cast<int64_t>(i % n_lanes) * head_dim;
      const float w = head_weights[i];
      const __m256 w8 = _mm256_set1_ps(w);
      int d = d_vector;
      for (; d + 8 <= head_dim; d += 8) {
        _mm256_storeu_ps(lane + d, _mm256_fmadd_ps(w8, _mm256_loadu_ps(row + d), _mm256_loadu_ps(lane + d)));
      }
      for (; d < head_dim; ++d) lane[d] = std::fma(w, row[d], lane[d]);
    }
  }
}

// lanes_reduce for eight consecutive d at once.
inline __m256 lanes_reduce8(const float* lane, int64_t stride, int n_lanes) {
  auto at = [&](int l) { return _mm256_loadu_ps(lane + l * stride); };
  const bool four_vectors = n_lanes > kGgmlWidth16;
  const int width = four_vectors ? n_lanes / 4 : n_lanes;
  __m256 vec[kGgmlWidth16];
  for (int l = 0; l < width; ++l) {
    vec[l] = four_vectors ? _mm256_add_ps(_mm256_add_ps(at(l), at(2 * width + l)),
                                          _mm256_add_ps(at(width + l), at(3 * width + l)))
                          : at(l);
  }
  if (width == kGgmlWidth16) {
    for (int l = 0; l < 8; ++l) vec[l] = _mm256_add_ps(vec[l], vec[l + 8]);
  }
  __m256 quad[4];
  for (int m = 0; m < 4; ++m) quad[m] = _mm256_add_ps(vec[m], vec[m + 4]);
  if (n_lanes == decode_lanes(kGgmlWidth8)) {
    return _mm256_add_ps(_mm256_add_ps(quad[0], quad[1]), _mm256_add_ps(quad[2], quad[3]));
  }
  return _mm256_add_ps(_mm256_add_ps(quad[0], quad[2]), _mm256_add_ps(quad[1], quad[3]));
}

void reduce_lanes_avx2(const float* lanes, int n_heads, int head_dim, int n_lanes, float* out) {
  for (int h = 0; h < n_heads; ++h) {
    const float* head_lanes = lanes + static_cast<int64_t>(h) * kMaxLanes * head_dim;
    int d = 0;
    for (; d + 8 <= head_dim; d += 8) {
      _mm256_storeu_ps(out + h * head_dim + d, lanes_reduce8(head_lanes + d, head_dim, n_lanes));
    }
    for (; d < head_dim; ++d) out[h * head_dim + d] = lanes_reduce(head_lanes + d, head_dim, n_lanes);
  }
}

}  // namespace

const AttentionKernels& attention_kernels_avx2() {
  // An f32 gather is a plain copy: the scalar one is as fast.
  static const AttentionKernels kernels{attention_kernels_scalar().gather_f32,
                                        gather_f16_avx2,
                                        score_tile_avx2,
                                        softmax_numerators_avx2,
                                        scale_weights_avx2,
                                        accumulate_tile_avx2,
                                        reduce_lanes_avx2,
                                        nullptr};
  return kernels;
}

}  // namespace duet
