#include "quant/neon/neon_kernels.h"
#include "quant/neon/neon_loops.h"
#include "quant/dotprod/dotprod_dot.h"

namespace duet::dotprod {

void vec_dot_q5_k(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  arm::kquant_mins_vec_dot<BlockQ5_K, arm::q5_k_unpack, dot_i8>(n, w, act, act_stride, n_act, out);
}

}  // namespace duet::dotprod
