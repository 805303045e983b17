// Q6_K: super-blocks of 256 weights in sixteen sub-blocks of 16, each with an int8
// scale; w = d * scale * (q - 32), q in 0..63 (4 low bits in ql, 2 high in qh).
#include <cmath>

#include "quant/formats.h"
#include "quant/scalar_kernels.h"
#include "quant/scalar_rows.h"

namespace duet::scalar {

namespace {

// q[256] = the signed values q - 32 in element order. Half h (128 elements) uses
// ql + 64h and qh + 32h; within it, element 32k + l takes the low or high nibble
// of ql[l] or ql[l + 32] and bits 2k, 2k+1 of qh[l].
void q6_k_unpack(const BlockQ6_K& block, int8_t q[QK_K]) {
  for (int h = 0; h < 2; ++h) {
    const uint8_t* ql = block.ql + 64 * h;
    const uint8_t* qh = block.qh + 32 * h;
    int8_t* half = q + 128 * h;
    for (int l = 0; l < 32; ++l) {
      half[l] = static_cast<int8_t>(((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32);
      half[l + 32] = static_cast<int8_t>(((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32);
      half[l + 64] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
      half[l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
    }
  }
}

// The integer part: sum over sub-blocks of scale * dot(q - 32, a), exact.
int32_t q6_k_block_sum(const BlockQ6_K& block, const ActQ8_256& a) {
  int8_t q[QK_K];
  q6_k_unpack(block, q);
  return kquant_scaled_sum<16>(q, block.scales, a.qs);
}

}  // namespace

void dequantize_row_q6_k(const void* w, float* y, int64_t n) {
  const BlockQ6_K* blocks = static_cast<const BlockQ6_K*>(w);
  for (int64_t b = 0; b < n / QK_K; ++b, y += QK_K) {
    int8_t q[QK_K];
    q6_k_unpack(blocks[b], q);
    const float d = fp16_to_fp32(blocks[b].d);
    for (int sub = 0; sub < 16; ++sub) {
      const float scale = d * static_cast<float>(blocks[b].scales[sub]);
      for (int l = 0; l < 16; ++l) y[16 * sub + l] = scale * static_cast<float>(q[16 * sub + l]);
    }
  }
}

namespace {

// Q6_K's dot product per activation row; order(sum, block_sum, d, ad) folds each
// block's integer sum into the row's sum (d: the weight block's, ad: the activation's).
template <typename Order>
void q6_k_rows(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out, Order order) {
  const BlockQ6_K* blocks = static_cast<const BlockQ6_K*>(w);
  dot_each_row<ActQ8_256>(act, act_stride, n_act, out, [&](const ActQ8_256* a) {
    float sum = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
      sum = order(sum, q6_k_block_sum(blocks[b], a[b]), fp16_to_fp32(blocks[b].d), a[b].d);
    }
    return sum;
  });
}

}  // namespace

void vec_dot_q6_k(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  q6_k_rows(n, w, act, act_stride, n_act, out,
            [](float sum, int32_t s, float d, float ad) { return sum + d * ad * static_cast<float>(s); });
}

// llama.cpp's prompt-batch order (as kquant_vec_dot_prompt, without mins).
void vec_dot_prompt_q6_k(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  q6_k_rows(n, w, act, act_stride, n_act, out,
            [](float sum, int32_t s, float d, float ad) { return std::fma(d * static_cast<float>(s), ad, sum); });
}

}  // namespace duet::scalar
