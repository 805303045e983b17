// Q6_K x Q8_256 on AVX2: the unsigned 6-bit values go through maddubs; the -32
// offset is taken once per block as 32 * sum(scale_j * bsums_j), exactly in int32.
#include "quant/avx2/avx2_kernels.h"
#include "quant/avx2/kquant_dot.h"

namespace duet::avx2 {

namespace {

// (2 bits of qh at `shift`) << 4 | the nibble: a 6-bit value per byte.
inline __m256i q6_combine(__m256i nibble, __m256i qh, int shift) {
  const __m256i high = _mm256_and_si256(_mm256_srli_epi16(qh, shift), _mm256_set1_epi8(3));
  return _mm256_or_si256(nibble, _mm256_slli_epi16(high, 4));
}

void q6_k_unpack(const BlockQ6_K& x, KBlockUnpacked& u) {
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  for (int h = 0; h < 2; ++h) {
    const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.ql + 64 * h));
    const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.ql + 64 * h + 32));
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qh + 32 * h));
    u.q[4 * h + 0] = q6_combine(_mm256_and_si256(ql0, low4), qh, 0);
    u.q[4 * h + 1] = q6_combine(_mm256_and_si256(ql1, low4), qh, 2);
    u.q[4 * h + 2] = q6_combine(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), qh, 4);
    u.q[4 * h + 3] = q6_combine(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4), qh, 6);
    // Both 128-bit halves hold this half's eight scales; chunk k takes scale 2k for
    // its first 16 elements and 2k+1 for the last 16.
    const __m256i half_scales = _mm256_broadcastsi128_si256(
        _mm_cvtepi8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x.scales + 8 * h))));
    for (int k = 0; k < 4; ++k) {
      u.scale[4 * h + k] = _mm256_shuffle_epi8(half_scales, broadcast16_control(2 * k, 2 * k + 1));
    }
  }
}

}  // namespace

void vec_dot_q6_k(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  const BlockQ6_K* blocks = static_cast<const BlockQ6_K*>(w);
  const uint8_t* rows = static_cast<const uint8_t*>(act);
  __m256 acc[kMaxActRows];
  for (int r = 0; r < n_act; ++r) acc[r] = _mm256_setzero_ps();
  KBlockUnpacked u;
  const int64_t n_blocks = n / QK_K;
  for (int64_t b = 0; b < n_blocks; ++b) {
    _mm_prefetch(reinterpret_cast<const char*>(blocks + b + 4), _MM_HINT_T0);
    q6_k_unpack(blocks[b], u);
    const __m256i scales_all = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blocks[b].scales)));
    const float d = f16_load(blocks[b].d);
    const ActQ8_256* a[kMaxActRows];
    const int8_t* qs[kMaxActRows];
    act_blocks_gather(rows, act_stride, n_act, b, a, qs);
    __m256i sumi[kMaxActRows];
    kblock_dot(u, qs, n_act, sumi);
    for (int r = 0; r < n_act; ++r) {
      const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[r]->bsums));
      const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(scales_all, bsums), 5);
      const __m256 sum = _mm256_cvtepi32_ps(_mm256_sub_epi32(sumi[r], offset));
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * a[r]->d), sum, acc[r]);
    }
  }
  for (int r = 0; r < n_act; ++r) out[r] = hsum_f32x8(acc[r]);
}

}  // namespace duet::avx2
