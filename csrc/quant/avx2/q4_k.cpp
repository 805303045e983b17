// Q4_K x Q8_256 on AVX2: 32-byte chunk c holds sub-block 2c in its low nibbles
// and sub-block 2c+1 in its high nibbles.
#include "quant/avx2/avx2_kernels.h"
#include "quant/avx2/kquant_dot.h"

namespace duet::avx2 {

namespace {

__m128i q4_k_unpack(const BlockQ4_K& x, KBlockUnpacked& u) {
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  for (int c = 0; c < 4; ++c) {
    const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 32 * c));
    u.q[2 * c] = _mm256_and_si256(bytes, low4);
    u.q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4);
  }
  return kquant_scales_into(x.scales, u);
}

}  // namespace

void vec_dot_q4_k(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  kquant_mins_vec_dot<BlockQ4_K, q4_k_unpack>(n, w, act, act_stride, n_act, out);
}

}  // namespace duet::avx2
