// A few activation rows against many weight rows (decode) for Q4_0, Q5_0 and Q8_0.
//
// vec_dot unpacks a block into signed bytes (q - offset) and moves their signs onto
// the activations for vpdpbusd; spreading Q5_0's fifth bits into bytes alone took
// five vector operations. Here the weights stay unsigned: the nibbles as
// avx2::nibbles_unpack gives them, the fifth bits added with one masked add from a
// mask register, Q8_0's signed bytes moved up by 128 with one xor, and vpdpbusd
// multiplies them by the signed activations directly.
// The offset comes off through vpdpbusd's start value, -offset * (sum of each
// lane's four activations), computed once per call for each activation row. Each
// lane's integer sum is then vec_dot's, and the float steps (the block's scale
// times the activation's, one FMA per block, the same horizontal sum) are its
// own, so every result has vec_dot's bits. Two weight rows go side by side: their
// FMA chains are independent, and each activation block is loaded once for both.
// A few decoded rows (a small tree) share each unpacked weight block.
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

// Without a GEMV, four to eight decoded rows took Q8_0's tile, which unpacks into
// L1 for sixteen rows: four rows of the 0.5B's 151936x896 head cost 2.7x three.
// Below four rows vec_dot stays faster (kernel_table.cpp).
struct Q8_0Unsigned {
  using Block = BlockQ8_0;
  static constexpr int kOffset = 128;
  static __m256i unpack(const Block& block) {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.qs)), _mm256_set1_epi8(-128));
  }
};

// -kOffset * (sum of the four activations of each lane), per block of each of
// n_act activation rows: row i's from starts + i * 8 * n_blocks on.
// (int32 rather than __m256i elements: a vector drops the type's alignment attribute.)
template <int kOffset>
const int32_t* offset_starts(const uint8_t* act, size_t act_stride, int n_act, int64_t n_blocks) {
  thread_local std::vector<int32_t> starts;
  starts.resize(static_cast<size_t>(n_act * n_blocks) * 8);
  const __m256i offset = _mm256_set1_epi8(static_cast<char>(kOffset));
  for (int i = 0; i < n_act; ++i) {
    const ActQ8_32* a = reinterpret_cast<const ActQ8_32*>(act + i * act_stride);
    int32_t* row = &starts[static_cast<size_t>(i * n_blocks) * 8];
    for (int64_t b = 0; b < n_blocks; ++b) {
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
      const __m256i sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), offset, av);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(row + 8 * b), _mm256_sub_epi32(_mm256_setzero_si256(), sums));
    }
  }
  return starts.data();
}

// R weight rows, w_stride bytes apart, against A activation rows: each weight block
// is unpacked once for all A rows.
template <typename Format, int R, int A>
void block32_gemv_rows(int64_t n_blocks, const uint8_t* w, size_t w_stride, const uint8_t* act, size_t act_stride,
                       const int32_t* starts, float* out, int64_t ldo) {
  using Block = typename Format::Block;
  const Block* rows[R];
  const ActQ8_32* a[A];
  __m256 acc[R][A];
  for (int i = 0; i < R; ++i) rows[i] = reinterpret_cast<const Block*>(w + i * w_stride);
  for (int k = 0; k < A; ++k) a[k] = reinterpret_cast<const ActQ8_32*>(act + k * act_stride);
  for (int i = 0; i < R; ++i) {
    for (int k = 0; k < A; ++k) acc[i][k] = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < n_blocks; ++b) {
    __m256i av[A], start[A];
    __m256 act_d[A];
    for (int k = 0; k < A; ++k) {
      av[k] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[k][b].qs));
      start[k] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(&starts[8 * (k * n_blocks + b)]));
      act_d[k] = _mm256_set1_ps(a[k][b].d);
    }
    // Unrolled, or GCC keeps the accumulators in memory and chains every FMA
    // through a store and a load.
#pragma GCC unroll 2
    for (int i = 0; i < R; ++i) {
      avx2::weights_prefetch(rows[i] + b);
      const __m256i q = Format::unpack(rows[i][b]);
      // The scale converted already broadcast (one load-broadcast, no move from an
      // integer register); each lane's product is vec_dot's scalar one.
      const __m256 wd = _mm256_cvtph_ps(_mm_set1_epi16(static_cast<short>(rows[i][b].d)));
      for (int k = 0; k < A; ++k) {
        const __m256i sums = _mm256_dpbusd_epi32(start[k], q, av[k]);
        acc[i][k] = _mm256_fmadd_ps(_mm256_mul_ps(wd, act_d[k]), _mm256_cvtepi32_ps(sums), acc[i][k]);
      }
    }
  }
  for (int i = 0; i < R; ++i) {
    for (int k = 0; k < A; ++k) out[k * ldo + i] = avx2::hsum_f32x8(acc[i][k]);
  }
}

template <typename Format>
void block32_gemv(int64_t n, const void* w, size_t w_stride, int64_t n_rows, const void* act, size_t act_stride,
                  int n_act, float* out, int64_t ldo) {
  const int64_t n_blocks = n / QK32;
  const uint8_t* a = static_cast<const uint8_t*>(act);
  const int32_t* starts = offset_starts<Format::kOffset>(a, act_stride, n_act, n_blocks);
  const uint8_t* rows = static_cast<const uint8_t*>(w);
  avx2::gemv_rows_dispatch(n_act, [&](auto group) {
    constexpr int A = decltype(group)::value;
    int64_t r = 0;
    for (; r + 2 <= n_rows; r += 2) {
      block32_gemv_rows<Format, 2, A>(n_blocks, rows + r * w_stride, w_stride, a, act_stride, starts, out + r, ldo);
    }
    if (r < n_rows) block32_gemv_rows<Format, 1, A>(n_blocks, rows + r * w_stride, w_stride, a, act_stride, starts, out + r, ldo);
  });
}

}  // namespace
}  // namespace duet::avx512
