// Q5_K x Q8_256 on AVX2: as Q4_K, with the 5th bit of each weight from qh
// (bit 2c for the low-nibble sub-block of chunk c, bit 2c+1 for the high one).
#include "quant/avx2/avx2_kernels.h"
#include "quant/avx2/kquant_dot.h"

namespace duet::avx2 {

namespace {

// 16 in each byte of qh whose bit `bit` is set, else 0.
inline __m256i high_bit_16(__m256i qh, int bit) {
  const __m256i mask = _mm256_set1_epi8(static_cast<char>(1 << bit));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, mask), mask), _mm256_set1_epi8(16));
}

__m128i q5_k_unpack(const BlockQ5_K& x, KBlockUnpacked& u) {
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qh));
  for (int c = 0; c < 4; ++c) {
    const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 32 * c));
    u.q[2 * c] = _mm256_or_si256(_mm256_and_si256(bytes, low4), high_bit_16(qh, 2 * c));
    u.q[2 * c + 1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4), high_bit_16(qh, 2 * c + 1));
  }
  return kquant_scales_into(x.scales, u);
}

}  // namespace

void vec_dot_q5_k(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  kquant_mins_vec_dot<BlockQ5_K, q5_k_unpack>(n, w, act, act_stride, n_act, out);
}

}  // namespace duet::avx2
