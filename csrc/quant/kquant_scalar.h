// The scalar Q4_K and Q5_K kernels: the two formats share scales, mins and the
// order of their values, and differ only in how a block's values unpack.
#pragma once
#include <cmath>
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

// A block's two integer sums against activation block a: sum over sub-blocks of
// scale * dot(q, a), and of min * sum(a). Exact, so both orders below share them.
struct KQuantBlockSums {
  int32_t scaled;
  int32_t mins;
};

template <typename Block, void (*Unpack)(const Block&, uint8_t*)>
inline KQuantBlockSums kquant_block_sums(const Block& block, const ActQ8_256& a) {
  uint8_t q[QK_K];
  Unpack(block, q);
  const KQuantScales s = kquant_scales_unpack(block.scales);
  return {kquant_scaled_sum<32>(q, s.scales, a.qs), kquant_mins_dot(s, a)};
}

// A K-quant-with-mins dot product per activation row; order(sum, sums, d, dmin, ad)
// folds each block's integer sums into the row's sum (d, dmin: the weight block's
// factors, ad: the activation block's scale).
template <typename Block, void (*Unpack)(const Block&, uint8_t*), typename Order>
void kquant_rows(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out, Order order) {
  const Block* blocks = static_cast<const Block*>(w);
  dot_each_row<ActQ8_256>(act, act_stride, n_act, out, [&](const ActQ8_256* a) {
    float sum = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
      sum = order(sum, kquant_block_sums<Block, Unpack>(blocks[b], a[b]), fp16_to_fp32(blocks[b].d),
                  fp16_to_fp32(blocks[b].dmin), a[b].d);
    }
    return sum;
  });
}

template <typename Block, void (*Unpack)(const Block&, uint8_t*)>
void kquant_vec_dot(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  kquant_rows<Block, Unpack>(n, w, act, act_stride, n_act, out,
                             [](float sum, KQuantBlockSums s, float d, float dmin, float ad) {
                               return sum + ((d * ad) * static_cast<float>(s.scaled) -
                                             (dmin * ad) * static_cast<float>(s.mins));
                             });
}

// llama.cpp's prompt-batch order (its tiled matmul, x86): per block the weight's own
// factors first, d * scaled - dmin * mins with one rounding of the difference, then
// one FMA with the activation's scale into the row's sum.
template <typename Block, void (*Unpack)(const Block&, uint8_t*)>
void kquant_vec_dot_prompt(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  kquant_rows<Block, Unpack>(n, w, act, act_stride, n_act, out,
                             [](float sum, KQuantBlockSums s, float d, float dmin, float ad) {
                               const float block =
                                   std::fma(-dmin, static_cast<float>(s.mins), d * static_cast<float>(s.scaled));
                               return std::fma(block, ad, sum);
                             });
}

}  // namespace duet::scalar
