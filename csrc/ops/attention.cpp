// Grouped-query attention with a visibility mask. A work item is one query and a
// chunk of the query heads that share one kv head: the visible cache rows are
// gathered once into f32 tiles and reused by every head of the chunk (a path's
// attend_values may instead read the value rows from the cache). Each head's
// result is computed start to finish by one thread, with an operation sequence fixed
// by its own query's mask alone, so a query's output is independent of the batch and
// of how heads are chunked or threads are scheduled.
#include "ops/attention.h"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "ops/attention_kernels.h"
#include "ops/row_order.h"

namespace duet {

const AttentionKernels& attention_kernels(Isa isa) {
  if (!isa_runnable(isa)) throw std::invalid_argument(std::string("ISA ") + isa_name(isa) + " cannot run here");
#if defined(DUET_X86)
  if (isa_has_avx512(isa)) return attention_kernels_avx512();
  if (isa == Isa::Avx2) return attention_kernels_avx2();
#endif
  return attention_kernels_scalar();
}

namespace {

// What one work item needs: a head chunk of one query over one kv head.
struct AttentionItem {
  const float* q;          // [n_heads, head_dim] the chunk's query heads
  const void* k;           // the kv head's first element in the cache
  const void* v;
  const uint8_t* mask;     // [n_kv] the query's mask row
  float* out;              // [n_heads, head_dim]
  int n_heads;
  int n_lanes;             // decode_lanes or prompt_lanes of width: the query's summation order
  int width;               // the vector width of the llama.cpp build whose rounding we follow
};

// Per-thread buffers, sized once per call.
struct AttentionScratch {
  std::vector<int32_t> visible;  // [n_kv] indices of the visible cache rows
  std::vector<float> tile;       // [kTileRows, head_dim] gathered rows
  std::vector<float> weights;    // [heads per item, n_kv] scores, then probabilities
  std::vector<float> lanes;      // [heads per item, kMaxLanes, head_dim] partial sums of the output
};

int collect_visible(const uint8_t* mask, int64_t n_kv, int32_t* visible) {
  int n = 0;
  for (int64_t j = 0; j < n_kv; ++j) {
    if (mask[j]) visible[n++] = static_cast<int32_t>(j);
  }
  return n;
}

// fn(start, n) over consecutive tiles of at most kTileRows of the n_visible rows.
template <typename Fn>
void for_each_tile(int n_visible, Fn&& fn) {
  for (int start = 0; start < n_visible; start += kTileRows) fn(start, std::min(kTileRows, n_visible - start));
}

void attend_item(const AttentionKernels& kernels, const AttentionShape& s, KvType kv_type, float scale,
                 const AttentionItem& item, AttentionScratch& scratch) {
  const int hd = s.head_dim;
  const int64_t row_stride = static_cast<int64_t>(s.n_head_kv) * hd;
  const auto gather = kv_type == KvType::F16 ? kernels.gather_f16 : kernels.gather_f32;
  const int n_visible = collect_visible(item.mask, s.n_kv, scratch.visible.data());
  if (n_visible == 0) {
    std::fill(item.out, item.out + static_cast<int64_t>(item.n_heads) * hd, 0.0f);
    return;
  }
  const int32_t* visible = scratch.visible.data();
  float* tile = scratch.tile.data();
  float* weights = scratch.weights.data();

  for_each_tile(n_visible, [&](int start, int n) {
    gather(item.k, row_stride, visible + start, n, hd, tile);
    kernels.score_tile(item.q, item.n_heads, tile, n, hd, scale, weights + start, n_visible, item.n_lanes);
  });
  // Probabilities, not numerators, weigh the value rows, and with an f16 cache they
  // are rounded to f16 first: llama.cpp normalises in its softmax (1 / sum taken in
  // double) and converts the probabilities to the cache's type for the product with
  // V. Keeping them in f32 put our attention 2.5e-4 (relative) away from its.
  for (int h = 0; h < item.n_heads; ++h) {
    float* head_weights = weights + h * n_visible;
    const double sum = kernels.softmax_numerators(head_weights, n_visible, item.width);
    kernels.scale_weights(head_weights, n_visible, static_cast<float>(1.0 / sum), kv_type == KvType::F16);
  }
  if (kernels.attend_values != nullptr &&
      kernels.attend_values(weights, n_visible, item.n_heads, item.v, kv_type, row_stride, visible, n_visible, hd,
                            item.n_lanes, item.out)) {
    return;
  }
  // Sized here, not per call: with attend_values the lanes are never used.
  scratch.lanes.resize(static_cast<size_t>(item.n_heads) * kMaxLanes * hd);
  float* lanes = scratch.lanes.data();
  for (int h = 0; h < item.n_heads; ++h) {  // only the lanes this order uses (a quarter for a prompt token)
    float* head_lanes = lanes + static_cast<int64_t>(h) * kMaxLanes * hd;
    std::fill(head_lanes, head_lanes + static_cast<int64_t>(item.n_lanes) * hd, 0.0f);
  }
  for_each_tile(n_visible, [&](int start, int n) {
    gather(item.v, row_stride, visible + start, n, hd, tile);
    kernels.accumulate_tile(weights + start, n_visible, item.n_heads, tile, n, hd, lanes, item.n_lanes);
  });
  kernels.reduce_lanes(lanes, item.n_heads, hd, item.n_lanes, item.out);
}

void check_shape(const AttentionShape& s) {
  if (s.n_query < 0 || s.n_kv < 0 || s.n_head < 1 || s.n_head_kv < 1 || s.head_dim < 1 ||
      s.n_head % s.n_head_kv != 0) {
    throw std::invalid_argument("attention: bad shape (need n_head % n_head_kv == 0 and positive sizes)");
  }
  if (s.n_kv > std::numeric_limits<int32_t>::max()) throw std::invalid_argument("attention: n_kv too large");
}

// How the query heads of one kv group are split into work items: whole groups when
// there are at least as many as threads, smaller chunks otherwise (decode has one
// query and few kv heads). Each item gathers its kv head's rows, so a group split
// with no thread to take the part gathers them twice for nothing: the 0.5B's decode
// attention (2 kv heads, 2 threads) took 26 us instead of 28, the 1.5B's 42.5
// instead of 48, in four items rather than two. Chunking never changes a head's
// result.
struct HeadSplit {
  int group;             // query heads per kv head
  int chunk_heads;       // query heads per work item (the last chunk may have fewer)
  int chunks_per_group;
};

HeadSplit split_heads(const AttentionShape& s, int n_threads) {
  const int group = s.n_head / s.n_head_kv;
  const int64_t n_groups = s.n_query * s.n_head_kv;
  const int64_t wanted = n_groups > 0 ? (n_threads + n_groups - 1) / n_groups : 1;
  const int chunks = static_cast<int>(std::clamp<int64_t>(wanted, 1, group));
  const int chunk_heads = (group + chunks - 1) / chunks;
  return {group, chunk_heads, (group + chunk_heads - 1) / chunk_heads};
}

// Work item `index`, ordered by query, then kv head, then chunk.
AttentionItem item_at(const AttentionShape& s, const HeadSplit& split, const float* q, const void* k, const void* v,
                      KvType kv_type, const uint8_t* mask, const uint8_t* prompt, float* out, int width,
                      int64_t index) {
  const int64_t t = index / (s.n_head_kv * split.chunks_per_group);
  const int kv_head = static_cast<int>(index / split.chunks_per_group % s.n_head_kv);
  const int first_head = kv_head * split.group + static_cast<int>(index % split.chunks_per_group) * split.chunk_heads;
  const int last_head = std::min(first_head + split.chunk_heads, (kv_head + 1) * split.group);
  const size_t kv_offset = static_cast<size_t>(kv_head) * s.head_dim * (kv_type == KvType::F16 ? 2 : 4);
  const int64_t qo_offset = (t * s.n_head + first_head) * s.head_dim;  // q and out: [T, n_head, hd]
  return {q + qo_offset, static_cast<const char*>(k) + kv_offset, static_cast<const char*>(v) + kv_offset,
          mask + t * s.n_kv, out + qo_offset, last_head - first_head,
          prompt != nullptr && prompt[t] == kRowPrompt ? prompt_lanes(width) : decode_lanes(width), width};
}

}  // namespace

void attention(const AttentionShape& s, const float* q, const void* k, const void* v, KvType kv_type,
               const uint8_t* mask, const uint8_t* prompt, float scale, float* out, ThreadPool& pool, Isa isa,
               int width) {
  check_shape(s);
  ggml_width_check(width, "attention");
  const AttentionKernels& kernels = attention_kernels(isa);
  const HeadSplit split = split_heads(s, pool.size());
  std::vector<AttentionScratch> scratch(pool.size());
  for (auto& sc : scratch) {
    sc.visible.resize(static_cast<size_t>(s.n_kv));
    sc.tile.resize(static_cast<size_t>(kTileRows) * s.head_dim);
    sc.weights.resize(static_cast<size_t>(split.chunk_heads) * s.n_kv);
  }

  const int64_t n_items = s.n_query * s.n_head_kv * split.chunks_per_group;
  pool.parallel_for(n_items, 1, [&](int64_t begin, int64_t end, int thread) {
    for (int64_t index = begin; index < end; ++index) {
      attend_item(kernels, s, kv_type, scale, item_at(s, split, q, k, v, kv_type, mask, prompt, out, width, index),
                  scratch[thread]);
    }
  });
}

void attention(const AttentionShape& s, const float* q, const void* k, const void* v, KvType kv_type,
               const uint8_t* mask, const uint8_t* prompt, float scale, float* out, ThreadPool& pool, Isa isa) {
  attention(s, q, k, v, kv_type, mask, prompt, scale, out, pool, isa, ggml_width(isa));
}

void attention(const AttentionShape& s, const float* q, const void* k, const void* v, KvType kv_type,
               const uint8_t* mask, const uint8_t* prompt, float scale, float* out, ThreadPool& pool) {
  attention(s, q, k, v, kv_type, mask, prompt, scale, out, pool, isa_default());
}

}  // namespace duet
