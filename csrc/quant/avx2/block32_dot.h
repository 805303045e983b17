// Dot products of the 32-element formats (Q4_0, Q5_0, Q8_0) with Q8_32
// activations: each format only says how to unpack a block into 32 signed bytes.
#pragma once
#include "quant/avx2/avx2_common.h"
#include "quant/row_groups.h"

// Everything here has internal linkage: this header is compiled into files built
// with different ISA flags, and the linker must not pick one file's copy for all.
namespace duet::avx2 {
namespace {

// Rows handles N activation rows: per block, one unpack, then per row one integer
// dot product and one FMA, the same sequence for every N.
// dot(|w|, w, a) = int32[8] sums of w * a over 4-byte groups.
using Block32Dot = __m256i (*)(__m256i w_abs, __m256i w, __m256i a);

template <typename Block, __m256i (*unpack)(const Block&), Block32Dot dot, int N>
void block32_dot_rows(int64_t n, const void* w, const uint8_t* act, size_t stride, float* out) {
  const Block* blocks = static_cast<const Block*>(w);
  const ActQ8_32* rows[N];
  __m256 acc[N];
  for (int r = 0; r < N; ++r) {
    rows[r] = reinterpret_cast<const ActQ8_32*>(act + r * stride);
    acc[r] = _mm256_setzero_ps();
  }
  const int64_t n_blocks = n / QK32;
  for (int64_t b = 0; b < n_blocks; ++b) {
    weights_prefetch(blocks + b);
    const __m256i q = unpack(blocks[b]);
    const __m256i q_abs = _mm256_sign_epi8(q, q);
    const float d = f16_load(blocks[b].d);
    for (int r = 0; r < N; ++r) {
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r][b].qs));
      const __m256 sum = _mm256_cvtepi32_ps(dot(q_abs, q, a));
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * rows[r][b].d), sum, acc[r]);
    }
  }
  for (int r = 0; r < N; ++r) out[r] = hsum_f32x8(acc[r]);
}

template <typename Block, __m256i (*unpack)(const Block&), Block32Dot dot = dot_i8_i8>
void block32_vec_dot(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  static const RowsKernel kernels[kRowGroup] = {
      block32_dot_rows<Block, unpack, dot, 1>, block32_dot_rows<Block, unpack, dot, 2>,
      block32_dot_rows<Block, unpack, dot, 3>, block32_dot_rows<Block, unpack, dot, 4>};
  run_row_groups(kernels, n, w, act, act_stride, n_act, out);
}

}  // namespace
}  // namespace duet::avx2
