// Q4_K: super-blocks of 256 weights in eight sub-blocks of 32, each with a 6-bit
// scale and min; w = d * scale * q - dmin * min, q in 0..15.
#include "quant/formats.h"
#include "quant/kquant_scales.h"
#include "quant/scalar_kernels.h"
#include "quant/kquant_scalar.h"
#include "quant/scalar_rows.h"

namespace duet::scalar {

namespace {

// q[256] = the 4-bit values in element order: 32-byte chunk c holds elements
// 64c..64c+31 in its low nibbles and 64c+32..64c+63 in its high nibbles.
void q4_k_unpack(const BlockQ4_K& block, uint8_t q[QK_K]) {
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      q[64 * c + l] = block.qs[32 * c + l] & 0xf;
      q[64 * c + 32 + l] = block.qs[32 * c + l] >> 4;
    }
  }
}

}  // namespace

void dequantize_row_q4_k(const void* w, float* y, int64_t n) {
  kquant_dequantize_row<BlockQ4_K, q4_k_unpack>(w, y, n);
}

void vec_dot_q4_k(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  kquant_vec_dot<BlockQ4_K, q4_k_unpack>(n, w, act, act_stride, n_act, out);
}

void vec_dot_prompt_q4_k(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  kquant_vec_dot_prompt<BlockQ4_K, q4_k_unpack>(n, w, act, act_stride, n_act, out);
}

}  // namespace duet::scalar
