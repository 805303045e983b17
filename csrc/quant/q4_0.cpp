// Q4_0: 32 weights per block, 4-bit q with an f16 scale; w = d * (q - 8).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "quant/formats.h"
#include "quant/scalar_kernels.h"
#include "quant/scalar_rows.h"

namespace duet::scalar {

void dequantize_row_q4_0(const void* w, float* y, int64_t n) {
  const BlockQ4_0* blocks = static_cast<const BlockQ4_0*>(w);
  for (int64_t b = 0; b < n / QK32; ++b, y += QK32) {
    const float d = fp16_to_fp32(blocks[b].d);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>((blocks[b].qs[j] & 0xf) - 8);
      y[j + 16] = d * static_cast<float>((blocks[b].qs[j] >> 4) - 8);
    }
  }
}

void quantize_row_q4_0(const float* x, void* dst, int64_t n) {
  BlockQ4_0* blocks = static_cast<BlockQ4_0*>(dst);
  for (int64_t b = 0; b < n / QK32; ++b, x += QK32) {
    // The value of largest magnitude, its sign kept, maps to q = 0 (-8 d); the
    // first of equal magnitudes wins, as in ggml.
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK32; ++j) {
      if (amax < std::fabs(x[j])) amax = std::fabs(x[j]), max = x[j];
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    blocks[b].d = fp32_to_fp16(d);
    auto q = [&](float v) { return std::min(15, static_cast<int>(static_cast<int8_t>(v * id + 8.5f))); };
    for (int j = 0; j < 16; ++j) blocks[b].qs[j] = static_cast<uint8_t>(q(x[j]) | (q(x[j + 16]) << 4));
  }
}

void vec_dot_q4_0(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  const BlockQ4_0* blocks = static_cast<const BlockQ4_0*>(w);
  dot_each_row<ActQ8_32>(act, act_stride, n_act, out, [&](const ActQ8_32* a) {
    float sum = 0.0f;
    for (int64_t b = 0; b < n / QK32; ++b) {
      int32_t sumi = 0;
      for (int j = 0; j < 16; ++j) {
        sumi += ((blocks[b].qs[j] & 0xf) - 8) * a[b].qs[j] + ((blocks[b].qs[j] >> 4) - 8) * a[b].qs[j + 16];
      }
      sum += fp16_to_fp32(blocks[b].d) * a[b].d * static_cast<float>(sumi);
    }
    return sum;
  });
}

}  // namespace duet::scalar
