// A few activation rows against many weight rows (decode) for Q4_0, Q5_0 and Q8_0.
//
// vec_dot unpacks a block into signed bytes (q - offset) and moves their signs onto
// the activations for vpdpbusd; spreading Q5_0's fifth bits into bytes alone took
// five vector operations. Here the weights stay unsigned: the nibbles as
// avx2::nibbles_unpack gives them, the fifth bits added with one masked add from a
// mask register, Q8_0's signed bytes moved up by 128 with one xor, and vpdpbusd
// multiplies them by the signed activations directly.
// The offset comes off through vpdpbusd's start value (avx2/block32_gemv.h, which
// runs these formats).
#pragma once
#include <immintrin.h>

#include <cstring>

#include "quant/avx2/block32_gemv.h"

// Everything here has internal linkage: this header is compiled into files built
// with different ISA flags, and the linker must not pick one file's copy for all.
namespace duet::avx512 {
namespace {

// vpdpbusd: the four products of each lane summed into it in one instruction.
struct VnniDot {
  static __m256i dot(__m256i start, __m256i q, __m256i a) { return _mm256_dpbusd_epi32(start, q, a); }
};

struct Q4_0Unsigned : VnniDot {
  using Block = BlockQ4_0;
  static constexpr int kOffset = 8;
  static __m256i unpack(const Block& block) { return avx2::nibbles_unpack(block.qs); }
};

struct Q5_0Unsigned : VnniDot {
  using Block = BlockQ5_0;
  static constexpr int kOffset = 16;
  static __m256i unpack(const Block& block) {
    uint32_t qh;
    std::memcpy(&qh, block.qh, 4);
    const __m256i low = avx2::nibbles_unpack(block.qs);
    return _mm256_mask_add_epi8(low, _cvtu32_mask32(qh), low, _mm256_set1_epi8(16));
  }
};

// Without a GEMV, four to eight decoded rows took Q8_0's tile, which unpacks into
// L1 for sixteen rows: four rows of the 0.5B's 151936x896 head cost 2.7x three.
// Below four rows vec_dot stays faster (kernel_table.cpp).
struct Q8_0Unsigned : VnniDot {
  using Block = BlockQ8_0;
  static constexpr int kOffset = 128;
  static __m256i unpack(const Block& block) {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.qs)), _mm256_set1_epi8(-128));
  }
};

}  // namespace
}  // namespace duet::avx512
