// exp_ggml_scalar and exp_ggml_scalef_scalar (ops/exp_ggml.h) eight lanes at a time,
// with the same operations.
#pragma once
#include <immintrin.h>

#include "ops/exp_ggml.h"

// Internal linkage: only files built with AVX2 flags include this.
namespace duet {
namespace {

// exp_ggml_split eight lanes at a time.
struct ExpSplit8 {
  __m256 n;
  __m256 b;
  __m256i e;
};

inline ExpSplit8 exp_ggml_split_avx2(__m256 x) {
  using namespace exp_ggml;
  const __m256 shift = _mm256_set1_ps(kShift);
  const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(kInvLn2), shift);
  const __m256 n = _mm256_sub_ps(z, shift);
  return {n, _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x)),
          _mm256_slli_epi32(_mm256_castps_si256(z), 23)};
}

// The float 2^n of lanes with |n| <= 126.
inline __m256 exp_ggml_scale_avx2(__m256i e) {
  return _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_set1_epi32(static_cast<int>(exp_ggml::kOneBits))));
}

// The polynomial in b evaluated as two halves in b^2; `low` is its low term, which
// the two forms round differently (kC0 b, or kC0 b + 1 in one fma).
inline __m256 exp_ggml_poly_avx2(__m256 b, __m256 low) {
  using namespace exp_ggml;
  const __m256 u = _mm256_mul_ps(b, b);
  return _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(kC4), b, _mm256_set1_ps(kC3)), u,
                                         _mm256_fmadd_ps(_mm256_set1_ps(kC2), b, _mm256_set1_ps(kC1))),
                         u, low);
}

inline __m256 exp_ggml_avx2(__m256 x) {
  using namespace exp_ggml;
  const auto [n, b, e] = exp_ggml_split_avx2(x);
  const __m256 k = exp_ggml_scale_avx2(e);
  const __m256 j = exp_ggml_poly_avx2(b, _mm256_mul_ps(_mm256_set1_ps(kC0), b));
  const __m256 plain = _mm256_fmadd_ps(j, k, k);
  const __m256 abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), n);
  const __m256 scaled_twice = _mm256_cmp_ps(abs_n, _mm256_set1_ps(kNoScaleLimit), _CMP_GT_OQ);
  if (!_mm256_movemask_ps(scaled_twice)) return plain;
  const __m256i g = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                                     _mm256_set1_epi32(static_cast<int>(kNegativeBias)));
  const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(static_cast<int>(kHalfScaleBits))));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
  const __m256 two_factors = _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1);
  const __m256 out_of_range = _mm256_cmp_ps(abs_n, _mm256_set1_ps(kOverflowLimit), _CMP_GT_OQ);
  const __m256 in_range = _mm256_blendv_ps(plain, two_factors, scaled_twice);
  return _mm256_blendv_ps(in_range, _mm256_mul_ps(s1, s1), out_of_range);
}

// AVX-512's scalef is j times the float 2^n while |n| <= 126; lanes beyond (softmax
// gaps past 87) are rare and take the scalar form.
inline __m256 exp_ggml_scalef_avx2(__m256 x) {
  using namespace exp_ggml;
  const auto [n, b, e] = exp_ggml_split_avx2(x);
  const __m256 j = exp_ggml_poly_avx2(b, _mm256_fmadd_ps(_mm256_set1_ps(kC0), b, _mm256_set1_ps(1.0f)));
  const __m256 abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), n);
  if (!_mm256_movemask_ps(_mm256_cmp_ps(abs_n, _mm256_set1_ps(kNoScaleLimit), _CMP_GT_OQ))) {
    return _mm256_mul_ps(j, exp_ggml_scale_avx2(e));
  }
  alignas(32) float js[8], ns[8];
  _mm256_store_ps(js, j);
  _mm256_store_ps(ns, n);
  for (int l = 0; l < 8; ++l) js[l] = exp_ggml_scalef_apply(js[l], ns[l]);
  return _mm256_load_ps(js);
}

inline __m256 exp_ggml_avx2(__m256 x, int width) {
  return width == kGgmlWidth16 ? exp_ggml_scalef_avx2(x) : exp_ggml_avx2(x);
}

}  // namespace
}  // namespace duet
