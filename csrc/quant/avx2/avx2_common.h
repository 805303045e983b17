// Shared pieces of the AVX2 kernels (compiled only with -mavx2 -mfma -mf16c).
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "quant/formats.h"
#include "quant/kernels.h"

// Everything here has internal linkage: this header is compiled into files built
// with different ISA flags, and the linker must not pick one file's copy for all.
namespace duet::avx2 {
namespace {

// (Not _cvtsh_ss: GCC makes that an insert into a zeroed register and a move out
// through an integer register.)
inline float f16_load(uint16_t h) { return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h))); }

// Asks for the cache line at `at` of a weight stream into L2, not L1 (why: kernels.h).
inline void weight_line_prefetch(const void* at) { _mm_prefetch(static_cast<const char*>(at), _MM_HINT_T1); }

// Every line of a Block that starts at `at` (it may straddle one more: the next
// block's request covers that).
template <typename Block>
inline void block_lines_prefetch(const char* at) {
  for (size_t line = 0; line < sizeof(Block); line += 64) weight_line_prefetch(at + line);
}

// The block's first line kWeightPrefetchBytes ahead, or with every_line each of its
// lines (a K-quant block spans three or four). A GEMV over a few decoded rows
// spends longer on each block than one row does, and with one line a block asked
// for, the hardware did not fetch the rest in time: the 1.5B's pass over 3, 4 and
// 8 decoded tokens took 58.0-58.4, 71.4-72.1 and 122 ms, with every line asked for
// 49.3-49.6, 59.9-60.3 and 110.2-110.7 (ffn_down's 8960 columns, Q6_K, 3 rows: 0.79
// ms from memory against 0.36 from cache, then 0.43-0.47; session 29, Zen 4). One
// row is bound by memory either way and keeps its one prefetch a block.
template <typename Block>
inline void weights_prefetch(const Block* block, bool every_line = false) {
  const char* ahead = reinterpret_cast<const char*>(block) + kWeightPrefetchBytes;
  if (every_line) {
    block_lines_prefetch<Block>(ahead);
  } else {
    weight_line_prefetch(ahead);
  }
}

// f(std::integral_constant<int, n_act>()) for 1 <= n_act <= kMaxGemvRows: code
// compiled for each row count a GEMV takes.
template <int R = 1, typename F>
inline void gemv_rows_dispatch(int n_act, F&& f) {
  if constexpr (R <= kMaxGemvRows) {
    if (n_act == R) return f(std::integral_constant<int, R>());
    gemv_rows_dispatch<R + 1>(n_act, f);
  }
}

inline float hsum_f32x8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float hsum_f32x4(__m128 s) {
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Products of unsigned bytes u with signed bytes s, summed in pairs and then
// scaled per pair-of-pairs by 16-bit factors: int32[8]. Exact for the ranges used
// here (u <= 63, |s| <= 128) since pair sums stay below 2^15.
inline __m256i dot_u8_i8_scaled(__m256i u, __m256i s, __m256i scale16) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), scale16);
}

// Sum over 4-byte groups of signed w times signed a, as int32[8]. maddubs takes one
// unsigned operand, so the signs move onto the activations.
inline __m256i dot_i8_i8(__m256i w_abs, __m256i w, __m256i a) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(w_abs, _mm256_sign_epi8(a, w)), _mm256_set1_epi16(1));
}

// The shuffle control that copies 16-bit lane `lo` of each 128-bit half into every
// lane of the low half and lane `hi` into every lane of the high half. Written
// element by element so that constant arguments fold into one constant load.
inline __m256i broadcast16_control(int lo, int hi) {
  const short l = static_cast<short>(((2 * lo + 1) << 8) | (2 * lo));
  const short h = static_cast<short>(((2 * hi + 1) << 8) | (2 * hi));
  return _mm256_setr_epi16(l, l, l, l, l, l, l, l, h, h, h, h, h, h, h, h);
}

}  // namespace
}  // namespace duet::avx2
