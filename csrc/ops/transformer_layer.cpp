#include "ops/transformer_layer.h"

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <utility>
#include <vector>

namespace duet {

namespace {

// Writes rows of f32 values into one half (K or V) of the cache in its storage type.
void kv_store(void* cache, KvType type, int64_t slot, const float* rows, int64_t n_rows, int64_t width) {
  if (type == KvType::F32) {
    std::memcpy(static_cast<float*>(cache) + slot * width, rows, sizeof(float) * n_rows * width);
    return;
  }
  uint16_t* dst = static_cast<uint16_t*>(cache) + slot * width;
  for (int64_t i = 0; i < n_rows * width; ++i) dst[i] = fp32_to_fp16(rows[i]);
}

// Grows without keeping the contents: a kept buffer is rewritten before it is read.
template <typename T>
T* buffer_reserve(std::vector<T>& buffer, int64_t n) {
  if (buffer.size() < static_cast<size_t>(n)) {
    std::vector<T>().swap(buffer);  // the old contents go first, not copied
    buffer.resize(n);
  }
  return buffer.data();
}

const uint8_t* causal_mask(std::vector<uint8_t>& buffer, int64_t n_tokens, int64_t n_past) {
  const int64_t n_kv = n_past + n_tokens;
  uint8_t* mask = buffer_reserve(buffer, n_tokens * n_kv);
  for (int64_t t = 0; t < n_tokens; ++t) {
    std::memset(mask + t * n_kv, 1, n_past + t + 1);
    std::memset(mask + t * n_kv + n_past + t + 1, 0, n_tokens - t - 1);
  }
  return mask;
}

}  // namespace

void transformer_layer_forward(const KernelTable& kt, const LayerShape& s, const LayerWeights& w, float* x,
                               int64_t n_tokens, const int32_t* pos, const KvLayer& kv, int64_t n_past,
                               const uint8_t* mask, const uint8_t* prompt, ThreadPool& pool, LayerScratch& scratch) {
  if (n_past + n_tokens > kv.capacity) throw std::length_error("KV cache is full");
  const int64_t q_width = int64_t(s.n_head) * s.head_dim;
  const int64_t kv_width = int64_t(s.n_head_kv) * s.head_dim;

  float* next = buffer_reserve(scratch.floats, n_tokens * (2 * s.n_embd + 2 * q_width + 2 * kv_width + 2 * s.n_ff));
  auto carve = [&](int64_t width) { return std::exchange(next, next + n_tokens * width); };
  float* h = carve(s.n_embd);     // [n_tokens, n_embd] normed input of each block
  float* q = carve(q_width);      // [n_tokens, n_head, head_dim]
  float* k = carve(kv_width);     // [n_tokens, n_head_kv, head_dim]
  float* v = carve(kv_width);     // [n_tokens, n_head_kv, head_dim]
  float* attn = carve(q_width);   // [n_tokens, n_head, head_dim]
  float* proj = carve(s.n_embd);  // [n_tokens, n_embd] block output
  float* gate = carve(s.n_ff);    // [n_tokens, n_ff]
  float* up = carve(s.n_ff);      // [n_tokens, n_ff]

  // Attention block.
  rms_norm(x, w.attn_norm, h, n_tokens, s.n_embd, s.rms_eps);
  const MatmulOut qkv[] = {{w.wq, q, q_width}, {w.wk, k, kv_width}, {w.wv, v, kv_width}};
  matmul_many(kt, qkv, 3, h, n_tokens, pool, prompt);
  if (w.bq) add_bias(q, w.bq, n_tokens, q_width);
  if (w.bk) add_bias(k, w.bk, n_tokens, kv_width);
  if (w.bv) add_bias(v, w.bv, n_tokens, kv_width);
  rope(q, pos, n_tokens, s.n_head, s.head_dim, s.head_dim, s.rope_freq_base, s.rope_mode);
  rope(k, pos, n_tokens, s.n_head_kv, s.head_dim, s.head_dim, s.rope_freq_base, s.rope_mode);
  if (kv.kv_type == KvType::F16) {
    // With an f16 cache llama.cpp takes Q · K in f16 (Q converted to the cache's
    // type); rounding Q the same way keeps our logits with the reference's.
    for (int64_t i = 0; i < n_tokens * q_width; ++i) q[i] = fp16_to_fp32(fp32_to_fp16(q[i]));
  }

  kv_store(kv.k, kv.kv_type, n_past, k, n_tokens, kv_width);
  kv_store(kv.v, kv.kv_type, n_past, v, n_tokens, kv_width);

  if (!mask) mask = causal_mask(scratch.mask, n_tokens, n_past);
  AttentionShape as{n_tokens, n_past + n_tokens, s.n_head, s.n_head_kv, s.head_dim};
  attention(as, q, kv.k, kv.v, kv.kv_type, mask, prompt, 1.0f / std::sqrt(float(s.head_dim)), attn,
            pool, kt.isa);
  matmul(kt, w.wo, attn, n_tokens, proj, s.n_embd, pool, prompt);
  add_inplace(x, proj, n_tokens * s.n_embd);

  // Feed-forward block.
  rms_norm(x, w.ffn_norm, h, n_tokens, s.n_embd, s.rms_eps);
  const MatmulOut gate_up[] = {{w.w_gate, gate, s.n_ff}, {w.w_up, up, s.n_ff}};
  matmul_many(kt, gate_up, 2, h, n_tokens, pool, prompt);
  swiglu(gate, up, n_tokens * s.n_ff, kt.isa);
  matmul(kt, w.w_down, gate, n_tokens, proj, s.n_embd, pool, prompt);
  add_inplace(x, proj, n_tokens * s.n_embd);
}

}  // namespace duet
