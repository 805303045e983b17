// Integer dot products with AVX-512 VNNI, in the shapes the AVX2 loops take.
#pragma once
#include <immintrin.h>

#include "quant/avx2/kquant_dot.h"

// Everything here has internal linkage: this header is compiled into files built
// with different ISA flags, and the linker must not pick one file's copy for all.
namespace duet::avx512 {
namespace {

using avx2::KBlockUnpacked;

// As avx2::dot_i8_i8, with vpdpbusd summing the four products per lane directly.
inline __m256i dot_i8_i8_vnni(__m256i w_abs, __m256i w, __m256i a) {
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), w_abs, _mm256_sign_epi8(a, w));
}

// As avx2::kblock_dot_rows, over 64-element chunk pairs: one 512-bit maddubs per
// pair and vpdpwssd to scale and accumulate the pair sums.
template <int R>
inline void kblock_dot_rows512(const KBlockUnpacked& u, const int8_t* const a[R], __m256i sums[R]) {
  __m512i acc[R];
  for (int i = 0; i < R; ++i) acc[i] = _mm512_setzero_si512();
#pragma GCC unroll 1
  for (int k = 0; k < 4; ++k) {
    const __m512i q = _mm512_load_si512(&u.q[2 * k]);
    const __m512i scale = _mm512_load_si512(&u.scale[2 * k]);
    for (int i = 0; i < R; ++i) {
      const __m512i av = _mm512_loadu_si512(a[i] + 64 * k);
      acc[i] = _mm512_dpwssd_epi32(acc[i], _mm512_maddubs_epi16(q, av), scale);
    }
  }
  for (int i = 0; i < R; ++i) {
    sums[i] = _mm256_add_epi32(_mm512_castsi512_si256(acc[i]), _mm512_extracti64x4_epi64(acc[i], 1));
  }
}

struct KBlockDot512 {
  static constexpr bool kFusedOneRow = false;  // its chunk pairs need the unpacked block
  template <int R>
  static void rows(const KBlockUnpacked& u, const int8_t* const a[R], __m256i sums[R]) {
    kblock_dot_rows512<R>(u, a, sums);
  }
};

}  // namespace
}  // namespace duet::avx512
