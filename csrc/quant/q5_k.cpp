// Q5_K: as Q4_K with a 5th bit per weight in qh; q in 0..31.
#include "quant/formats.h"
#include "quant/kquant_scales.h"
#include "quant/scalar_kernels.h"
#include "quant/scalar_rows.h"

namespace duet::scalar {

namespace {

// q[256] = the 5-bit values in element order. Element 64c+l takes bit 2c of qh[l],
// element 64c+32+l takes bit 2c+1.
void q5_k_unpack(const BlockQ5_K& block, uint8_t q[QK_K]) {
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      q[64 * c + l] = (block.qs[32 * c + l] & 0xf) | (((block.qh[l] >> (2 * c)) & 1) << 4);
      q[64 * c + 32 + l] = (block.qs[32 * c + l] >> 4) | (((block.qh[l] >> (2 * c + 1)) & 1) << 4);
    }
  }
}

}  // namespace

void dequantize_row_q5_k(const void* w, float* y, int64_t n) {
  const BlockQ5_K* blocks = static_cast<const BlockQ5_K*>(w);
  for (int64_t b = 0; b < n / QK_K; ++b, y += QK_K) {
    uint8_t q[QK_K];
    q5_k_unpack(blocks[b], q);
    const KQuantScales s = kquant_scales_unpack(blocks[b].scales);
    const float d = fp16_to_fp32(blocks[b].d), dmin = fp16_to_fp32(blocks[b].dmin);
    for (int sub = 0; sub < 8; ++sub) {
      const float scale = d * static_cast<float>(s.scales[sub]);
      const float offset = dmin * static_cast<float>(s.mins[sub]);
      for (int l = 0; l < 32; ++l) y[32 * sub + l] = scale * static_cast<float>(q[32 * sub + l]) - offset;
    }
  }
}

void vec_dot_q5_k(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  const BlockQ5_K* blocks = static_cast<const BlockQ5_K*>(w);
  dot_each_row<ActQ8_256>(act, act_stride, n_act, out, [&](const ActQ8_256* a) {
    float sum = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
      uint8_t q[QK_K];
      q5_k_unpack(blocks[b], q);
      const KQuantScales s = kquant_scales_unpack(blocks[b].scales);
      int32_t sumi = 0;
      for (int sub = 0; sub < 8; ++sub) {
        int32_t sub_sum = 0;
        for (int l = 0; l < 32; ++l) sub_sum += q[32 * sub + l] * a[b].qs[32 * sub + l];
        sumi += s.scales[sub] * sub_sum;
      }
      const float d = fp16_to_fp32(blocks[b].d) * a[b].d, dmin = fp16_to_fp32(blocks[b].dmin) * a[b].d;
      sum += d * static_cast<float>(sumi) - dmin * static_cast<float>(kquant_mins_dot(s, a[b]));
    }
    return sum;
  });
}

}  // namespace duet::scalar
