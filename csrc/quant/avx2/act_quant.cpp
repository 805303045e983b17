// AVX2 activation quantizers: the same bytes as the scalar ones (same rounding,
// same division, same choice of the signed maximum), only vectorised.
#include <cstring>

#include "quant/avx2/avx2_common.h"
#include "quant/avx2/avx2_kernels.h"

namespace duet::avx2 {

namespace {

inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

inline float hmax_f32x8(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// Four vectors of 8 int32 (each in -127..127) to 32 int8 in element order.
inline __m256i pack_to_i8(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_packs_epi32(a, b);  // lanes interleave by 128-bit halves
  const __m256i cd = _mm256_packs_epi32(c, d);
  const __m256i abcd = _mm256_packs_epi16(ab, cd);
  return _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

inline __m256 max_abs_32(const float* x) {
  __m256 m = abs_ps(_mm256_loadu_ps(x));
  for (int j = 8; j < 32; j += 8) m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(x + j)));
  return m;
}

}  // namespace

void quantize_q8_32(const float* x, void* dst, int64_t n) {
  ActQ8_32* blocks = static_cast<ActQ8_32*>(dst);
  for (int64_t b = 0; b < n / QK32; ++b, x += QK32) {
    const float amax = hmax_f32x8(max_abs_32(x));
    blocks[b].d = _cvtsh_ss(_cvtss_sh(amax / 127.0f, _MM_FROUND_TO_NEAREST_INT));
    const __m256 id = _mm256_set1_ps(amax == 0.0f ? 0.0f : 127.0f / amax);
    const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    __m256i q[4];
    for (int k = 0; k < 4; ++k) {
      __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), id),
                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      q[k] = _mm256_cvtps_epi32(_mm256_min_ps(hi, _mm256_max_ps(lo, v)));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(blocks[b].qs), pack_to_i8(q[0], q[1], q[2], q[3]));
  }
}

void quantize_q8_256(const float* x, void* dst, int64_t n) {
  ActQ8_256* blocks = static_cast<ActQ8_256*>(dst);
  for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
    ActQ8_256& block = blocks[b];
    __m256 m = max_abs_32(x);
    for (int j = 32; j < QK_K; j += 32) m = _mm256_max_ps(m, max_abs_32(x + j));
    const float amax = hmax_f32x8(m);
    if (amax == 0.0f) {
      std::memset(&block, 0, sizeof(block));
      continue;
    }
    // The first element of largest magnitude, as the scalar search finds it.
    // Bounded: with a NaN in the block no element may equal amax.
    int first = 0;
    while (first < QK_K - 1 && __builtin_fabsf(x[first]) != amax) ++first;
    const float iscale = -127.0f / x[first];
    const __m256 sv = _mm256_set1_ps(iscale), hi = _mm256_set1_ps(127.0f);
    for (int j = 0; j < QK_K; j += 32) {
      __m256i q[4];
      for (int k = 0; k < 4; ++k) {
        __m256 v = _mm256_round_ps(_mm256_mul_ps(sv, _mm256_loadu_ps(x + j + 8 * k)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        q[k] = _mm256_cvtps_epi32(_mm256_min_ps(hi, v));
      }
      const __m256i bytes = pack_to_i8(q[0], q[1], q[2], q[3]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(block.qs + j), bytes);
      // Sums of each 16 bytes: widen to int16, add pairs down to one per 16.
      const __m256i wide_lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(bytes));
      const __m256i wide_hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(bytes, 1));
      const __m256i s32_lo = _mm256_madd_epi16(wide_lo, _mm256_set1_epi16(1));
      const __m256i s32_hi = _mm256_madd_epi16(wide_hi, _mm256_set1_epi16(1));
      alignas(32) int32_t parts[16];
      _mm256_store_si256(reinterpret_cast<__m256i*>(parts), s32_lo);
      _mm256_store_si256(reinterpret_cast<__m256i*>(parts + 8), s32_hi);
      for (int g = 0; g < 2; ++g) {
        int32_t sum = 0;
        for (int t = 0; t < 8; ++t) sum += parts[8 * g + t];
        block.bsums[j / 16 + g] = static_cast<int16_t>(sum);
      }
    }
    block.d = 1.0f / iscale;
  }
}

}  // namespace duet::avx2
