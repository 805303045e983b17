#include <cstring>

#include "quant/avx2/avx2_kernels.h"
#include "quant/avx2/block32_dot.h"

namespace duet::avx2 {

namespace {

// 0xff in byte j where bit j of the 32-bit word is set.
__m256i bits_to_bytes(uint32_t bits) {
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(bits)),
      _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
  const __m256i bit_of_byte = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ULL));
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit_of_byte), bit_of_byte);
}

// q - 16 as int8: where the 5th bit is clear, setting the top nibble to 0xf
// subtracts 16; where it is set, (q4 + 16) - 16 is the nibble itself.
__m256i q5_0_unpack(const BlockQ5_0& block) {
  uint32_t qh;
  std::memcpy(&qh, block.qh, 4);
  return _mm256_or_si256(nibbles_unpack(block.qs),
                         _mm256_andnot_si256(bits_to_bytes(qh), _mm256_set1_epi8(static_cast<char>(0xf0))));
}

}  // namespace

void vec_dot_q5_0(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  block32_vec_dot<BlockQ5_0, q5_0_unpack>(n, w, act, act_stride, n_act, out);
}

}  // namespace duet::avx2
