// exp as llama.cpp's CPU ops compute it (softmax, SiLU), so that ours round the same.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "runtime/cpu_features.h"

namespace duet {

// The width in floats of the vectors of the llama.cpp build whose rounding a path
// reproduces. ggml's exp, softmax sums and attention lanes follow its vectors: an
// AVX2 build (and the NEON code, whose exp has the AVX2 form) works in 8 floats, an
// AVX-512 build in 16, with another exp. Each ISA path rounds as llama.cpp built for
// that ISA, so that duet's logits equal those of llama.cpp built for the same machine.
constexpr int kGgmlWidth8 = 8;
constexpr int kGgmlWidth16 = 16;
inline int ggml_width(Isa isa) { return isa_has_avx512(isa) ? kGgmlWidth16 : kGgmlWidth8; }

// Throws std::invalid_argument, naming op, unless width is 8 or 16.
inline void ggml_width_check(int width, const char* op) {
  if (width != kGgmlWidth8 && width != kGgmlWidth16) {
    throw std::invalid_argument(std::string(op) + ": width must be 8 or 16, got " + std::to_string(width));
  }
}

// exp(x) by the method of ARM's optimized-routines that ggml's softmax uses: x = n ln2 + b
// with n rounded through a shift constant, ln2 in two parts, exp(b) - 1 by a degree-5
// polynomial in b evaluated as two halves in b^2, 2^n put into the exponent bits.
// Every path evaluates it with the same fused operations, so they agree bit for bit.
namespace exp_ggml {
constexpr float kShift = 0x1.8p23f;
constexpr float kInvLn2 = 0x1.715476p+0f;
constexpr float kLn2Hi = 0x1.62e4p-1f;
constexpr float kLn2Lo = 0x1.7f7d1cp-20f;
constexpr float kC0 = 0x1.ffffecp-1f;
constexpr float kC1 = 0x1.fffdb6p-2f;
constexpr float kC2 = 0x1.555e66p-3f;
constexpr float kC3 = 0x1.573e2ep-5f;
constexpr float kC4 = 0x1.0e4020p-7f;
constexpr uint32_t kOneBits = 0x3f800000u;
constexpr float kNoScaleLimit = 126.0f;   // |n| above: 2^n is applied in two factors
constexpr float kOverflowLimit = 192.0f;  // |n| above: the result is 0 or infinity
constexpr uint32_t kNegativeBias = 0x82000000u;
constexpr uint32_t kHalfScaleBits = 0x7f000000u;
}  // namespace exp_ggml

inline float exp_ggml_bits_to_float(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline uint32_t exp_ggml_float_to_bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}

// x = n ln2 + b, the step both forms share; e: n in the exponent bits, so that
// e + the bits of 1.0 are the float 2^n while |n| <= 126.
struct ExpSplit {
  float n;
  float b;
  uint32_t e;
};

// std::fma is one instruction on AArch64 and on x86 with FMA; a library call on
// baseline x86, where the AVX2 forms are used instead.
inline ExpSplit exp_ggml_split(float x) {
  using namespace exp_ggml;
  const float z = std::fma(x, kInvLn2, kShift);
  const float n = z - kShift;
  return {n, std::fma(-n, kLn2Lo, std::fma(-n, kLn2Hi, x)), exp_ggml_float_to_bits(z) << 23};
}

// The polynomial in b evaluated as two halves in b^2; `low` is its low term, which
// the two forms round differently (kC0 b, or kC0 b + 1 in one fma).
inline float exp_ggml_poly(float b, float low) {
  using namespace exp_ggml;
  const float u = b * b;
  return std::fma(std::fma(std::fma(kC4, b, kC3), u, std::fma(kC2, b, kC1)), u, low);
}

// The scalar form.
inline float exp_ggml_scalar(float x) {
  using namespace exp_ggml;
  const auto [n, b, e] = exp_ggml_split(x);
  const float k = exp_ggml_bits_to_float(e + kOneBits);
  const float j = exp_ggml_poly(b, kC0 * b);
  if (std::fabs(n) <= kNoScaleLimit) return std::fma(j, k, k);
  const uint32_t g = n <= 0.0f ? kNegativeBias : 0u;
  const float s1 = exp_ggml_bits_to_float(g + kHalfScaleBits);
  const float s2 = exp_ggml_bits_to_float(e - g);
  if (std::fabs(n) > kOverflowLimit) return s1 * s1;
  return std::fma(s2, j, s2) * s1;
}

// ggml's AVX-512 form: the polynomial includes the 1 (j = 1 + b + ...), and 2^n is
// applied by scalef, one correctly rounded product (subnormal results included).
// Below |n| = 126 that product is j times the float 2^n; beyond it, a double holds
// j * 2^n exactly and rounds once to float.
inline float exp_ggml_scalef_apply(float j, float n) {
  using namespace exp_ggml;
  if (std::fabs(n) > kOverflowLimit) return n <= 0.0f ? 0.0f : std::numeric_limits<float>::infinity();
  return static_cast<float>(std::ldexp(static_cast<double>(j), static_cast<int>(n)));
}

inline float exp_ggml_scalef_scalar(float x) {
  const ExpSplit split = exp_ggml_split(x);
  return exp_ggml_scalef_apply(exp_ggml_poly(split.b, std::fma(exp_ggml::kC0, split.b, 1.0f)), split.n);
}

// exp in the form of the llama.cpp build of the given width.
inline float exp_ggml_scalar(float x, int width) {
  return width == kGgmlWidth16 ? exp_ggml_scalef_scalar(x) : exp_ggml_scalar(x);
}

}  // namespace duet
