// One qwen2/llama decoder layer over a block of new tokens, in one C++ call so that
// decode pays no Python overhead between the ops of a layer.
#pragma once
#include <cstdint>
#include <vector>

#include "ops/attention.h"
#include "ops/layer_ops.h"
#include "ops/matmul.h"

namespace duet {

struct LayerShape {
  int64_t n_embd;
  int64_t n_ff;
  int n_head;
  int n_head_kv;
  int head_dim;
  float rms_eps;
  float rope_freq_base;
  RopeMode rope_mode;
};

// Weights of one layer, addressed in place (mmap or a streaming buffer).
struct LayerWeights {
  const float* attn_norm;     // [n_embd]
  WeightView wq;              // [n_head*head_dim rows, n_embd cols]
  WeightView wk;              // [n_head_kv*head_dim, n_embd]
  WeightView wv;              // [n_head_kv*head_dim, n_embd]
  const float* bq;            // [n_head*head_dim] or null
  const float* bk;            // [n_head_kv*head_dim] or null
  const float* bv;            // [n_head_kv*head_dim] or null
  WeightView wo;              // [n_embd, n_head*head_dim]
  const float* ffn_norm;      // [n_embd]
  WeightView w_gate;          // [n_ff, n_embd]
  WeightView w_up;            // [n_ff, n_embd]
  WeightView w_down;          // [n_embd, n_ff]
};

// One layer of the KV cache: rows are token slots, each n_head_kv*head_dim wide.
struct KvLayer {
  void* k;           // [capacity, n_head_kv, head_dim] of kv_type
  void* v;           // [capacity, n_head_kv, head_dim] of kv_type
  KvType kv_type;
  int64_t capacity;  // slots
};

// A layer's working buffers, kept by the caller across the layers of a pass and
// across passes. Made per call, a prompt block's were zeroed and page-faulted again in
// every layer: the 1.5B's pass over 138 prompt tokens took 1100 ms against 923 with
// them kept (Zen 4, fresh processes). They grow to the largest block seen; the caller
// releases them after a long block rather than hold them under the memory budget.
struct LayerScratch {
  std::vector<float> floats;  // [n_tokens, 2 n_embd + 2 q_width + 2 kv_width + 2 n_ff]
  std::vector<uint8_t> mask;  // [n_tokens, n_past + n_tokens] causal mask, when the caller gives none

  size_t nbytes() const { return floats.capacity() * sizeof(float) + mask.capacity(); }
  void release() {
    std::vector<float>().swap(floats);
    std::vector<uint8_t>().swap(mask);
  }
};

// x: [n_tokens, n_embd], updated in place (residual stream).
// pos: [n_tokens] RoPE positions (a tree's nodes share positions by depth).
// The new tokens' K/V go to slots [n_past, n_past + n_tokens); they attend over
// slots [0, n_past + n_tokens) as `mask` allows ([n_tokens, n_past + n_tokens],
// nonzero = visible), or causally (slot order) when mask is null. prompt: [n_tokens]
// RowOrder bytes or null (all decoded), as matmul and attention take them
// (ops/row_order.h). scratch: the buffers, grown as needed.
void transformer_layer_forward(const KernelTable& kt, const LayerShape& shape, const LayerWeights& w, float* x,
                               int64_t n_tokens, const int32_t* pos, const KvLayer& kv, int64_t n_past,
                               const uint8_t* mask, const uint8_t* prompt, ThreadPool& pool, LayerScratch& scratch);

}  // namespace duet
