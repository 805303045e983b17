// Unpacking a K-quant super-block chunk by chunk: XChunks::each(block, f) calls
// f(j, q, scale) for j = 0..7 in order, q the unsigned bytes of elements 32j..32j+31
// and scale the 16-bit factor of each pair sum (KBlockStore keeps them as a
// KBlockUnpacked; KChunkSums sums a few activation rows as they come). Shared by AVX2
// and AVX-512.
#pragma once
#include "quant/avx2/kquant_dot.h"

// Everything here has internal linkage: this header is compiled into files built
// with different ISA flags, and the linker must not pick one file's copy for all.
namespace duet::avx2 {
namespace {

// The Q4_K / Q5_K chunk loop: 32-byte chunk c holds sub-block 2c in its low nibbles
// and 2c+1 in its high; fifth(j) gives sub-block j's fifth bits (zero for Q4_K, where
// the OR folds away).
template <typename Block, typename Fifth, typename F>
inline __m128i kquant_mins_chunks_each(const Block& x, Fifth&& fifth, F&& f) {
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i scales = kquant_scales_load(&x);
  for (int c = 0; c < 4; ++c) {
    const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 32 * c));
    f(2 * c, _mm256_or_si256(_mm256_and_si256(bytes, low4), fifth(2 * c)), kquant_chunk_scale(scales, 2 * c));
    f(2 * c + 1, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4), fifth(2 * c + 1)),
      kquant_chunk_scale(scales, 2 * c + 1));
  }
  return kquant_mins16(scales);
}

struct Q4KChunks {
  using Block = BlockQ4_K;

  template <typename F>
  static __m128i each(const BlockQ4_K& x, F&& f) {
    return kquant_mins_chunks_each(x, [](int) { return _mm256_setzero_si256(); }, f);
  }
};

// 16 in each byte of qh whose bit `bit` is set, else 0: the bit moved to bit 4 and
// masked there (what the 16-bit shift carries in from the other byte is masked off).
inline __m256i high_bit_16(__m256i qh, int bit) {
  const __m256i moved = bit <= 4 ? _mm256_slli_epi16(qh, 4 - bit) : _mm256_srli_epi16(qh, bit - 4);
  return _mm256_and_si256(moved, _mm256_set1_epi8(16));
}

// Q5_K: as Q4_K plus the 5th bit from qh (bit j for sub-block j).
struct Q5KChunks {
  using Block = BlockQ5_K;

  template <typename F>
  static __m128i each(const BlockQ5_K& x, F&& f) {
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qh));
    return kquant_mins_chunks_each(x, [&](int j) { return high_bit_16(qh, j); }, f);
  }
};

// (2 bits of qh at `shift`) << 4 | the nibble: a 6-bit value per byte. The two bits
// are moved straight to bits 4-5 and masked there; bits that the 16-bit shift
// carries over from the neighbouring byte fall outside the mask.
inline __m256i q6_combine(__m256i nibble, __m256i qh, int shift) {
  const __m256i moved = shift <= 4 ? _mm256_slli_epi16(qh, 4 - shift) : _mm256_srli_epi16(qh, shift - 4);
  return _mm256_or_si256(nibble, _mm256_and_si256(moved, _mm256_set1_epi8(0x30)));
}

// Q6_K: unsigned 6-bit values (the -32 is applied through the activation sums),
// chunk by chunk in order: f(j, q, scale) with scale the int16 factor of each pair
// sum (see KBlockUnpacked).
struct Q6KChunks {
  using Block = BlockQ6_K;

  template <typename F>
  static void each(const BlockQ6_K& x, F&& f) {
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    const __m256i scales_all = q6_k_scales_all(x);
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.ql + 64 * h));
      const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.ql + 64 * h + 32));
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qh + 32 * h));
      // Both 128-bit halves hold this half's eight scales (from the block's int16[16]
      // scales, which the offset term loads anyway); chunk k takes scale 2k for its
      // first 16 elements and 2k+1 for the last 16.
      const __m256i half_scales = h == 0 ? _mm256_permute2x128_si256(scales_all, scales_all, 0x00)
                                         : _mm256_permute2x128_si256(scales_all, scales_all, 0x11);
      auto scale = [&](int k) { return _mm256_shuffle_epi8(half_scales, broadcast16_control(2 * k, 2 * k + 1)); };
      f(4 * h + 0, q6_combine(_mm256_and_si256(ql0, low4), qh, 0), scale(0));
      f(4 * h + 1, q6_combine(_mm256_and_si256(ql1, low4), qh, 2), scale(1));
      f(4 * h + 2, q6_combine(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), qh, 4), scale(2));
      f(4 * h + 3, q6_combine(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4), qh, 6), scale(3));
    }
  }
};

}  // namespace
}  // namespace duet::avx2
