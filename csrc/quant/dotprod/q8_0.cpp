#include "quant/neon/neon_kernels.h"
#include "quant/neon/neon_loops.h"
#include "quant/dotprod/dotprod_dot.h"

namespace duet::dotprod {

void vec_dot_q8_0(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  arm::block32_vec_dot<BlockQ8_0, arm::q8_0_unpack, dot_i8>(n, w, act, act_stride, n_act, out);
}

}  // namespace duet::dotprod
