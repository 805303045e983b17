// Q6_K x Q8_256 on AVX2: the unsigned 6-bit values go through maddubs; the -32
// offset is taken once per block as 32 * sum(scale_j * bsums_j), exactly in int32.
#include "quant/avx2/avx2_kernels.h"
#include "quant/avx2/avx2_common.h"
#include "quant/row_groups.h"

namespace duet::avx2 {

namespace {

// (bits of qh at `shift`, 2 of them) << 4 | the nibble: a 6-bit value per byte.
inline __m256i q6_combine(__m256i nibble, __m256i qh, int shift) {
  const __m256i high = _mm256_and_si256(_mm256_srli_epi16(qh, shift), _mm256_set1_epi8(3));
  return _mm256_or_si256(nibble, _mm256_slli_epi16(high, 4));
}

template <int N>
void q6_k_dot_rows(int64_t n, const void* w, const uint8_t* act, size_t stride, float* out) {
  const BlockQ6_K* blocks = static_cast<const BlockQ6_K*>(w);
  const ActQ8_256* rows[N];
  __m256 acc[N];
  for (int r = 0; r < N; ++r) {
    rows[r] = reinterpret_cast<const ActQ8_256*>(act + r * stride);
    acc[r] = _mm256_setzero_ps();
  }
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const int64_t n_blocks = n / QK_K;
  for (int64_t b = 0; b < n_blocks; ++b) {
    const BlockQ6_K& x = blocks[b];
    _mm_prefetch(reinterpret_cast<const char*>(&x) + 840, _MM_HINT_T0);
    const __m256i scales_all = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x.scales)));
    __m256i sumi[N];
    for (int r = 0; r < N; ++r) {
      const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r][b].bsums));
      sumi[r] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(scales_all, bsums), 5));
    }
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.ql + 64 * h));
      const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.ql + 64 * h + 32));
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qh + 32 * h));
      const __m256i q[4] = {
          q6_combine(_mm256_and_si256(ql0, low4), qh, 0),
          q6_combine(_mm256_and_si256(ql1, low4), qh, 2),
          q6_combine(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), qh, 4),
          q6_combine(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4), qh, 6),
      };
      // Both halves hold this half's eight scales; chunk k takes scale 2k (low 16
      // bytes) and 2k+1 (high 16 bytes).
      const __m256i half_scales = _mm256_broadcastsi128_si256(
          _mm_cvtepi8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x.scales + 8 * h))));
      for (int k = 0; k < 4; ++k) {
        const __m256i scale = _mm256_shuffle_epi8(half_scales, broadcast16_control(2 * k, 2 * k + 1));
        for (int r = 0; r < N; ++r) {
          const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r][b].qs + 128 * h + 32 * k));
          sumi[r] = _mm256_add_epi32(sumi[r], dot_u8_i8_scaled(q[k], a, scale));
        }
      }
    }
    const float d = f16_load(x.d);
    for (int r = 0; r < N; ++r) {
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * rows[r][b].d), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
    }
  }
  for (int r = 0; r < N; ++r) out[r] = hsum_f32x8(acc[r]);
}

}  // namespace

void vec_dot_q6_k(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  static const RowsKernel kernels[kRowGroup] = {q6_k_dot_rows<1>, q6_k_dot_rows<2>, q6_k_dot_rows<3>,
                                                q6_k_dot_rows<4>};
  run_row_groups(kernels, n, w, act, act_stride, n_act, out);
}

}  // namespace duet::avx2
