#include "quant/neon/neon_kernels.h"
#include "quant/neon/neon_loops.h"
#include "quant/neon/neon_dot.h"

namespace duet::neon {

void vec_dot_q4_k(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  arm::kquant_mins_vec_dot<BlockQ4_K, arm::q4_k_unpack, dot_i8>(n, w, act, act_stride, n_act, out);
}

}  // namespace duet::neon
