// The layer ops whose rounding depends on an ISA-specific exp.
#include <immintrin.h>

#include "ops/avx2/exp_ggml_avx2.h"
#include "ops/layer_ops.h"

namespace duet {

void swiglu_avx2(float* gate, const float* up, int64_t n, int width) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, exp_ggml_avx2(_mm256_sub_ps(_mm256_setzero_ps(), g), width)));
    _mm256_storeu_ps(gate + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
  }
  swiglu_scalar(gate + i, up + i, n - i, width);
}

}  // namespace duet
