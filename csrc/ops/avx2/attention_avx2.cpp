// AVX2 + FMA + F16C attention kernels. Every output element is one fixed sequence
// of operations that depends only on head_dim and on the query's own visible rows
// (never on the tile size, on a row's or a head's place in a block, or on the other
// heads), so a query's result does not depend on the other queries.
#include <immintrin.h>

#include "ops/attention_kernels.h"
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

// Scores of kHeads heads against kRows consecutive tile rows: every loaded q block
// and tile block feeds several FMAs, which keeps the loads from being the limit.
// Each (head, row) has one accumulator over the blocks of 8, so its value does not
// depend on kHeads or kRows.
template <int kHeads, int kRows>
void score_block(const float* q, const float* rows, int head_dim, float scale, float* scores, int64_t score_stride) {
  __m256 acc[kHeads][kRows];
  for (int h = 0; h < kHeads; ++h) {
    for (int r = 0; r < kRows; ++r) acc[h][r] = _mm256_setzero_ps();
  }
  int d = 0;
  for (; d + 8 <= head_dim; d += 8) {
    __m256 row_blocks[kRows];
    for (int r = 0; r < kRows; ++r) row_blocks[r] = _mm256_loadu_ps(rows + r * head_dim + d);
    for (int h = 0; h < kHeads; ++h) {
      const __m256 qv = _mm256_loadu_ps(q + h * head_dim + d);
      for (int r = 0; r < kRows; ++r) acc[h][r] = _mm256_fmadd_ps(qv, row_blocks[r], acc[h][r]);
    }
  }
  for (int h = 0; h < kHeads; ++h) {
    for (int r = 0; r < kRows; ++r) {
      float sum = horizontal_sum(acc[h][r]);
      for (int t = d; t < head_dim; ++t) sum += q[h * head_dim + t] * rows[r * head_dim + t];
      scores[h * score_stride + r] = sum * scale;
    }
  }
}

// All rows of the tile for kHeads heads: four rows at a time, then one.
template <int kHeads>
void score_heads(const float* q, const float* tile, int n, int head_dim, float scale, float* scores,
                 int64_t score_stride) {
  int i = 0;
  for (; i + 4 <= n; i += 4) score_block<kHeads, 4>(q, tile + i * head_dim, head_dim, scale, scores + i, score_stride);
  for (; i < n; ++i) score_block<kHeads, 1>(q, tile + i * head_dim, head_dim, scale, scores + i, score_stride);
}

void score_tile_avx2(const float* q, int n_heads, const float* tile, int n, int head_dim, float scale, float* scores,
                     int64_t score_stride) {
  int h = 0;
  for (; h + 2 <= n_heads; h += 2) {
    score_heads<2>(q + h * head_dim, tile, n, head_dim, scale, scores + h * score_stride, score_stride);
  }
  if (h < n_heads) score_heads<1>(q + h * head_dim, tile, n, head_dim, scale, scores + h * score_stride, score_stride);
}

// exp(x) for x <= 0 (scores minus their max), within a few ulp of expf: x = n ln2 + r
// with |r| <= ln2 / 2, exp(r) by a degree-7 Taylor polynomial, 2^n built in the exponent
// bits. Inputs below -87 give 0 instead of a subnormal; their weight is negligible next
// to the maximum's exp(0) = 1.
inline __m256 exp_nonpositive(__m256 x) {
  const __m256 min_x = _mm256_set1_ps(-87.0f);
  const __m256 below = _mm256_cmp_ps(x, min_x, _CMP_LT_OQ);
  x = _mm256_max_ps(x, min_x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504089f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // r = x - n ln2 with ln2 split in two so that n * ln2_hi is exact.
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i biased = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(below, _mm256_mul_ps(p, _mm256_castsi256_ps(biased)));
}

float softmax_numerators_avx2(float* weights, int n) {
  __m256 max8 = _mm256_set1_ps(weights[0]);
  int i = 0;
  for (; i + 8 <= n; i += 8) max8 = _mm256_max_ps(max8, _mm256_loadu_ps(weights + i));
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(max8), _mm256_extractf128_ps(max8, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  float max_weight = _mm_cvtss_f32(m4);
  for (; i < n; ++i) max_weight = weights[i] > max_weight ? weights[i] : max_weight;

  const __m256 max_all = _mm256_set1_ps(max_weight);
  __m256 sum8 = _mm256_setzero_ps();
  i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(weights + i), max_all));
    _mm256_storeu_ps(weights + i, e);
    sum8 = _mm256_add_ps(sum8, e);
  }
  if (i < n) {  // the tail through a padded vector, so every element uses the same exp
    alignas(32) float tail[8];
    for (int t = 0; t < 8; ++t) tail[t] = i + t < n ? weights[i + t] : max_weight;
    const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_load_ps(tail), max_all));
    _mm256_store_ps(tail, e);
    for (int t = 0; i + t < n; ++t) weights[i + t] = tail[t];
    float sum = horizontal_sum(sum8);
    for (int t = 0; i + t < n; ++t) sum += tail[t];
    return sum;
  }
  return horizontal_sum(sum8);
}

