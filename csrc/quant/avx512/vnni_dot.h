// Integer dot products with AVX-512 VNNI, in the shapes the AVX2 loops take.
#pragma once
#include <immintrin.h>

#include "quant/avx2/kquant_dot.h"
#include "quant/avx2/kquant_tile.h"

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
  static constexpr bool kFused = false;  // its chunk pairs need the unpacked block
  template <int R>
  static void rows(const KBlockUnpacked& u, const int8_t* const a[R], __m256i sums[R]) {
    kblock_dot_rows512<R>(u, a, sums);
  }
};

// avx2::KBlockDotAvx2 with vpdpwssd scaling and accumulating each chunk's pair
// sums in one instruction, for the GEMVs: a decoded row's work per chunk is then a
// load and two multiplies, which bounds how cheaply a few rows share a weight block.
struct KChunkDotVnni : avx2::KBlockDotAvx2 {
  static __m256i chunk_add(__m256i sum, __m256i q, __m256i a, __m256i scale) {
    return _mm256_dpwssd_epi32(sum, _mm256_maddubs_epi16(q, a), scale);
  }
};

// avx2::Lanes8's operations on 16 lanes, for the tiles (avx2/kquant_tile.h, block32_tile.h).
struct Lanes16 {
  static constexpr int kLanes = 16;
  using I = __m512i;
  using F = __m512;
  static I zero() { return _mm512_setzero_si512(); }
  static F zero_ps() { return _mm512_setzero_ps(); }
  static I set1(int32_t v) { return _mm512_set1_epi32(v); }
  static F set1_ps(float v) { return _mm512_set1_ps(v); }
  static I offsets(size_t stride) {
    return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                              _mm512_set1_epi32(static_cast<int>(stride)));
  }
  static I gather(I offsets, const uint8_t* base) { return _mm512_i32gather_epi32(offsets, base, 1); }
  static I loadu(const uint8_t* p) { return _mm512_loadu_si512(p); }
  static I unpacklo32(I a, I b) { return _mm512_unpacklo_epi32(a, b); }
  static I unpackhi32(I a, I b) { return _mm512_unpackhi_epi32(a, b); }
  static I unpacklo64(I a, I b) { return _mm512_unpacklo_epi64(a, b); }
  static I unpackhi64(I a, I b) { return _mm512_unpackhi_epi64(a, b); }
  static void lanes128_transpose(const I in[4], I out[4]) {
    const I x0 = _mm512_shuffle_i32x4(in[0], in[1], 0x44), x1 = _mm512_shuffle_i32x4(in[0], in[1], 0xee);
    const I y0 = _mm512_shuffle_i32x4(in[2], in[3], 0x44), y1 = _mm512_shuffle_i32x4(in[2], in[3], 0xee);
    out[0] = _mm512_shuffle_i32x4(x0, y0, 0x88);
    out[1] = _mm512_shuffle_i32x4(x0, y0, 0xdd);
    out[2] = _mm512_shuffle_i32x4(x1, y1, 0x88);
    out[3] = _mm512_shuffle_i32x4(x1, y1, 0xdd);
  }
  static I and_(I a, I b) { return _mm512_and_si512(a, b); }
  static I or_(I a, I b) { return _mm512_or_si512(a, b); }
  static I srli(I a, int n) { return _mm512_srli_epi32(a, n); }
  static I slli(I a, int n) { return _mm512_slli_epi32(a, n); }
  static I shuffle(I a, I control) { return _mm512_shuffle_epi8(a, control); }
  static I control(const int8_t dword_bytes[4]) {
    return _mm512_broadcast_i32x4(_mm256_castsi256_si128(avx2::Lanes8::control(dword_bytes)));
  }
  static I maddubs(I u, I s) { return _mm512_maddubs_epi16(u, s); }
  static I add16(I a, I b) { return _mm512_add_epi16(a, b); }
  static I sub32(I a, I b) { return _mm512_sub_epi32(a, b); }
  static I srai16(I a, int n) { return _mm512_srai_epi16(a, n); }
  static I dot16(I acc, I a, I b) { return _mm512_dpwssd_epi32(acc, a, b); }
  static F cvt(I a) { return _mm512_cvtepi32_ps(a); }
  static F f16_half(I a, bool high) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(high ? _mm512_srli_epi32(a, 16) : a)); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F fnmadd(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }
  static void store(float* y, F v) { _mm512_storeu_ps(y, v); }
};

}  // namespace
}  // namespace duet::avx512
