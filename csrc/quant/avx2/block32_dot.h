// Dot products of the 32-element formats (Q4_0, Q5_0, Q8_0) with Q8_32
// activations: each format only says how to unpack a block into 32 signed bytes.
#pragma once
#include "quant/avx2/avx2_common.h"
#include "quant/row_groups.h"

namespace duet::avx2 {

// Rows handles N activation rows: per block, one unpack, then per row one integer
// dot product and one FMA, the same sequence for every N.
template <typename Block, __m256i (*unpack)(const Block&), int N>
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
    _mm_prefetch(reinterpret_cast<const char*>(blocks + b) + 512, _MM_HINT_T0);
    const __m256i q = unpack(blocks[b]);
    const __m256i q_abs = _mm256_sign_epi8(q, q);
    const float d = f16_load(blocks[b].d);
    for (int r = 0; r < N; ++r) {
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r][b].qs));
      const __m256 sum = _mm256_cvtepi32_ps(dot_i8_i8(q_abs, q, a));
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * rows[r][b].d), sum, acc[r]);
    }
  }
  for (int r = 0; r < N; ++r) out[r] = hsum_f32x8(acc[r]);
}

template <typename Block, __m256i (*unpack)(const Block&)>
void block32_vec_dot(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  static const RowsKernel kernels[kRowGroup] = {
      block32_dot_rows<Block, unpack, 1>, block32_dot_rows<Block, unpack, 2>, block32_dot_rows<Block, unpack, 3>,
      block32_dot_rows<Block, unpack, 4>};
  run_row_groups(kernels, n, w, act, act_stride, n_act, out);
}

// The 32 nibbles of 16 bytes in element order: low nibbles then high nibbles.
inline __m256i nibbles_unpack(const uint8_t qs[16]) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i low = _mm_set1_epi8(0x0f);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(bytes, 4), low), _mm_and_si128(bytes, low));
}

}  // namespace duet::avx2
