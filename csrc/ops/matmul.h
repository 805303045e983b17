// Quantized matrix times a batch of activation rows.
#pragma once
#include <cstdint>

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
// Each weight block is read from memory once for all rows of x. prompt: null or
// [n_rows_x] flags; a prompt row sums in llama.cpp's prompt-batch order where the
// type has one (TypeKernels::vec_dot_prompt). Row m's result depends only on row m
// and its flag: bit-identical whatever n_rows_x is and wherever row m sits (batch
// invariance).
void matmul(const KernelTable& kt, const WeightView& w, const float* x, int64_t n_rows_x, float* y, int64_t ldy,
            ThreadPool& pool, const uint8_t* prompt);

}  // namespace duet
