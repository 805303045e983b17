// Quantized matrix times a batch of activation rows.
#pragma once
#include <cstdint>

#include "ops/row_order.h"
#include "quant/kernels.h"
#include "runtime/thread_pool.h"

namespace duet {

// A weight matrix addressed in place (memory-mapped file or a streaming buffer):
// `rows` rows of `cols` elements of `type`, row r at data + r * row_bytes(type, cols).
struct WeightView {
  const void* data;
  GgmlType type;
  int64_t rows;  // output features (ggml ne[1])
  int64_t cols;  // input features (ggml ne[0])
};

// y[m * ldy + r] = sum_k W[r, k] * x[m * cols + k] for m < n_rows_x, r < W.rows.
// Each weight block is read from memory once for all rows of x. prompt: null (all
// decoded) or [n_rows_x] RowOrder flags; a prompt row sums in llama.cpp's
// prompt-batch order where the type has one (TypeKernels::vec_dot_prompt). Row m's
// result depends only on row m and its flag: bit-identical whatever n_rows_x is and
// wherever row m sits (batch invariance). Except for any-order rows: a run of them
// takes the type's any-order tile from TypeKernels::any_order_tile_min_rows rows,
// else the decoded rows' kernels where a GEMV takes the run or it is too short for
// a tile, else the prompt order's.
void matmul(const KernelTable& kt, const WeightView& w, const float* x, int64_t n_rows_x, float* y, int64_t ldy,
            ThreadPool& pool, const uint8_t* prompt);

// One product of matmul_many: a weight matrix and where its rows go (matmul's y, ldy).
struct MatmulOut {
  WeightView w;
  float* y;
  int64_t ldy;
};

// matmul of each outs[i].w with the same x (every matrix as wide as x's rows), in one
// pass of the pool: each product is split into the chunks matmul would give it, and
// a thread done with one product's chunks takes the next product's without waiting
// for the others (a decoded token's Q, K and V: three small products, one pass).
// Each output element is the one matmul computes. Throws std::invalid_argument if
// the matrices differ in width.
void matmul_many(const KernelTable& kt, const MatmulOut* outs, int n_outs, const float* x, int64_t n_rows_x,
                 ThreadPool& pool, const uint8_t* prompt);

}  // namespace duet
