// The element-wise and row-wise ops of a qwen2/llama layer. All in place or into
// a caller buffer; rows are independent (batch invariance).
#pragma once
#include <cstdint>

#include "quant/kernels.h"
#include "runtime/cpu_features.h"
#include "runtime/thread_pool.h"

namespace duet {

// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w, for n_rows rows of n; sum of squares in double.
void rms_norm(const float* x, const float* w, float* y, int64_t n_rows, int64_t n, float eps);

enum class RopeMode : int { Normal = 0, Neox = 2 };  // ggml's mode values
// Rotates the first n_rot dims of each head of x: [n_rows, n_heads, head_dim], row r at
// position pos[r]; theta_i = pos * freq_base^(-2i/n_rot). Neox pairs i with i + n_rot/2,
// Normal pairs 2i with 2i+1.
void rope(float* x, const int32_t* pos, int64_t n_rows, int n_heads, int head_dim, int n_rot, float freq_base,
          RopeMode mode);

// gate[i] = silu(gate[i]) * up[i] over n elements, silu(x) = x / (1 + exp(-x)) with
// ggml's exp in the form of its build of the given width (ops/exp_ggml.h; by default
// the ISA's own), on the given ISA path (all paths agree bit for bit).
void swiglu(float* gate, const float* up, int64_t n, Isa isa);
void swiglu(float* gate, const float* up, int64_t n, Isa isa, int width);
void swiglu_scalar(float* gate, const float* up, int64_t n, int width);
#if defined(DUET_X86)
void swiglu_avx2(float* gate, const float* up, int64_t n, int width);
#endif
// x[r * n + i] += b[i]
void add_bias(float* x, const float* b, int64_t n_rows, int64_t n);
// x[i] += y[i]
void add_inplace(float* x, const float* y, int64_t n);

// out[r] = row ids[r] of a [n_vocab, n_embd] table of `type` (any supported type).
// Throws std::out_of_range for an id outside [0, n_vocab).
void embedding_lookup(const KernelTable& kt, const void* table, GgmlType type, int64_t n_vocab, int64_t n_embd,
                      const int32_t* ids, int64_t n_ids, float* out);

}  // namespace duet
