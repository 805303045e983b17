#include "quant/neon/neon_kernels.h"
#include "quant/neon/neon_loops.h"
#include "quant/neon/neon_dot.h"

namespace duet::neon {

void vec_dot_q6_k(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  arm::q6_k_vec_dot<dot_i8>(n, w, act, act_stride, n_act, out);
}

}  // namespace duet::neon
