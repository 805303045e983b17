// The inner loops of attention over one (query, head) pair, one set per ISA path.
// Internal to csrc/ops; attention.cpp does the softmax and the threading.
#pragma once
#include <cstdint>

#include "ops/attention.h"
#include "runtime/cpu_features.h"

namespace duet {

struct AttentionRowKernels {
  // scores[j] = scale * dot(q, k row j) for each visible j < n_kv (mask[j] != 0);
  // invisible entries are left untouched. Row j starts at element j * row_stride of k.
  // q: [head_dim] f32; k: rows of head_dim elements in the cache's type.
  void (*score)(const float* q, const void* k, int64_t row_stride, const uint8_t* mask, int64_t n_kv,
                int head_dim, float scale, float* scores);
  // acc[d] = sum over visible j, in ascending j, of weights[j] * v[j][d]; acc is
  // overwritten. acc: [head_dim]; weights: [n_kv] (only visible entries read).
  void (*accumulate)(const float* weights, const void* v, int64_t row_stride, const uint8_t* mask, int64_t n_kv,
                     int head_dim, float* acc);
};

AttentionRowKernels attention_row_kernels_scalar(KvType kv_type);
#if defined(DUET_X86)
AttentionRowKernels attention_row_kernels_avx2(KvType kv_type);
#endif

// The kernels of a runnable ISA; paths without their own fall back to a slower one.
AttentionRowKernels attention_row_kernels(Isa isa, KvType kv_type);

}  // namespace duet
