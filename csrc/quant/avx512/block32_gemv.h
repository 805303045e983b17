// One activation row against many weight rows (decode) for Q4_0 and Q5_0.
//
// vec_dot unpacks a block into signed bytes (q - offset) and moves their signs onto
// the activations for vpdpbusd; spreading Q5_0's fifth bits into bytes alone took
// five vector operations. Here the weights stay unsigned: the nibbles as
// avx2::nibbles_unpack gives them, the fifth bits added with one masked add from a
// mask register, and vpdpbusd multiplies them by the signed activations directly.
// The offset comes off through vpdpbusd's start value, -offset * (sum of each
// lane's four activations), computed once per call for the activation row. Each
// lane's integer sum is then vec_dot's, and the float steps (the block's scale
// times the activation's, one FMA per block, the same horizontal sum) are its
// own, so every result has vec_dot's bits. Two weight rows go side by side: their
// FMA chains are independent, and each activation block is loaded once for both.
#pragma once
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "quant/avx2/avx2_common.h"
#include "quant/avx2/block32_unpack.h"

// Everything here has internal linkage: this header is compiled into files built
// with different ISA flags, and the linker must not pick one file's copy for all.
namespace duet::avx512 {
namespace {

struct Q4_0Unsigned {
  using Block = BlockQ4_0;
  static constexpr int kOffset = 8;
  static __m256i unpack(const Block& block) { return avx2::nibbles_unpack(block.qs); }
};

struct Q5_0Unsigned {
  using Block = BlockQ5_0;
  static constexpr int kOffset = 16;
  static __m256i unpack(const Block& block) {
    uint32_t qh;
    std::memcpy(&qh, block.qh, 4);
    const __m256i low = avx2::nibbles_unpack(block.qs);
    return _mm256_mask_add_epi8(low, _cvtu32_mask32(qh), low, _mm256_set1_epi8(16));
  }
};

// -kOffset * (sum of the four activations of each lane), per block of the row.
// (int32 rather than __m256i elements: a vector drops the type's alignment attribute.)
template <int kOffset>
const int32_t* offset_starts(const ActQ8_32* a, int64_t n_blocks) {
  thread_local std::vector<int32_t> starts;
  starts.resize(static_cast<size_t>(n_blocks) * 8);
  const __m256i offset = _mm256_set1_epi8(kOffset);
  for (int64_t b = 0; b < n_blocks; ++b) {
    const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
    const __m256i sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), offset, av);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(&starts[8 * b]), _mm256_sub_epi32(_mm256_setzero_si256(), sums));
  }
  return starts.data();
}

// R weight rows, w_stride bytes apart, against the activation row a.
template <typename Format, int R>
void block32_gemv_rows(int64_t n_blocks, const uint8_t* w, size_t w_stride, const ActQ8_32* a,
                       const int32_t* starts, float* out) {
  using Block = typename Format::Block;
  const Block* rows[R];
  __m256 acc[R];
  for (int i = 0; i < R; ++i) {
    rows[i] = reinterpret_cast<const Block*>(w + i * w_stride);
    acc[i] = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < n_blocks; ++b) {
    const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
    const __m256i start = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(&starts[8 * b]));
    const __m256 act_d = _mm256_set1_ps(a[b].d);
    // Unrolled, or GCC keeps the accumulators in memory and chains every FMA
    // through a store and a load.
#pragma GCC unroll 2
    for (int i = 0; i < R; ++i) {
      avx2::weights_prefetch(rows[i] + b);
      const __m256i sums = _mm256_dpbusd_epi32(start, Format::unpack(rows[i][b]), av);
      // The scale converted already broadcast (one load-broadcast, no move from an
      // integer register); each lane's product is vec_dot's scalar one.
      const __m256 d = _mm256_mul_ps(_mm256_cvtph_ps(_mm_set1_epi16(static_cast<short>(rows[i][b].d))), act_d);
      acc[i] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc[i]);
    }
  }
  for (int i = 0; i < R; ++i) out[i] = avx2::hsum_f32x8(acc[i]);
}

template <typename Format>
void block32_gemv(int64_t n, const void* w, size_t w_stride, int64_t n_rows, const void* act, float* out) {
  const int64_t n_blocks = n / QK32;
  const ActQ8_32* a = static_cast<const ActQ8_32*>(act);
  const int32_t* starts = offset_starts<Format::kOffset>(a, n_blocks);
  const uint8_t* rows = static_cast<const uint8_t*>(w);
  int64_t r = 0;
  for (; r + 2 <= n_rows; r += 2) block32_gemv_rows<Format, 2>(n_blocks, rows + r * w_stride, w_stride, a, starts, out + r);
  if (r < n_rows) block32_gemv_rows<Format, 1>(n_blocks, rows + r * w_stride, w_stride, a, starts, out + r);
}

}  // namespace
}  // namespace duet::avx512
