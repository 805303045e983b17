// Row-wise and element-wise layer ops, written to round as ggml's CPU ops do.
#include "ops/layer_ops.h"

#include "ops/exp_ggml.h"

#include <cmath>
#include <stdexcept>
#include <vector>

namespace duet {

void rms_norm(const float* x, const float* w, float* y, int64_t n_rows, int64_t n, float eps) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    // ggml squares in float and sums in double, then scales and multiplies by w in
    // two separate float steps (RMS_NORM then MUL).
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(xr[i] * xr[i]);
    const float mean = static_cast<float>(sum / static_cast<double>(n));
    const float scale = 1.0f / std::sqrt(mean + eps);
    for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] * scale) * w[i];
  }
}

namespace {

// cos_sin[2i], cos_sin[2i+1] = cos, sin of pos * base^(-2i/n_rot) for i < n_rot / 2. The
// angle is built by repeated multiplication in float, as ggml does, so that positions
// round the same way as in llama.cpp.
void rope_angles(int32_t pos, int n_rot, float freq_base, std::vector<float>& cos_sin) {
  const float theta_scale = std::pow(freq_base, -2.0f / static_cast<float>(n_rot));
  float theta = static_cast<float>(pos);
  for (int i = 0; i < n_rot / 2; ++i) {
    cos_sin[2 * i] = std::cos(theta);
    cos_sin[2 * i + 1] = std::sin(theta);
    theta *= theta_scale;
  }
}

// a * b + c rounded once. The products of floats are exact in double, so only the
// sum rounds twice (to double, then to float), which differs from one rounding only
// when the double lands on a float halfway point; std::fma would be a library call
// on baseline x86.
inline float fused_multiply_add(float a, float b, float c) {
  return static_cast<float>(static_cast<double>(a) * b + c);
}

// Rotates the pair (x[a], x[b]) by the angle whose cos and sin are given. ggml's
// build fuses the first product of each line with the add (measured: 99.8% of
// llama.cpp's rotated values equal ours this way, 81% unfused).
inline void rotate_pair(float* x, int a, int b, float cos_theta, float sin_theta) {
  const float x0 = x[a];
  const float x1 = x[b];
  x[a] = fused_multiply_add(x0, cos_theta, -(x1 * sin_theta));
  x[b] = fused_multiply_add(x0, sin_theta, x1 * cos_theta);
}

void rope_head(float* head, const std::vector<float>& cos_sin, int n_rot, RopeMode mode) {
  const int half = n_rot / 2;
  for (int i = 0; i < half; ++i) {
    if (mode == RopeMode::Neox) {
      rotate_pair(head, i, i + half, cos_sin[2 * i], cos_sin[2 * i + 1]);
    } else {
      rotate_pair(head, 2 * i, 2 * i + 1, cos_sin[2 * i], cos_sin[2 * i + 1]);
    }
  }
}

}  // namespace

void rope(float* x, const int32_t* pos, int64_t n_rows, int n_heads, int head_dim, int n_rot, float freq_base,
          RopeMode mode) {
  if (n_rot <= 0 || n_rot % 2 != 0 || n_rot > head_dim) {
    throw std::invalid_argument("rope: n_rot must be even and in (0, head_dim]");
  }
  if (mode != RopeMode::Normal && mode != RopeMode::Neox) {
    throw std::invalid_argument("rope: mode must be 0 (normal) or 2 (neox)");
  }
  std::vector<float> cos_sin(static_cast<size_t>(n_rot));
  for (int64_t r = 0; r < n_rows; ++r) {
    rope_angles(pos[r], n_rot, freq_base, cos_sin);
    for (int h = 0; h < n_heads; ++h) rope_head(x + (r * n_heads + h) * head_dim, cos_sin, n_rot, mode);
  }
}

void swiglu_scalar(float* gate, const float* up, int64_t n, int width) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + exp_ggml_scalar(0.0f - g, width)) * up[i];
  }
}

void swiglu(float* gate, const float* up, int64_t n, Isa isa, int width) {
  ggml_width_check(width, "swiglu");
#if defined(DUET_X86)
  if (isa == Isa::Avx2 || isa_has_avx512(isa)) return swiglu_avx2(gate, up, n, width);
#endif
  swiglu_scalar(gate, up, n, width);
}

void swiglu(float* gate, const float* up, int64_t n, Isa isa) { swiglu(gate, up, n, isa, ggml_width(isa)); }

void add_bias(float* x, const float* b, int64_t n_rows, int64_t n) {
  for (int64_t r = 0; r < n_rows; ++r) add_inplace(x + r * n, b, n);
}

void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace duet
