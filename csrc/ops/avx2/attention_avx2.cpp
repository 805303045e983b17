// AVX2 + FMA + F16C attention kernels. Every output element is one fixed sequence
// of operations that depends only on head_dim (never on the tile size or on a row's
// place in it), so a query's result does not depend on the other queries.
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

// scores of kRows consecutive tile rows. Each row has two accumulators (even and odd
// blocks of 8) so that kRows = 4 keeps eight FMA chains in flight; q is loaded once
// for all rows.
template <int kRows>
void score_rows(const float* q, const float* rows, int head_dim, float scale, float* scores) {
  __m256 acc[kRows][2];
  for (int r = 0; r < kRows; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  int d = 0;
  for (; d + 16 <= head_dim; d += 16) {
    const __m256 q0 = _mm256_loadu_ps(q + d);
    const __m256 q1 = _mm256_loadu_ps(q + d + 8);
    for (int r = 0; r < kRows; ++r) {
      acc[r][0] = _mm256_fmadd_ps(q0, _mm256_loadu_ps(rows + r * head_dim + d), acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(q1, _mm256_loadu_ps(rows + r * head_dim + d + 8), acc[r][1]);
    }
  }
  if (d + 8 <= head_dim) {
    const __m256 q0 = _mm256_loadu_ps(q + d);
    for (int r = 0; r < kRows; ++r) acc[r][0] = _mm256_fmadd_ps(q0, _mm256_loadu_ps(rows + r * head_dim + d), acc[r][0]);
    d += 8;
  }
  for (int r = 0; r < kRows; ++r) {
    float sum = horizontal_sum(_mm256_add_ps(acc[r][0], acc[r][1]));
    for (int t = d; t < head_dim; ++t) sum += q[t] * rows[r * head_dim + t];
    scores[r] = sum * scale;
  }
}

void score_tile_avx2(const float* q, const float* tile, int n, int head_dim, float scale, float* scores) {
  int i = 0;
  for (; i + 4 <= n; i += 4) score_rows<4>(q, tile + i * head_dim, head_dim, scale, scores + i);
  for (; i < n; ++i) score_rows<1>(q, tile + i * head_dim, head_dim, scale, scores + i);
}

// acc[d0 .. d0 + 8 * kRegs) kept in registers over the whole tile.
template <int kRegs>
void accumulate_block(const float* weights, const float* tile, int n, int head_dim, int d0, float* acc) {
  __m256 sums[kRegs];
  for (int r = 0; r < kRegs; ++r) sums[r] = _mm256_loadu_ps(acc + d0 + 8 * r);
  for (int i = 0; i < n; ++i) {
    const __m256 w = _mm256_broadcast_ss(weights + i);
    const float* row = tile + i * head_dim + d0;
    for (int r = 0; r < kRegs; ++r) sums[r] = _mm256_fmadd_ps(w, _mm256_loadu_ps(row + 8 * r), sums[r]);
  }
  for (int r = 0; r < kRegs; ++r) _mm256_storeu_ps(acc + d0 + 8 * r, sums[r]);
}

void accumulate_tile_avx2(const float* weights, const float* tile, int n, int head_dim, float* acc) {
  int d = 0;
  for (; d + 64 <= head_dim; d += 64) accumulate_block<8>(weights, tile, n, head_dim, d, acc);
  for (; d + 8 <= head_dim; d += 8) accumulate_block<1>(weights, tile, n, head_dim, d, acc);
  for (; d < head_dim; ++d) {
    for (int i = 0; i < n; ++i) acc[d] += weights[i] * tile[i * head_dim + d];
  }
}

}  // namespace

const AttentionKernels& attention_kernels_avx2() {
  // An f32 gather is a plain copy: the scalar one is as fast.
  static const AttentionKernels kernels{attention_kernels_scalar().gather_f32, gather_f16_avx2, score_tile_avx2,
                                        accumulate_tile_avx2};
  return kernels;
}

}  // namespace duet
