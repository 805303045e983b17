// Q5_K: as Q4_K with a 5th bit per weight in qh; q in 0..31.
#include "quant/formats.h"
#include "quant/kquant_scales.h"
#include "quant/scalar_kernels.h"
#include "quant/kquant_scalar.h"
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
  kquant_dequantize_row<BlockQ5_K, q5_k_unpack>(w, y, n);
}

void vec_dot_q5_k(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  kquant_vec_dot<BlockQ5_K, q5_k_unpack>(n, w, act, act_stride, n_act, out);
}

void vec_dot_prompt_q5_k(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  kquant_vec_dot_prompt<BlockQ5_K, q5_k_unpack>(n, w, act, act_stride, n_act, out);
}

}  // namespace duet::scalar
