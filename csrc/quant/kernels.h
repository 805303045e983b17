// The kernel table: one per ISA path, each entry a plain function over rows.
// Paths that have no specialised kernel for a type point at the scalar one.
#pragma once
#include <cstddef>
#include <cstdint>

#include "quant/formats.h"
#include "runtime/cpu_features.h"

namespace duet {

// Most activation rows one vec_dot call takes; the matmul loops over groups.
constexpr int kMaxActRows = 8;

// Most activation rows one GEMV call takes (see TypeKernels::gemv).
constexpr int kMaxGemvRows = 8;

// How far ahead of the byte it reads a stream of weights asks for later ones: a
// decoding step walks each matrix once, from memory, and on this Xeon the hardware
// prefetchers alone kept two cores' streams well below what they can read (a
// 4864x896 Q5_0 GEMV: 20 GB/s with 512 bytes ahead, 34 with 4096; the 1.5B's
// decoding step 9% faster than with a Q4_K block's 576; 2048 and 8192 were slower).
// The kernels ask for them into L2, not L1: on a Zen 4 EPYC that took the 0.5B's
// decoding step from 17-17.6 to 12.4-14.9 ms and the 1.5B's from 37.5 to 30-32 ms,
// and 896-column Q5_0 GEMVs from about 20 to about 30 GB/s (alternated builds,
// session 23; likely because a page of lines landing in L1 ahead evicts lines the
// kernel still reads). Where a few activation rows share each block, every line
// of it is asked for (session 29: avx2::weights_prefetch).
constexpr size_t kWeightPrefetchBytes = 4096;

// See TypeKernels::gemv and ::tile. Function types, so that each path declares its
// kernels with them.
using GemvKernel = void(int64_t n, const void* w, size_t w_stride, int64_t n_rows, const void* act, size_t act_stride,
                        int n_act, float* out, int64_t ldo);
using TileKernel = void(int64_t n, const void* w, size_t w_stride, const void* act, size_t act_stride, int n_act,
                        float* y, int64_t ldy);

struct TypeKernels {
  // y[0..n) = the n elements of one weight row w.
  void (*dequantize_row)(const void* w, float* y, int64_t n);
  // out[i] = dot(weight row w, activation row i) for i < n_act. Activation row i
  // starts at act + i * act_stride bytes and is in type_traits(type).act_format.
  // Row i's result must not depend on n_act or on the other rows (batch
  // invariance): the same operations in the same order as with n_act == 1.
  void (*vec_dot)(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out);
  // Optional (null: matmul calls vec_dot row by row). out[i * ldo + r] =
  // dot(weight row r, activation row i) for r < n_rows and i < n_act <=
  // kMaxGemvRows: a few decoded rows (a token, a small tree), weight row r at
  // w + r * w_stride bytes, activation row i at act + i * act_stride. Each result
  // must have the bits vec_dot gives with n_act == 1, so that a row's result does
  // not depend on the batch size.
  GemvKernel* gemv;
  // Fewer decoded rows than this take vec_dot row by row instead of gemv (0: any).
  int gemv_min_rows;
  // Optional (null: prompt tokens take vec_dot). vec_dot in llama.cpp's prompt-batch
  // order, for prompt tokens: llama.cpp multiplies a batch of 8 or more tokens by
  // K-quant weights with its tiled matmul, whose float operations differ from
  // vec_dot's (its other types give a batch vec_dot's bits). duet gives every prompt
  // token this order, however its prompt is split into batches, so that a streamed
  // prompt and a whole one agree; only prompts under 8 tokens then differ from
  // llama.cpp, in the last bits. Same contract as vec_dot.
  void (*vec_dot_prompt)(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out);
  // Optional (null: the rows take their kernel one weight row at a time). Tiles:
  // a kernel over tile_rows consecutive weight rows at once, y[i * ldy + r] =
  // dot(weight row r at w + r * w_stride, activation row i at act + i * act_stride)
  // for r < tile_rows and i < n_act <= kMaxTileAct. prompt_tile gives each result
  // vec_dot_prompt's bits (prompt rows), tile vec_dot's (any rows).
  TileKernel* prompt_tile;
  TileKernel* tile;
  int tile_rows;
  // Optional (null: such rows take the decoded or the prompt order's kernels,
  // matmul.h). A tile for rows flagged kRowAnyOrder (ops/row_order.h), whose bits
  // follow no other kernel's: each block's integer dot product, scaled, is added
  // to one float per row, block after block. A drafter's rows may take it: their
  // logits only shape a tree that the target checks. Same shape as tile.
  TileKernel* any_order_tile;
  int any_order_tile_min_rows;  // fewer any-order rows than this take the other kernels
};

// Most activation rows one tile call takes.
constexpr int kMaxTileAct = 64;

struct KernelTable {
  Isa isa;
  TypeKernels types[kNumTypes];  // indexed by type_index()
  // Activation quantizers; every path must produce the same bytes as scalar.
  void (*quantize_q8_32)(const float* x, void* dst, int64_t n);
  void (*quantize_q8_256)(const float* x, void* dst, int64_t n);
};

// The table for a runnable ISA; throws std::invalid_argument otherwise.
const KernelTable& kernel_table(Isa isa);
inline const TypeKernels& kernels_for(const KernelTable& t, GgmlType type) { return t.types[type_index(type)]; }

}  // namespace duet
