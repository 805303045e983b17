#include "quant/avx2/kquant_dot.h"
#include "quant/avx2/kquant_unpack.h"
#include "quant/avx512/avx512_kernels.h"
#include "quant/avx512/vnni_dot.h"

namespace duet::avx512 {

void vec_dot_q5_k(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  avx2::kquant_mins_vec_dot<avx2::Q5KChunks, KBlockDot512>(n, w, act, act_stride, n_act, out);
}

}  // namespace duet::avx512
