#include "quant/avx2/kquant_dot.h"
#include "quant/avx2/kquant_unpack.h"
#include "quant/avx512/avx512_kernels.h"
#include "quant/avx512/vnni_dot.h"

namespace duet::avx512 {

void vec_dot_q5_k(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  avx2::kquant_mins_vec_dot<avx2::Q5KChunks, KBlockDot512>(n, w, act, act_stride, n_act, out);
}

void gemv_q5_k(int64_t n, const void* w, size_t w_stride, int64_t n_rows, const void* act, size_t act_stride, int n_act,
               float* out, int64_t ldo) {
  avx2::kquant_mins_gemv<avx2::Q5KChunks, KChunkDotVnni>(n, w, w_stride, n_rows, act, act_stride, n_act, out, ldo);
}

}  // namespace duet::avx512
