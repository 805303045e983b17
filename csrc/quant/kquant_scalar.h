// The scalar Q4_K and Q5_K kernels: the two formats share scales, mins and the
// order of their values, and differ only in how a block's values unpack.
#pragma once
#include <cstdint>

#include "quant/formats.h"
#include "quant/kquant_scales.h"
#include "quant/scalar_rows.h"

namespace duet::scalar {

template <typename Block, void (*Unpack)(const Block&, uint8_t*)>
void kquant_dequantize_row(const void* w, float* y, int64_t n) {
  const Block* blocks = static_cast<const Block*>(w);
  for (int64_t b = 0; b < n / QK_K; ++b, y += QK_K) {
    uint8_t q[QK_K];
    Unpack(blocks[b], q);
    const KQuantScales s = kquant_scales_unpack(blocks[b].scales);
    const float d = fp16_to_fp32(blocks[b].d), dmin = fp16_to_fp32(blocks[b].dmin);
    for (int sub = 0; sub < 8; ++sub) {
      const float scale = d * static_cast<float>(s.scales[sub]);
      const float offset = dmin * static_cast<float>(s.mins[sub]);
      for (int l = 0; l < 32; ++l) y[32 * sub + l] = scale * static_cast<float>(q[32 * sub + l]) - offset;
    }
  }
}

template <typename Block, void (*Unpack)(const Block&, uint8_t*)>
void kquant_vec_dot(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  const Block* blocks = static_cast<const Block*>(w);
  dot_each_row<ActQ8_256>(act, act_stride, n_act, out, [&](const ActQ8_256* a) {
    float sum = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
      uint8_t q[QK_K];
      Unpack(blocks[b], q);
      const KQuantScales s = kquant_scales_unpack(blocks[b].scales);
      const int32_t sumi = kquant_scaled_sum<32>(q, s.scales, a[b].qs);
      const float d = fp16_to_fp32(blocks[b].d) * a[b].d, dmin = fp16_to_fp32(blocks[b].dmin) * a[b].d;
      sum += d * static_cast<float>(sumi) - dmin * static_cast<float>(kquant_mins_dot(s, a[b]));
    }
    return sum;
  });
}

}  // namespace duet::scalar
