#include "quant/avx2/kquant_dot.h"
#include "quant/avx2/kquant_unpack.h"
#include "quant/avx512/avx512_kernels.h"
#include "quant/avx512/vnni_dot.h"

namespace duet::avx512 {

void vec_dot_q4_k(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  avx2::kquant_mins_vec_dot<avx2::Q4KChunks, KBlockDot512>(n, w, act, act_stride, n_act, out);
}

void gemv_q4_k(int64_t n, const void* w, size_t w_stride, int64_t n_rows, const void* act, size_t act_stride, int n_act,
               float* out, int64_t ldo) {
  avx2::kquant_mins_gemv<avx2::Q4KChunks, KChunkDotVnni>(n, w, w_stride, n_rows, act, act_stride, n_act, out, ldo);
}

void prompt_tile_q4_k(int64_t n, const void* w, size_t w_stride, const void* act, size_t act_stride, int n_act,
                      float* y, int64_t ldy) {
  avx2::tile_run<avx2::Q4KTile<Lanes16>, avx2::PromptState>(n, w, w_stride, act, act_stride, n_act, y, ldy);
}

void tile_q4_k(int64_t n, const void* w, size_t w_stride, const void* act, size_t act_stride, int n_act, float* y,
               int64_t ldy) {
  avx2::tile_run<avx2::Q4KTile<Lanes16>, avx2::Q4KDecodeState>(n, w, w_stride, act, act_stride, n_act, y, ldy);
}

}  // namespace duet::avx512
