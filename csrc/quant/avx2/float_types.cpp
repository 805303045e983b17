// F32 / F16 / BF16 weights times f32 activations on AVX2: 8 weights converted per
// step and reused by every row of the group.
#include "quant/avx2/avx2_common.h"
#include "quant/avx2/avx2_kernels.h"
#include "quant/row_groups.h"

namespace duet::avx2 {

namespace {

struct F32Weights {
  using Element = float;
  static __m256 load8(const float* w) { return _mm256_loadu_ps(w); }
  static float load1(const float* w) { return *w; }
};
struct F16Weights {
  using Element = uint16_t;
  static __m256 load8(const uint16_t* w) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
  }
  static float load1(const uint16_t* w) { return f16_load(*w); }
};
struct BF16Weights {
  using Element = uint16_t;
  static __m256 load8(const uint16_t* w) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
  static float load1(const uint16_t* w) { return bf16_to_fp32(*w); }
};

template <typename Weights, int N>
void float_dot_rows(int64_t n, const void* w, const uint8_t* act, size_t stride, float* out) {
  using Element = typename Weights::Element;
  const Element* weights = static_cast<const Element*>(w);
  const float* rows[N];
  __m256 acc[N];
  for (int r = 0; r < N; ++r) {
    rows[r] = reinterpret_cast<const float*>(act + r * stride);
    acc[r] = _mm256_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 wv = Weights::load8(weights + i);
    for (int r = 0; r < N; ++r) acc[r] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(rows[r] + i), acc[r]);
  }
  for (int r = 0; r < N; ++r) {
    float sum = hsum_f32x8(acc[r]);
    for (int64_t t = i; t < n; ++t) sum += Weights::load1(weights + t) * rows[r][t];
    out[r] = sum;
  }
}

template <typename Weights>
void float_vec_dot(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  static const RowsKernel kernels[kRowGroup] = {float_dot_rows<Weights, 1>, float_dot_rows<Weights, 2>,
                                                float_dot_rows<Weights, 3>, float_dot_rows<Weights, 4>};
  run_row_groups(kernels, n, w, act, act_stride, n_act, out);
}

}  // namespace

void vec_dot_f32(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  float_vec_dot<F32Weights>(n, w, act, act_stride, n_act, out);
}
void vec_dot_f16(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  float_vec_dot<F16Weights>(n, w, act, act_stride, n_act, out);
}
void vec_dot_bf16(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  float_vec_dot<BF16Weights>(n, w, act, act_stride, n_act, out);
}

}  // namespace duet::avx2
