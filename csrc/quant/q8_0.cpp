// Q8_0: 32 weights per block, int8 q with an f16 scale; w = d * q.
#include "quant/formats.h"
#include "quant/scalar_kernels.h"
#include "quant/scalar_rows.h"

namespace duet::scalar {

void dequantize_row_q8_0(const void* w, float* y, int64_t n) {
  const BlockQ8_0* blocks = static_cast<const BlockQ8_0*>(w);
  for (int64_t b = 0; b < n / QK32; ++b, y += QK32) {
    const float d = fp16_to_fp32(blocks[b].d);
    for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(blocks[b].qs[j]);
  }
}

void vec_dot_q8_0(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  const BlockQ8_0* blocks = static_cast<const BlockQ8_0*>(w);
  dot_each_row<ActQ8_32>(act, act_stride, n_act, out, [&](const ActQ8_32* a) {
    float sum = 0.0f;
    for (int64_t b = 0; b < n / QK32; ++b) {
      int32_t sumi = 0;
      for (int j = 0; j < 32; ++j) sumi += blocks[b].qs[j] * a[b].qs[j];
      sum += fp16_to_fp32(blocks[b].d) * a[b].d * static_cast<float>(sumi);
    }
    return sum;
  });
}

}  // namespace duet::scalar
