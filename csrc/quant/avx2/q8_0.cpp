#include "quant/avx2/avx2_kernels.h"
#include "quant/avx2/block32_dot.h"

namespace duet::avx2 {

namespace {
__m256i q8_0_unpack(const BlockQ8_0& block) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.qs)); }
}  // namespace

void vec_dot_q8_0(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  block32_vec_dot<BlockQ8_0, q8_0_unpack>(n, w, act, act_stride, n_act, out);
}

}  // namespace duet::avx2
