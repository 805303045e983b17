#include "quant/avx2/block32_dot.h"
#include "quant/avx2/block32_unpack.h"
#include "quant/avx512/avx512_kernels.h"
#include "quant/avx512/block32_gemv.h"
#include "quant/avx512/block32_tile.h"
#include "quant/avx512/vnni_dot.h"

namespace duet::avx512 {

void vec_dot_q4_0(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  avx2::block32_vec_dot<BlockQ4_0, avx2::q4_0_unpack, dot_i8_i8_vnni>(n, w, act, act_stride, n_act, out);
}

void gemv_q4_0(int64_t n, const void* w, size_t w_stride, int64_t n_rows, const void* act, size_t act_stride, int n_act,
               float* out, int64_t ldo) {
  avx2::block32_gemv<Q4_0Unsigned>(n, w, w_stride, n_rows, act, act_stride, n_act, out, ldo);
}

void tile_q4_0(int64_t n, const void* w, size_t w_stride, const void* act, size_t act_stride, int n_act, float* y,
               int64_t ldy) {
  block32_tile_run<Q4_0Lanes, VecDotOrder>(n, w, w_stride, act, act_stride, n_act, y, ldy);
}

void any_order_tile_q4_0(int64_t n, const void* w, size_t w_stride, const void* act, size_t act_stride, int n_act,
                        float* y, int64_t ldy) {
  block32_tile_run<Q4_0Lanes, BlockOrder>(n, w, w_stride, act, act_stride, n_act, y, ldy);
}

}  // namespace duet::avx512
