#include "quant/avx2/avx2_kernels.h"
#include "quant/avx2/kquant_dot.h"
#include "quant/avx2/kquant_unpack.h"

namespace duet::avx2 {

void vec_dot_q5_k(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  kquant_mins_vec_dot<Q5KChunks, KBlockDotAvx2>(n, w, act, act_stride, n_act, out);
}

void gemv_q5_k(int64_t n, const void* w, size_t w_stride, int64_t n_rows, const void* act, size_t act_stride, int n_act,
               float* out, int64_t ldo) {
  kquant_mins_gemv<Q5KChunks, KBlockDotAvx2>(n, w, w_stride, n_rows, act, act_stride, n_act, out, ldo);
}

void vec_dot_prompt_q5_k(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  kquant_mins_vec_dot<Q5KChunks, KBlockDotAvx2, KQuantPromptRows>(n, w, act, act_stride, n_act, out);
}

}  // namespace duet::avx2
