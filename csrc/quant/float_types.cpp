// Unquantized weights (F32, F16, BF16): dot products with f32 activations.
#include "quant/formats.h"
#include "quant/scalar_kernels.h"
#include "quant/scalar_rows.h"

namespace duet::scalar {

namespace {

inline float load_f32(const float* w, int64_t i) { return w[i]; }
inline float load_f16(const uint16_t* w, int64_t i) { return fp16_to_fp32(w[i]); }
inline float load_bf16(const uint16_t* w, int64_t i) { return bf16_to_fp32(w[i]); }

template <typename Weight, float (*load)(const Weight*, int64_t)>
void dequantize_row(const void* w, float* y, int64_t n) {
  const Weight* weights = static_cast<const Weight*>(w);
  for (int64_t i = 0; i < n; ++i) y[i] = load(weights, i);
}

template <typename Weight, float (*load)(const Weight*, int64_t)>
void vec_dot(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  const Weight* weights = static_cast<const Weight*>(w);
  dot_each_row<float>(act, act_stride, n_act, out, [&](const float* x) {
    float sum = 0.0f;
    for (int64_t i = 0; i < n; ++i) sum += load(weights, i) * x[i];
    return sum;
  });
}

}  // namespace

void dequantize_row_f32(const void* w, float* y, int64_t n) { dequantize_row<float, load_f32>(w, y, n); }
void dequantize_row_f16(const void* w, float* y, int64_t n) { dequantize_row<uint16_t, load_f16>(w, y, n); }
void dequantize_row_bf16(const void* w, float* y, int64_t n) { dequantize_row<uint16_t, load_bf16>(w, y, n); }

void vec_dot_f32(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  vec_dot<float, load_f32>(n, w, act, act_stride, n_act, out);
}
void vec_dot_f16(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  vec_dot<uint16_t, load_f16>(n, w, act, act_stride, n_act, out);
}
void vec_dot_bf16(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  vec_dot<uint16_t, load_bf16>(n, w, act, act_stride, n_act, out);
}

}  // namespace duet::scalar
