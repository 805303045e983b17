// A few activation rows against many weight rows (decode) for the 32-element
// formats, the weights kept unsigned. A Format gives Block, kOffset, unpack(block)
// -> the 32 weights + kOffset as unsigned bytes, and dot(start, q, a) -> start plus
// the sums of q * a over each 4-byte group (q unsigned, a signed), int32[8]. The
// offset comes off through dot's start value, -kOffset * (sum of each lane's four
// activations), computed once per call for each activation row. Each lane's integer
// sum is then vec_dot's, and the float steps (the block's scale times the
// activation's, one FMA per block, the same horizontal sum) are its own, so every
// result has vec_dot's bits. Two weight rows go side by side: their FMA chains are
// independent, and each activation block is loaded once for both. A few decoded
// rows (a small tree) share each unpacked weight block.
#pragma once
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "quant/avx2/avx2_common.h"
#include "quant/avx2/block32_unpack.h"

// Everything here has internal linkage: this header is compiled into files built
// with different ISA flags, and the linker must not pick one file's copy for all.
namespace duet::avx2 {
namespace {

// Q4_0's and Q5_0's unsigned weights (at most 31) by signed activations (at most
// 127 in magnitude): maddubs's pair sums stay far from saturating. (Q8_0's bytes
// moved up by 128 would not: 2 * 255 * 127 > 2^15.)
inline __m256i dot_u8_i8(__m256i start, __m256i q, __m256i a) {
  return _mm256_add_epi32(start, _mm256_madd_epi16(_mm256_maddubs_epi16(q, a), _mm256_set1_epi16(1)));
}

struct Q4_0Unsigned {
  using Block = BlockQ4_0;
  static constexpr int kOffset = 8;
  static __m256i unpack(const Block& block) { return nibbles_unpack(block.qs); }
  static __m256i dot(__m256i start, __m256i q, __m256i a) { return dot_u8_i8(start, q, a); }
};

struct Q5_0Unsigned {
  using Block = BlockQ5_0;
  static constexpr int kOffset = 16;
  static __m256i unpack(const Block& block) {
    uint32_t qh;
    std::memcpy(&qh, block.qh, 4);
    return _mm256_or_si256(nibbles_unpack(block.qs), _mm256_and_si256(bits_to_bytes(qh), _mm256_set1_epi8(16)));
  }
  static __m256i dot(__m256i start, __m256i q, __m256i a) { return dot_u8_i8(start, q, a); }
};

// -kOffset * (sum of the four activations of each lane), per block of each of
// n_act activation rows: row i's from starts + i * 8 * n_blocks on.
// (int32 rather than __m256i elements: a vector drops the type's alignment attribute.)
template <typename Format>
const int32_t* offset_starts(const uint8_t* act, size_t act_stride, int n_act, int64_t n_blocks) {
  thread_local std::vector<int32_t> starts;
  starts.resize(static_cast<size_t>(n_act * n_blocks) * 8);
  const __m256i offset = _mm256_set1_epi8(static_cast<char>(Format::kOffset));
  for (int i = 0; i < n_act; ++i) {
    const ActQ8_32* a = reinterpret_cast<const ActQ8_32*>(act + i * act_stride);
    int32_t* row = &starts[static_cast<size_t>(i * n_blocks) * 8];
    for (int64_t b = 0; b < n_blocks; ++b) {
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
      const __m256i sums = Format::dot(_mm256_setzero_si256(), offset, av);
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
      weights_prefetch(rows[i] + b);
      const __m256i q = Format::unpack(rows[i][b]);
      // The scale converted already broadcast (one load-broadcast, no move from an
      // integer register); each lane's product is vec_dot's scalar one.
      const __m256 wd = _mm256_cvtph_ps(_mm_set1_epi16(static_cast<short>(rows[i][b].d)));
      for (int k = 0; k < A; ++k) {
        const __m256i sums = Format::dot(start[k], q, av[k]);
        acc[i][k] = _mm256_fmadd_ps(_mm256_mul_ps(wd, act_d[k]), _mm256_cvtepi32_ps(sums), acc[i][k]);
      }
    }
  }
  for (int i = 0; i < R; ++i) {
    for (int k = 0; k < A; ++k) out[k * ldo + i] = hsum_f32x8(acc[i][k]);
  }
}

template <typename Format>
void block32_gemv(int64_t n, const void* w, size_t w_stride, int64_t n_rows, const void* act, size_t act_stride,
                  int n_act, float* out, int64_t ldo) {
  const int64_t n_blocks = n / QK32;
  const uint8_t* a = static_cast<const uint8_t*>(act);
  const int32_t* starts = offset_starts<Format>(a, act_stride, n_act, n_blocks);
  const uint8_t* rows = static_cast<const uint8_t*>(w);
  gemv_rows_dispatch(n_act, [&](auto group) {
    constexpr int A = decltype(group)::value;
    int64_t r = 0;
    for (; r + 2 <= n_rows; r += 2) {
      block32_gemv_rows<Format, 2, A>(n_blocks, rows + r * w_stride, w_stride, a, act_stride, starts, out + r, ldo);
    }
    if (r < n_rows) block32_gemv_rows<Format, 1, A>(n_blocks, rows + r * w_stride, w_stride, a, act_stride, starts, out + r, ldo);
  });
}

}  // namespace
}  // namespace duet::avx2
