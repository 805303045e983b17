// What the Q4_K and Q5_K dot products share: the per-block scale vectors and the
// mins term against the activations' 16-element sums.
#pragma once
#include "quant/avx2/avx2_common.h"
#include "quant/kquant_scales.h"

namespace duet::avx2 {

struct KQuantScaleVectors {
  __m256i scales16;  // int16 [2][8]: the eight sub-block scales in both 128-bit halves
  __m128i mins16;    // int16 [8]: the eight sub-block mins
};

inline KQuantScaleVectors kquant_scale_vectors(const uint8_t packed[12]) {
  const KQuantScales s = kquant_scales_unpack(packed);
  const __m256i both = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(&s)));
  return {_mm256_permute2x128_si256(both, both, 0x00), _mm256_extracti128_si256(both, 1)};
}

// int32[4] partial sums of min_j * (bsums[2j] + bsums[2j+1]).
inline __m128i kquant_mins_dot(__m128i mins16, const ActQ8_256& a) {
  const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bsums));
  const __m128i pair_sums = _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1));
  return _mm_madd_epi16(mins16, pair_sums);
}

// Row state of a K-quant dot product with mins: integer sums of one block, and the
// two float accumulators (scale term and mins term) across blocks.
struct KQuantRowAcc {
  __m256 scaled = _mm256_setzero_ps();
  __m128 mins = _mm_setzero_ps();
};

// Folds one block of one row into its accumulators: one FMA per term.
inline void kquant_row_accumulate(KQuantRowAcc& acc, __m256i sumi, __m128i summ, float d, float neg_dmin) {
  acc.scaled = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc.scaled);
  acc.mins = _mm_fmadd_ps(_mm_set1_ps(neg_dmin), _mm_cvtepi32_ps(summ), acc.mins);
}

inline float kquant_row_result(const KQuantRowAcc& acc) { return hsum_f32x8(acc.scaled) + hsum_f32x4(acc.mins); }

}  // namespace duet::avx2
