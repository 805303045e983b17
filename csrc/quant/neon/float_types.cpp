#include "quant/neon/neon_kernels.h"
#include "quant/neon/neon_loops.h"

namespace duet::neon {

void vec_dot_f32(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  arm::float_vec_dot<float, arm::load4_f32, arm::load1_f32>(n, w, act, act_stride, n_act, out);
}
void vec_dot_f16(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  arm::float_vec_dot<uint16_t, arm::load4_f16, arm::load1_f16>(n, w, act, act_stride, n_act, out);
}
void vec_dot_bf16(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  arm::float_vec_dot<uint16_t, arm::load4_bf16, arm::load1_bf16>(n, w, act, act_stride, n_act, out);
}

}  // namespace duet::neon
