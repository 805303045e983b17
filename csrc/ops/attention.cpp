// Grouped-query attention with a visibility mask. Work is split over (query, head)
// pairs; each pair is computed start to finish by one thread with no reduction
// across pairs, which is what makes a query's output independent of the batch.
#include "ops/attention.h"

#include <cmath>
#include <limits>
#include <string>
#include <stdexcept>
#include <vector>

#include "ops/attention_kernels.h"

namespace duet {

AttentionRowKernels attention_row_kernels(Isa isa, KvType kv_type) {
  if (!isa_runnable(isa)) throw std::invalid_argument(std::string("ISA ") + isa_name(isa) + " cannot run here");
#if defined(DUET_X86)
  if (isa == Isa::Avx2 || isa == Isa::Avx512) return attention_row_kernels_avx2(kv_type);
#endif
  return attention_row_kernels_scalar(kv_type);
}

namespace {

size_t kv_element_bytes(KvType kv_type) { return kv_type == KvType::F16 ? 2 : 4; }

// scores[j] <- exp(scores[j] - max) over the visible j; returns their sum, or 0 when
// nothing is visible. Invisible entries are never read, so they may hold garbage.
float softmax_numerators(float* scores, const uint8_t* mask, int64_t n_kv) {
  float max_score = -std::numeric_limits<float>::infinity();
  bool any_visible = false;
  for (int64_t j = 0; j < n_kv; ++j) {
    if (!mask[j]) continue;
    any_visible = true;
    if (scores[j] > max_score) max_score = scores[j];
  }
  if (!any_visible) return 0.0f;
  float sum = 0.0f;
  for (int64_t j = 0; j < n_kv; ++j) {
    if (!mask[j]) continue;
    scores[j] = std::exp(scores[j] - max_score);
    sum += scores[j];
  }
  return sum;
}

// One (query, head) pair: out_row[head_dim] = softmax(scale * q k^T) v over the mask row.
void attend_one(const AttentionRowKernels& kernels, const float* q_row, const void* k_head, const void* v_head,
                int64_t row_stride, const uint8_t* mask_row, int64_t n_kv, int head_dim, float scale, float* scores,
                float* out_row) {
  kernels.score(q_row, k_head, row_stride, mask_row, n_kv, head_dim, scale, scores);
  const float sum = softmax_numerators(scores, mask_row, n_kv);
  if (sum == 0.0f) {
    for (int d = 0; d < head_dim; ++d) out_row[d] = 0.0f;
    return;
  }
  kernels.accumulate(scores, v_head, row_stride, mask_row, n_kv, head_dim, out_row);
  const float inv_sum = 1.0f / sum;
  for (int d = 0; d < head_dim; ++d) out_row[d] *= inv_sum;
}

void check_shape(const AttentionShape& s) {
  if (s.n_query < 0 || s.n_kv < 0 || s.n_head < 1 || s.n_head_kv < 1 || s.head_dim < 1 ||
      s.n_head % s.n_head_kv != 0) {
    throw std::invalid_argument("attention: bad shape (need n_head % n_head_kv == 0 and positive sizes)");
  }
}

}  // namespace

void attention(const AttentionShape& s, const float* q, const void* k, const void* v, KvType kv_type,
               const uint8_t* mask, float scale, float* out, ThreadPool& pool, Isa isa) {
  check_shape(s);
  const AttentionRowKernels kernels = attention_row_kernels(isa, kv_type);
  const int group = s.n_head / s.n_head_kv;  // query heads sharing one kv head
  const int64_t row_stride = static_cast<int64_t>(s.n_head_kv) * s.head_dim;
  const size_t element_bytes = kv_element_bytes(kv_type);
  // One score buffer per thread, indexed by the pool's thread index.
  std::vector<std::vector<float>> scores(pool.size(), std::vector<float>(static_cast<size_t>(s.n_kv)));

  pool.parallel_for(s.n_query * s.n_head, 1, [&](int64_t begin, int64_t end, int thread) {
    for (int64_t pair = begin; pair < end; ++pair) {
      const int64_t t = pair / s.n_head;
      const int head = static_cast<int>(pair % s.n_head);
      const size_t kv_offset = static_cast<size_t>(head / group) * s.head_dim * element_bytes;
      const int64_t qo_offset = pair * s.head_dim;  // q and out share the [T, n_head, hd] layout
      attend_one(kernels, q + qo_offset, static_cast<const char*>(k) + kv_offset,
                 static_cast<const char*>(v) + kv_offset, row_stride, mask + t * s.n_kv, s.n_kv, s.head_dim, scale,
                 scores[thread].data(), out + qo_offset);
    }
  });
}

void attention(const AttentionShape& s, const float* q, const void* k, const void* v, KvType kv_type,
               const uint8_t* mask, float scale, float* out, ThreadPool& pool) {
  attention(s, q, k, v, kv_type, mask, scale, out, pool, isa_default());
}

}  // namespace duet