// acc[h][d0 .. d0 + 8 * kRegs) of kHeads heads, kept in registers over the whole tile;
// each loaded tile block feeds every head.
template <int kHeads, int kRegs>
void accumulate_block(const float* weights, int64_t weight_stride, const float* tile, int n, int head_dim, int d0,
                      float* acc) {
  __m256 sums[kHeads][kRegs];
  for (int h = 0; h < kHeads; ++h) {
    for (int r = 0; r < kRegs; ++r) sums[h][r] = _mm256_loadu_ps(acc + h * head_dim + d0 + 8 * r);
  }
  for (int i = 0; i < n; ++i) {
    const float* row = tile + i * head_dim + d0;
    __m256 row_blocks[kRegs];
    for (int r = 0; r < kRegs; ++r) row_blocks[r] = _mm256_loadu_ps(row + 8 * r);
    for (int h = 0; h < kHeads; ++h) {
      const __m256 w = _mm256_broadcast_ss(weights + h * weight_stride + i);
      for (int r = 0; r < kRegs; ++r) sums[h][r] = _mm256_fmadd_ps(w, row_blocks[r], sums[h][r]);
    }
  }
  for (int h = 0; h < kHeads; ++h) {
    for (int r = 0; r < kRegs; ++r) _mm256_storeu_ps(acc + h * head_dim + d0 + 8 * r, sums[h][r]);
  }
}

// kHeads heads over the whole head_dim: wide register blocks, then 8, then scalars.
template <int kHeads, int kWideRegs>
void accumulate_heads(const float* weights, int64_t weight_stride, const float* tile, int n, int head_dim,
                      float* acc) {
  int d = 0;
  for (; d + 8 * kWideRegs <= head_dim; d += 8 * kWideRegs) {
    accumulate_block<kHeads, kWideRegs>(weights, weight_stride, tile, n, head_dim, d, acc);
  }
  for (; d + 8 <= head_dim; d += 8) accumulate_block<kHeads, 1>(weights, weight_stride, tile, n, head_dim, d, acc);
  for (; d < head_dim; ++d) {
    for (int h = 0; h < kHeads; ++h) {
      for (int i = 0; i < n; ++i) acc[h * head_dim + d] += weights[h * weight_stride + i] * tile[i * head_dim + d];
    }
  }
}

void accumulate_tile_avx2(const float* weights, int64_t weight_stride, int n_heads, const float* tile, int n,
                          int head_dim, float* acc) {
  int h = 0;
  for (; h + 2 <= n_heads; h += 2) {
    accumulate_heads<2, 4>(weights + h * weight_stride, weight_stride, tile, n, head_dim, acc + h * head_dim);
  }
  if (h < n_heads) accumulate_heads<1, 8>(weights + h * weight_stride, weight_stride, tile, n, head_dim, acc + h * head_dim);
}

}  // namespace

const AttentionKernels& attention_kernels_avx2() {
  // An f32 gather is a plain copy: the scalar one is as fast.
  static const AttentionKernels kernels{attention_kernels_scalar().gather_f32, gather_f16_avx2, score_tile_avx2,
                                        softmax_numerators_avx2, accumulate_tile_avx2};
  return kernels;
}

}  // namespace duet
