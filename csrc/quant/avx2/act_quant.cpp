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

// The index of the first element of x[0..256) whose magnitude is amax, as the
// scalar search finds it; 255 if none is (a NaN in the block can leave none).
inline int first_of_magnitude(const float* x, float amax) {
  const __m256 target = _mm256_set1_ps(amax);
  for (int j = 0; j < QK_K; j += 8) {
    const int hits = _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + j)), target, _CMP_EQ_OQ));
    if (hits != 0) return j + __builtin_ctz(static_cast<unsigned>(hits));
  }
  return QK_K - 1;
}

// The sums of each 16 of the 128 bytes at q, in order, as int32 (exact, so in any
// order of additions).
inline __m256i sums16_of_128(const int8_t* q) {
  const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
  __m256i s[4];  // s[k]: sums of 4 bytes; 128-bit lane l holds 16-byte group 2k + l
  for (int k = 0; k < 4; ++k) {
    const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * k));
    s[k] = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, bytes), ones16);
  }
  // Lane 0: groups 0, 2, 4, 6; lane 1: groups 1, 3, 5, 7.
  const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
  return _mm256_permutevar8x32_epi32(h, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
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
    const float iscale = -127.0f / x[first_of_magnitude(x, amax)];
    const __m256 sv = _mm256_set1_ps(iscale), hi = _mm256_set1_ps(127.0f);
    for (int j = 0; j < QK_K; j += 32) {
      __m256i q[4];
      for (int k = 0; k < 4; ++k) {
        __m256 v = _mm256_round_ps(_mm256_mul_ps(sv, _mm256_loadu_ps(x + j + 8 * k)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        q[k] = _mm256_cvtps_epi32(_mm256_min_ps(hi, v));
      }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(block.qs + j), pack_to_i8(q[0], q[1], q[2], q[3]));
    }
    // Each sum of 16 bytes is at most 16 * 128 in magnitude: the saturating pack is exact.
    const __m256i bsums = _mm256_packs_epi32(sums16_of_128(block.qs), sums16_of_128(block.qs + 128));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(block.bsums), _mm256_permute4x64_epi64(bsums, 0b11011000));
    block.d = 1.0f / iscale;
  }
}

}  // namespace duet::avx2
