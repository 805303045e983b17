// Unpacking the 32-element formats into 32 signed bytes (q - offset), shared by
// the AVX2 and AVX-512 paths.
#pragma once
#include <cstring>

#include "quant/avx2/avx2_common.h"

// Everything here has internal linkage: this header is compiled into files built
// with different ISA flags, and the linker must not pick one file's copy for all.
namespace duet::avx2 {
namespace {

// The 32 nibbles of 16 bytes in element order: low nibbles then high nibbles,
// unsigned. One broadcast load, one shift, one mask: shifting whole qwords is exact
// here, since the bits that cross into a byte from its neighbour land in the high
// nibble, which the mask clears.
inline __m256i nibbles_unpack(const uint8_t qs[16]) {
  const __m256i bytes = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
  return _mm256_and_si256(_mm256_srlv_epi64(bytes, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(0x0f));
}

// 0xff in byte j where bit j of the 32-bit word is set.
inline __m256i bits_to_bytes(uint32_t bits) {
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(bits)),
      _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
  const __m256i bit_of_byte = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ULL));
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit_of_byte), bit_of_byte);
}

inline __m256i q4_0_unpack(const BlockQ4_0& block) {
  return _mm256_sub_epi8(nibbles_unpack(block.qs), _mm256_set1_epi8(8));
}

// q - 16 as int8: where the 5th bit is clear, setting the top nibble to 0xf
// subtracts 16; where it is set, (q4 + 16) - 16 is the nibble itself.
inline __m256i q5_0_unpack(const BlockQ5_0& block) {
  uint32_t qh;
  std::memcpy(&qh, block.qh, 4);
  return _mm256_or_si256(nibbles_unpack(block.qs),
                         _mm256_andnot_si256(bits_to_bytes(qh), _mm256_set1_epi8(static_cast<char>(0xf0))));
}

inline __m256i q8_0_unpack(const BlockQ8_0& block) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.qs));
}

}  // namespace
}  // namespace duet::avx2
