#include "quant/avx2/avx2_kernels.h"
#include "quant/avx2/kquant_dot.h"
#include "quant/avx2/kquant_tile.h"
#include "quant/avx2/kquant_unpack.h"

namespace duet::avx2 {

void vec_dot_q6_k(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  q6_k_vec_dot_with<Q6KChunks, KBlockDotAvx2>(n, w, act, act_stride, n_act, out);
}

void gemv_q6_k(int64_t n, const void* w, size_t w_stride, int64_t n_rows, const void* act, size_t act_stride, int n_act,
               float* out, int64_t ldo) {
  q6_k_gemv_with<Q6KChunks, KBlockDotAvx2>(n, w, w_stride, n_rows, act, act_stride, n_act, out, ldo);
}

void vec_dot_prompt_q6_k(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  q6_k_vec_dot_with<Q6KChunks, KBlockDotAvx2, Q6KPromptRows>(n, w, act, act_stride, n_act, out);
}

void prompt_tile_q6_k(int64_t n, const void* w, size_t w_stride, const void* act, size_t act_stride, int n_act,
                      float* y, int64_t ldy) {
  tile_run<Q6KTile<Lanes8>, PromptState>(n, w, w_stride, act, act_stride, n_act, y, ldy);
}

void tile_q6_k(int64_t n, const void* w, size_t w_stride, const void* act, size_t act_stride, int n_act, float* y,
               int64_t ldy) {
  tile_run<Q6KTile<Lanes8>, EightLaneState>(n, w, w_stride, act, act_stride, n_act, y, ldy);
}

}  // namespace duet::avx2
