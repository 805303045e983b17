#include "quant/avx2/avx2_kernels.h"
#include "quant/avx2/block32_dot.h"
#include "quant/avx2/block32_gemv.h"
#include "quant/avx2/block32_tile.h"
#include "quant/avx2/block32_unpack.h"

namespace duet::avx2 {

void vec_dot_q5_0(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  block32_vec_dot<BlockQ5_0, q5_0_unpack>(n, w, act, act_stride, n_act, out);
}

void gemv_q5_0(int64_t n, const void* w, size_t w_stride, int64_t n_rows, const void* act, size_t act_stride, int n_act,
               float* out, int64_t ldo) {
  block32_gemv<Q5_0Unsigned>(n, w, w_stride, n_rows, act, act_stride, n_act, out, ldo);
}

void any_order_tile_q5_0(int64_t n, const void* w, size_t w_stride, const void* act, size_t act_stride, int n_act,
                        float* y, int64_t ldy) {
  block32_any_order_run<BlockQ5_0, q5_0_unpack>(n, w, w_stride, act, act_stride, n_act, y, ldy);
}

}  // namespace duet::avx2
