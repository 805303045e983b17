// Scalar vec_dot over several activation rows: each row is a separate one-row dot
// product, which makes batch invariance hold by construction.
#pragma once
#include <cstddef>
#include <cstdint>

#include "quant/formats.h"

namespace duet::scalar {

template <typename ActBlock, typename OneRow>
inline void dot_each_row(const void* act, size_t act_stride, int n_act, float* out, OneRow one_row) {
  const uint8_t* rows = static_cast<const uint8_t*>(act);
  for (int i = 0; i < n_act; ++i) out[i] = one_row(reinterpret_cast<const ActBlock*>(rows + i * act_stride));
}

// sum over the super-block's sub-blocks of scale[sub] * dot(q, a) over the sub-block's
// kSubLen elements, exact in int32: the integer part of every K-quant dot product.
template <int kSubLen, typename Q, typename Scale>
inline int32_t kquant_scaled_sum(const Q* q, const Scale* scales, const int8_t* a) {
  int32_t sumi = 0;
  for (int sub = 0; sub < QK_K / kSubLen; ++sub) {
    int32_t sub_sum = 0;
    for (int l = 0; l < kSubLen; ++l) sub_sum += q[kSubLen * sub + l] * a[kSubLen * sub + l];
    sumi += scales[sub] * sub_sum;
  }
  return sumi;
}

}  // namespace duet::scalar
