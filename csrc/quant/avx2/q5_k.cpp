// Q5_K x Q8_256 on AVX2: as Q4_K, with the 5th bit of each weight from qh
// (bit 2c for the low-nibble sub-block of chunk c, bit 2c+1 for the high one).
#include "quant/avx2/avx2_kernels.h"
#include "quant/avx2/kquant_dot.h"
#include "quant/row_groups.h"

namespace duet::avx2 {

namespace {

// 16 in each byte of qh whose bit `bit` is set, else 0.
inline __m256i high_bit_16(__m256i qh, int bit) {
  const __m256i mask = _mm256_set1_epi8(static_cast<char>(1 << bit));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, mask), mask), _mm256_set1_epi8(16));
}

template <int N>
void q5_k_dot_rows(int64_t n, const void* w, const uint8_t* act, size_t stride, float* out) {
  const BlockQ5_K* blocks = static_cast<const BlockQ5_K*>(w);
  const ActQ8_256* rows[N];
  KQuantRowAcc acc[N];
  for (int r = 0; r < N; ++r) rows[r] = reinterpret_cast<const ActQ8_256*>(act + r * stride);
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const int64_t n_blocks = n / QK_K;
  for (int64_t b = 0; b < n_blocks; ++b) {
    const BlockQ5_K& x = blocks[b];
    _mm_prefetch(reinterpret_cast<const char*>(&x) + 704, _MM_HINT_T0);
    const KQuantScaleVectors sv = kquant_scale_vectors(x.scales);
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qh));
    __m256i sumi[N];
    for (int r = 0; r < N; ++r) sumi[r] = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 32 * c));
      const __m256i q_low = _mm256_or_si256(_mm256_and_si256(bytes, low4), high_bit_16(qh, 2 * c));
      const __m256i q_high =
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4), high_bit_16(qh, 2 * c + 1));
      const __m256i scale_low = _mm256_shuffle_epi8(sv.scales16, broadcast16_control(2 * c, 2 * c));
      const __m256i scale_high = _mm256_shuffle_epi8(sv.scales16, broadcast16_control(2 * c + 1, 2 * c + 1));
      for (int r = 0; r < N; ++r) {
        const int8_t* a = rows[r][b].qs + 64 * c;
        const __m256i p_low =
            dot_u8_i8_scaled(q_low, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a)), scale_low);
        const __m256i p_high =
            dot_u8_i8_scaled(q_high, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 32)), scale_high);
        sumi[r] = _mm256_add_epi32(sumi[r], _mm256_add_epi32(p_low, p_high));
      }
    }
    const float d = f16_load(x.d), dmin = f16_load(x.dmin);
    for (int r = 0; r < N; ++r) {
      const ActQ8_256& a = rows[r][b];
      kquant_row_accumulate(acc[r], sumi[r], kquant_mins_dot(sv.mins16, a), d * a.d, -(dmin * a.d));
    }
  }
  for (int r = 0; r < N; ++r) out[r] = kquant_row_result(acc[r]);
}

}  // namespace

void vec_dot_q5_k(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  static const RowsKernel kernels[kRowGroup] = {q5_k_dot_rows<1>, q5_k_dot_rows<2>, q5_k_dot_rows<3>,
                                                q5_k_dot_rows<4>};
  run_row_groups(kernels, n, w, act, act_stride, n_act, out);
}

}  // namespace duet::avx2
