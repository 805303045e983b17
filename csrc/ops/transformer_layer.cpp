#include "ops/transformer_layer.h"

#include <cmath>
#include <cstring>
#include <stdexcept>
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

std::vector<uint8_t> causal_mask(int64_t n_tokens, int64_t n_past) {
  const int64_t n_kv = n_past + n_tokens;
  std::vector<uint8_t> mask(n_tokens * n_kv, 0);
  for (int64_t t = 0; t < n_tokens; ++t) std::memset(mask.data() + t * n_kv, 1, n_past + t + 1);
  return mask;
}

}  // namespace

void transformer_layer_forward(const KernelTable& kt, const LayerShape& s, const LayerWeights& w, float* x,
                               int64_t n_tokens, const int32_t* pos, const KvLayer& kv, int64_t n_past,
                               const uint8_t* mask, const uint8_t* prompt, ThreadPool& pool) {
  if (n_past + n_tokens > kv.capacity) throw std::length_error("KV cache is full");
  const int64_t q_width = int64_t(s.n_head) * s.head_dim;
  const int64_t kv_width = int64_t(s.n_head_kv) * s.head_dim;

  std::vector<float> h(n_tokens * s.n_embd);        // [n_tokens, n_embd] normed input of each block
  std::vector<float> q(n_tokens * q_width);         // [n_tokens, n_head, head_dim]
  std::vector<float> k(n_tokens * kv_width);        // [n_tokens, n_head_kv, head_dim]
  std::vector<float> v(n_tokens * kv_width);        // [n_tokens, n_head_kv, head_dim]
  std::vector<float> attn(n_tokens * q_width);      // [n_tokens, n_head, head_dim]
  std::vector<float> proj(n_tokens * s.n_embd);     // [n_tokens, n_embd] block output
  std::vector<float> gate(n_tokens * s.n_ff);       // [n_tokens, n_ff]
  std::vector<float> up(n_tokens * s.n_ff);         // [n_tokens, n_ff]

  // Attention block.
  rms_norm(x, w.attn_norm, h.data(), n_tokens, s.n_embd, s.rms_eps);
  const MatmulOut qkv[] = {{w.wq, q.data(), q_width}, {w.wk, k.data(), kv_width}, {w.wv, v.data(), kv_width}};
  matmul_many(kt, qkv, 3, h.data(), n_tokens, pool, prompt);
  if (w.bq) add_bias(q.data(), w.bq, n_tokens, q_width);
  if (w.bk) add_bias(k.data(), w.bk, n_tokens, kv_width);
  if (w.bv) add_bias(v.data(), w.bv, n_tokens, kv_width);
  rope(q.data(), pos, n_tokens, s.n_head, s.head_dim, s.head_dim, s.rope_freq_base, s.rope_mode);
  rope(k.data(), pos, n_tokens, s.n_head_kv, s.head_dim, s.head_dim, s.rope_freq_base, s.rope_mode);
  if (kv.kv_type == KvType::F16) {
    // With an f16 cache llama.cpp takes Q · K in f16 (Q converted to the cache's
    // type); rounding Q the same way keeps our logits with the reference's.
    for (float& value : q) value = fp16_to_fp32(fp32_to_fp16(value));
  }

  kv_store(kv.k, kv.kv_type, n_past, k.data(), n_tokens, kv_width);
  kv_store(kv.v, kv.kv_type, n_past, v.data(), n_tokens, kv_width);

  std::vector<uint8_t> own_mask;
  if (!mask) {
    own_mask = causal_mask(n_tokens, n_past);
    mask = own_mask.data();
  }
  AttentionShape as{n_tokens, n_past + n_tokens, s.n_head, s.n_head_kv, s.head_dim};
  attention(as, q.data(), kv.k, kv.v, kv.kv_type, mask, prompt, 1.0f / std::sqrt(float(s.head_dim)), attn.data(),
            pool, kt.isa);
  matmul(kt, w.wo, attn.data(), n_tokens, proj.data(), s.n_embd, pool, prompt);
  add_inplace(x, proj.data(), n_tokens * s.n_embd);

  // Feed-forward block.
  rms_norm(x, w.ffn_norm, h.data(), n_tokens, s.n_embd, s.rms_eps);
  const MatmulOut gate_up[] = {{w.w_gate, gate.data(), s.n_ff}, {w.w_up, up.data(), s.n_ff}};
  matmul_many(kt, gate_up, 2, h.data(), n_tokens, pool, prompt);
  swiglu(gate.data(), up.data(), n_tokens * s.n_ff, kt.isa);
  matmul(kt, w.w_down, gate.data(), n_tokens, proj.data(), s.n_embd, pool, prompt);
  add_inplace(x, proj.data(), n_tokens * s.n_embd);
}

}  // namespace duet
