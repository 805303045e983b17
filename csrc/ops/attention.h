// Grouped-query attention of a block of new tokens over a KV cache, with an
// arbitrary visibility mask (causal, or a token tree).
#pragma once
#include <cstdint>

#include "runtime/cpu_features.h"
#include "runtime/thread_pool.h"

namespace duet {

enum class KvType : int { F32 = 0, F16 = 1 };

struct AttentionShape {
  int64_t n_query;   // T: new tokens (their K/V are already written into the cache)
  int64_t n_kv;      // cache rows to consider, including the new tokens
  int n_head;        // query heads
  int n_head_kv;     // key/value heads; n_head % n_head_kv == 0
  int head_dim;
};

// q:      [n_query, n_head, head_dim] f32, RoPE already applied
// k, v:   [n_kv, n_head_kv, head_dim] in kv_type (one layer of the cache)
// mask:   [n_query, n_kv] bytes, nonzero = visible; a query that sees nothing gets zeros
// prompt: [n_query] RowOrder bytes or null (all kRowDecoded): a kRowPrompt query's sums
//         follow llama.cpp's prompt-batch order, the others its one-token order
// out:    [n_query, n_head, head_dim] f32
// Softmax in f32 with scale `scale`. A query's result depends only on its own row of
// q, of the mask and of prompt, never on the other queries (batch invariance).
void attention(const AttentionShape& s, const float* q, const void* k, const void* v, KvType kv_type,
               const uint8_t* mask, const uint8_t* prompt, float scale, float* out, ThreadPool& pool);
// The same on a chosen runnable ISA path (the one above uses isa_default()), summed as
// llama.cpp's build of the given vector width sums (ops/exp_ggml.h: 8 or 16; by
// default the ISA's own). Every path gives the same bits for a given width.
void attention(const AttentionShape& s, const float* q, const void* k, const void* v, KvType kv_type,
               const uint8_t* mask, const uint8_t* prompt, float scale, float* out, ThreadPool& pool, Isa isa);
void attention(const AttentionShape& s, const float* q, const void* k, const void* v, KvType kv_type,
               const uint8_t* mask, const uint8_t* prompt, float scale, float* out, ThreadPool& pool, Isa isa,
               int width);

}  // namespace duet
