// Scalar vec_dot over several activation rows: each row is a separate one-row dot
// product, which makes batch invariance hold by construction.
#pragma once
#include <cstddef>
#include <cstdint>

namespace duet::scalar {

template <typename ActBlock, typename OneRow>
inline void dot_each_row(const void* act, size_t act_stride, int n_act, float* out, OneRow one_row) {
  const uint8_t* rows = static_cast<const uint8_t*>(act);
  for (int i = 0; i < n_act; ++i) out[i] = one_row(reinterpret_cast<const ActBlock*>(rows + i * act_stride));
}

}  // namespace duet::scalar
