// Portable attention row kernels: the reference the SIMD paths are tested against.
#include "ops/attention_kernels.h"
#include "ops/half.h"

namespace duet {

namespace {

inline float element_to_float(float x) { return x; }
inline float element_to_float(uint16_t x) { return half_to_float(x); }

template <typename Element>
void score_scalar(const float* q, const void* k, int64_t row_stride, const uint8_t* mask, int64_t n_kv, int head_dim,
                  float scale, float* scores) {
  const Element* rows = static_cast<const Element*>(k);
  for (int64_t j = 0; j < n_kv; ++j) {
    if (!mask[j]) continue;
    const Element* row = rows + j * row_stride;
    float dot = 0.0f;
    for (int d = 0; d < head_dim; ++d) dot += q[d] * element_to_float(row[d]);
    scores[j] = dot * scale;
  }
}

template <typename Element>
void accumulate_scalar(const float* weights, const void* v, int64_t row_stride, const uint8_t* mask, int64_t n_kv,
                       int head_dim, float* acc) {
  const Element* rows = static_cast<const Element*>(v);
  for (int d = 0; d < head_dim; ++d) acc[d] = 0.0f;
  for (int64_t j = 0; j < n_kv; ++j) {
    if (!mask[j]) continue;
    const Element* row = rows + j * row_stride;
    const float w = weights[j];
    for (int d = 0; d < head_dim; ++d) acc[d] += w * element_to_float(row[d]);
  }
}

}  // namespace

AttentionRowKernels attention_row_kernels_scalar(KvType kv_type) {
  if (kv_type == KvType::F16) return {score_scalar<uint16_t>, accumulate_scalar<uint16_t>};
  return {score_scalar<float>, accumulate_scalar<float>};
}

}  // namespace duet
