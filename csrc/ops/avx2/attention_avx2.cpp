// AVX2 + FMA + F16C attention row kernels. Each output element is computed by one
// fixed sequence of operations that depends only on head_dim, so a query's result
// never depends on the other queries of the batch.
#include <immintrin.h>

#include "ops/attention_kernels.h"
#include "ops/half.h"

namespace duet {

namespace {

inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
inline float element_to_float(float x) { return x; }
inline float element_to_float(uint16_t x) { return half_to_float(x); }

inline float horizontal_sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <typename Element>
float dot_avx2(const float* q, const Element* row, int n) {
  // Four independent accumulators hide the FMA latency on head_dim 64 and 128.
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
  int d = 0;
  for (; d + 32 <= n; d += 32) {
    acc0 = _mm256_fmadd_ps(load8(q + d), load8(row + d), acc0);
    acc1 = _mm256_fmadd_ps(load8(q + d + 8), load8(row + d + 8), acc1);
    acc2 = _mm256_fmadd_ps(load8(q + d + 16), load8(row + d + 16), acc2);
    acc3 = _mm256_fmadd_ps(load8(q + d + 24), load8(row + d + 24), acc3);
  }
  for (; d + 8 <= n; d += 8) acc0 = _mm256_fmadd_ps(load8(q + d), load8(row + d), acc0);
  float sum = horizontal_sum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
  for (; d < n; ++d) sum += q[d] * element_to_float(row[d]);
  return sum;
}

template <typename Element>
void score_avx2(const float* q, const void* k, int64_t row_stride, const uint8_t* mask, int64_t n_kv, int head_dim,
                float scale, float* scores) {
  const Element* rows = static_cast<const Element*>(k);
  for (int64_t j = 0; j < n_kv; ++j) {
    if (mask[j]) scores[j] = dot_avx2(q, rows + j * row_stride, head_dim) * scale;
  }
}

// acc[d0 .. d0 + 8 * kRegs) over all visible rows, kept in registers for the whole pass.
template <int kRegs, typename Element>
void accumulate_block(const float* weights, const Element* rows, int64_t row_stride, const uint8_t* mask,
                      int64_t n_kv, int d0, float* acc) {
  __m256 sums[kRegs];
  for (int r = 0; r < kRegs; ++r) sums[r] = _mm256_setzero_ps();
  for (int64_t j = 0; j < n_kv; ++j) {
    if (!mask[j]) continue;
    const __m256 w = _mm256_set1_ps(weights[j]);
    const Element* row = rows + j * row_stride + d0;
    for (int r = 0; r < kRegs; ++r) sums[r] = _mm256_fmadd_ps(w, load8(row + 8 * r), sums[r]);
  }
  for (int r = 0; r < kRegs; ++r) _mm256_storeu_ps(acc + d0 + 8 * r, sums[r]);
}

template <typename Element>
void accumulate_avx2(const float* weights, const void* v, int64_t row_stride, const uint8_t* mask, int64_t n_kv,
                     int head_dim, float* acc) {
  const Element* rows = static_cast<const Element*>(v);
  int d = 0;
  for (; d + 64 <= head_dim; d += 64) accumulate_block<8>(weights, rows, row_stride, mask, n_kv, d, acc);
  for (; d + 8 <= head_dim; d += 8) accumulate_block<1>(weights, rows, row_stride, mask, n_kv, d, acc);
  for (; d < head_dim; ++d) {
    float sum = 0.0f;
    for (int64_t j = 0; j < n_kv; ++j) {
      if (mask[j]) sum += weights[j] * element_to_float(rows[j * row_stride + d]);
    }
    acc[d] = sum;
  }
}

}  // namespace

AttentionRowKernels attention_row_kernels_avx2(KvType kv_type) {
  if (kv_type == KvType::F16) return {score_avx2<uint16_t>, accumulate_avx2<uint16_t>};
  return {score_avx2<float>, accumulate_avx2<float>};
}

}  // namespace duet
