// Q5_0: 32 weights per block, 5-bit q (4 low bits in qs, the 5th in qh) with an
// f16 scale; w = d * (q - 16).
#include <cstring>

#include "quant/formats.h"
#include "quant/scalar_kernels.h"
#include "quant/scalar_rows.h"

namespace duet::scalar {

namespace {

// q[32] = the signed 5-bit values of one block.
void q5_0_unpack(const BlockQ5_0& block, int8_t q[32]) {
  uint32_t qh;
  std::memcpy(&qh, block.qh, 4);
  for (int j = 0; j < 16; ++j) {
    q[j] = static_cast<int8_t>(((block.qs[j] & 0xf) | (((qh >> j) & 1) << 4)) - 16);
    q[j + 16] = static_cast<int8_t>(((block.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16);
  }
}

}  // namespace

void dequantize_row_q5_0(const void* w, float* y, int64_t n) {
  const BlockQ5_0* blocks = static_cast<const BlockQ5_0*>(w);
  for (int64_t b = 0; b < n / QK32; ++b, y += QK32) {
    int8_t q[32];
    q5_0_unpack(blocks[b], q);
    const float d = fp16_to_fp32(blocks[b].d);
    for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(q[j]);
  }
}

void vec_dot_q5_0(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  const BlockQ5_0* blocks = static_cast<const BlockQ5_0*>(w);
  dot_each_row<ActQ8_32>(act, act_stride, n_act, out, [&](const ActQ8_32* a) {
    float sum = 0.0f;
    for (int64_t b = 0; b < n / QK32; ++b) {
      int8_t q[32];
      q5_0_unpack(blocks[b], q);
      int32_t sumi = 0;
      for (int j = 0; j < 32; ++j) sumi += q[j] * a[b].qs[j];
      sum += fp16_to_fp32(blocks[b].d) * a[b].d * static_cast<float>(sumi);
    }
    return sum;
  });
}

}  // namespace duet::scalar
