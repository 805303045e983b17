// Quantized matmul: activations are quantized once per call, weight rows are split
// across threads, and each output element comes from one vec_dot call (in its
// row's order) whose arithmetic does not depend on how many activation rows there are.
#include "ops/matmul.h"

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace duet {

namespace {

// Weight rows per work item, at least: enough to amortise the shared counter,
// small enough that two threads finish together on the smallest matrices.
constexpr int64_t kMinRowsPerChunk = 32;

// Work items per thread on big matrices. Threads that take small interleaved chunks
// read adjacent stretches of memory, and each core's prefetcher runs ahead into the
// other's stretch: decode measured 1.3x slower with 32-row chunks than with 8 long
// ones per thread (bench_decode, 2 threads). Eight still balance a slow thread.
constexpr int64_t kChunksPerThread = 8;

// With more activation rows than one vec_dot call takes, a chunk's weights are
// passed over once per group of rows, so they must stay in L2 (512 KB on Zen 3).
constexpr size_t kChunkBytesInL2 = 128 * 1024;

constexpr size_t kCacheLine = 64;

constexpr int kActFormats = 3;  // ActFormat's values

// Distance between quantized activation rows. vec_dot walks up to kMaxActRows rows
// in lockstep; a stride near a multiple of 2 KB would put them all in the same few
// L1 sets (8-way, 64 sets), so the stride is padded to 8 lines more than a
// multiple of 16 lines: 8 rows then start 8 sets apart.
size_t act_stride_padded(size_t row_bytes) {
  size_t lines = (row_bytes + kCacheLine - 1) / kCacheLine;
  lines += (24 - lines % 16) % 16;
  return lines * kCacheLine;
}

// Fewest activation elements whose quantization is split across the pool: below,
// waking the workers costs more than it saves (a decoded row of 8960 quantizes
// in about 5 us).
constexpr int64_t kMinParallelQuantize = 32768;

// Quantized activation rows in the weight type's activation format, row m at
// m * stride, cache-line aligned; f32 activations are used in place. The buffers
// are kept per calling thread and format (the products of one call may take two)
// to avoid an allocation per call. Each row is quantized by one thread, so the
// bytes do not depend on the split.
const uint8_t* activations_prepare(const KernelTable& kt, ActFormat format, const float* x, int64_t n_rows,
                                   int64_t cols, size_t stride, ThreadPool& pool) {
  if (format == ActFormat::F32) return reinterpret_cast<const uint8_t*>(x);
  thread_local std::vector<uint8_t> buffers[kActFormats];
  std::vector<uint8_t>& buffer = buffers[static_cast<int>(format)];
  buffer.resize(stride * static_cast<size_t>(n_rows) + kCacheLine);
  uint8_t* base = buffer.data() + (kCacheLine - reinterpret_cast<uintptr_t>(buffer.data()) % kCacheLine);
  auto quantize = format == ActFormat::Q8_32 ? kt.quantize_q8_32 : kt.quantize_q8_256;
  auto rows_quantize = [&](int64_t begin, int64_t end, int) {
    for (int64_t m = begin; m < end; ++m) quantize(x + m * cols, base + m * stride, cols);
  };
  if (n_rows < 2 || n_rows * cols < kMinParallelQuantize) {
    rows_quantize(0, n_rows, 0);
  } else {
    pool.parallel_for(n_rows, 1, rows_quantize);
  }
  return base;
}

// Activation bytes a GEMV's rows may take and stay in L1 (32 KB) beside the weights.
constexpr size_t kGemvActL1Bytes = 24 * 1024;

// Most decoded rows that take a GEMV in two groups, where a group's activations
// stay in L1 (rows of 1536 columns, not 8960): the second group reads the chunk's
// weights from L2, and the GEMV beats the decode-order tile, whose eight float
// accumulators per row and lane cost more than one row's unpacking saves. The
// 1.5B's 8960x1536 Q4_K, 9 and 12 rows: 1.53-1.57 -> 1.17-1.27 ms and 1.81-1.85 ->
// 1.54-1.72 ms; at 16 rows even, from 24 on slower (Zen 4, session 34).
constexpr int64_t kMaxGemvSplitRows = 2 * kMaxGemvRows;

// Groups of at most kMaxGemvRows rows that n_rows decoded rows take a GEMV in
// (0: they take no GEMV).
int64_t decode_gemv_groups(const TypeKernels& k, int64_t n_rows, size_t act_stride) {
  if (k.gemv == nullptr || n_rows < k.gemv_min_rows) return 0;
  if (n_rows <= kMaxGemvRows) return 1;
  const bool short_rows = kMaxGemvRows * act_stride <= kGemvActL1Bytes;
  return short_rows && n_rows <= kMaxGemvSplitRows ? (n_rows + kMaxGemvRows - 1) / kMaxGemvRows : 0;
}

// Fewest activation rows worth a tile: its gathers and unpacking are paid per
// weight block, however few rows share them.
constexpr int64_t kMinTileAct = 4;

int64_t rows_per_chunk(const TypeKernels& k, int64_t rows, size_t row_bytes, int64_t n_rows_x, int n_threads) {
  int64_t grain = rows / (n_threads * kChunksPerThread);
  if (n_rows_x > kMaxActRows) grain = std::min<int64_t>(grain, kChunkBytesInL2 / row_bytes);
  grain = std::max(grain, kMinRowsPerChunk);
  // Whole tiles per chunk, so that only the matrix's last rows go one by one.
  const bool tiled =
      (k.prompt_tile != nullptr || k.tile != nullptr || k.any_order_tile != nullptr) && n_rows_x >= kMinTileAct;
  if (tiled) grain = (grain + k.tile_rows - 1) / k.tile_rows * k.tile_rows;
  return grain;
}

// Consecutive activation rows [begin, end) that share their kernels.
struct ActRun {
  int64_t begin, end;
  decltype(TypeKernels::vec_dot) vec_dot;  // row by row: the rows after the last whole tile
  TileKernel* tile;                        // over the whole tiles, or null
  int64_t gemv_groups;                     // > 0: the run takes the GEMV instead, in this many groups
};

// One product of a matmul_many call: its kernels, its activations and its chunks.
struct MatmulPlan {
  const TypeKernels* kernels;
  size_t w_row_bytes;
  const uint8_t* act;   // the activations in its type's format, a row every act_stride bytes
  size_t act_stride;
  int64_t grain;        // weight rows per chunk
  int64_t first_chunk;  // the call's chunks [first_chunk, first_chunk + ceil(rows / grain)) are its
};

// A run's kernels, for rows that sum with vec_dot (a tile then has its bits).
void run_kernels_set(const TypeKernels& k, decltype(TypeKernels::vec_dot) vec_dot, size_t act_stride, ActRun& run) {
  const int64_t n_run = run.end - run.begin;
  const bool decoded = vec_dot == k.vec_dot;
  run.vec_dot = vec_dot;
  run.gemv_groups = decoded ? decode_gemv_groups(k, n_run, act_stride) : 0;
  run.tile = n_run < kMinTileAct ? nullptr : decoded ? k.tile : k.prompt_tile;
}

// An any-order run's kernels: the type's any-order tile from as many rows as it
// beats the others (kernel_table.cpp), else the decoded rows' where a GEMV takes
// the run or a tile would not, else the prompt order's (faster than the decoded
// rows' tile from 17 rows on: bench_matmul.py).
void any_order_kernels_set(const TypeKernels& k, size_t act_stride, ActRun& run) {
  const int64_t n_run = run.end - run.begin;
  const auto prompt_vec_dot = k.vec_dot_prompt != nullptr ? k.vec_dot_prompt : k.vec_dot;
  if (k.any_order_tile != nullptr && n_run >= k.any_order_tile_min_rows) {
    run.vec_dot = prompt_vec_dot;
    run.tile = k.any_order_tile;
    run.gemv_groups = 0;
  } else if (n_run < kMinTileAct || decode_gemv_groups(k, n_run, act_stride) > 0) {
    run_kernels_set(k, k.vec_dot, act_stride, run);
  } else {
    run_kernels_set(k, prompt_vec_dot, act_stride, run);
  }
}

// The activation rows cut where the kernels change: a prompt row takes the type's
// prompt-order kernel when it has one, an any-order row its own. Usually one run (a
// prompt, or decoded tokens). Into runs, which the caller keeps, so that a decode
// step allocates nothing.
void act_runs_fill(const TypeKernels& k, const uint8_t* prompt, int64_t n_rows_x, size_t act_stride,
                   std::vector<ActRun>& runs) {
  // A row's kind: its row kernel, or null for an any-order row.
  auto kind = [&](int64_t m) -> decltype(TypeKernels::vec_dot) {
    const uint8_t order = prompt != nullptr ? prompt[m] : kRowDecoded;
    if (order == kRowAnyOrder) return nullptr;
    return order == kRowPrompt && k.vec_dot_prompt != nullptr ? k.vec_dot_prompt : k.vec_dot;
  };
  runs.clear();
  for (int64_t m = 0; m < n_rows_x; ++m) {
    const auto row_kind = kind(m);
    if (runs.empty() || runs.back().vec_dot != row_kind) runs.push_back({m, m, row_kind, nullptr, 0});
    runs.back().end = m + 1;
  }
  for (ActRun& run : runs) {
    if (run.vec_dot == nullptr) {
      any_order_kernels_set(k, act_stride, run);
    } else {
      run_kernels_set(k, run.vec_dot, act_stride, run);
    }
  }
}

// y[m * ldy + r] for weight rows r in [begin, end), each run with the kernels
// act_runs_fill chose. A run of up to kMaxGemvRows decoded rows of a type with a
// GEMV takes it once over the chunk (a short-rowed run of up to
// kMaxGemvSplitRows twice, half the rows each): it sums each
// chunk of a weight block for all the rows as it unpacks it, and it has vec_dot's
// one-row bits by contract. For up to 8 rows that beats the tile's unpacking
// into L1 (Q4_K and Q6_K with vpdpwssd, Zen 4, 2 threads: 8 rows of the Q6_K LM
// head 21.6 -> 12.1 ms, 4 rows of a 8960x1536 Q4_K 0.62 -> 0.39 ms, session 24).
// A run with a tile takes it over the chunk's whole
// tiles, kMaxTileAct activation rows at a time (from L2, as the chunk's weights
// after the first group); the tile multiplies a weight block by
// all of them once unpacked, which a row-by-row kernel cannot. Other runs, and the
// rows after the last whole tile, take their kernel row by row over kMaxActRows
// activation rows at a time, activation groups outermost: one group's rows stay
// in L1 while the chunk's weight rows (from L2 after the first group) pass under them.
void matmul_rows(const TypeKernels& k, const std::vector<ActRun>& runs, const WeightView& w, size_t w_row_bytes,
                 const uint8_t* act, size_t act_stride, float* y, int64_t ldy, int64_t begin, int64_t end) {
  const uint8_t* weights = static_cast<const uint8_t*>(w.data);
  float results[kMaxActRows];
  for (const ActRun& run : runs) {
    const int64_t n_run = run.end - run.begin;
    if (const int64_t groups = run.gemv_groups) {
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t m0 = run.begin + n_run * g / groups, m1 = run.begin + n_run * (g + 1) / groups;
        k.gemv(w.cols, weights + static_cast<size_t>(begin) * w_row_bytes, w_row_bytes, end - begin,
               act + m0 * act_stride, act_stride, static_cast<int>(m1 - m0), y + m0 * ldy + begin, ldy);
      }
      continue;
    }
    int64_t tiled_end = begin;
    if (TileKernel* const tile = run.tile) {
      tiled_end = begin + (end - begin) / k.tile_rows * k.tile_rows;
      for (int64_t m0 = run.begin; m0 < run.end; m0 += kMaxTileAct) {
        const int n_act = static_cast<int>(std::min<int64_t>(kMaxTileAct, run.end - m0));
        for (int64_t r = begin; r < tiled_end; r += k.tile_rows) {
          tile(w.cols, weights + static_cast<size_t>(r) * w_row_bytes, w_row_bytes, act + m0 * act_stride, act_stride,
               n_act, y + m0 * ldy + r, ldy);
        }
      }
    }
    for (int64_t m0 = run.begin; m0 < run.end; m0 += kMaxActRows) {
      const int n_act = static_cast<int>(std::min<int64_t>(kMaxActRows, run.end - m0));
      for (int64_t r = tiled_end; r < end; ++r) {
        run.vec_dot(w.cols, weights + static_cast<size_t>(r) * w_row_bytes, act + m0 * act_stride, act_stride, n_act,
                    results);
        for (int i = 0; i < n_act; ++i) y[(m0 + i) * ldy + r] = results[i];
      }
    }
  }
}

}  // namespace

void matmul_many(const KernelTable& kt, const MatmulOut* outs, int n_outs, const float* x, int64_t n_rows_x,
                 ThreadPool& pool, const uint8_t* prompt) {
  if (n_outs < 1) return;
  const int64_t cols = outs[0].w.cols;
  for (int i = 1; i < n_outs; ++i) {
    if (outs[i].w.cols != cols) throw std::invalid_argument("matmul_many: the matrices take inputs of different widths");
  }
  // Kept per calling thread (a decode step allocates nothing); the workers reach
  // them through these references, not through their own thread's copies.
  thread_local std::vector<MatmulPlan> plans_kept;
  thread_local std::vector<std::vector<ActRun>> runs_kept;
  std::vector<MatmulPlan>& plans = plans_kept;
  std::vector<std::vector<ActRun>>& runs = runs_kept;
  plans.resize(n_outs);
  if (runs.size() < static_cast<size_t>(n_outs)) runs.resize(n_outs);
  const uint8_t* prepared[kActFormats] = {};
  int64_t n_chunks = 0;
  for (int i = 0; i < n_outs; ++i) {
    const WeightView& w = outs[i].w;
    const ActFormat format = type_traits(w.type).act_format;
    MatmulPlan& plan = plans[i];
    plan.kernels = &kernels_for(kt, w.type);
    plan.w_row_bytes = row_bytes(w.type, cols);
    plan.act_stride = format == ActFormat::F32 ? act_row_bytes(ActFormat::F32, cols)
                                                : act_stride_padded(act_row_bytes(format, cols));
    const uint8_t*& act = prepared[static_cast<int>(format)];
    if (act == nullptr) act = activations_prepare(kt, format, x, n_rows_x, cols, plan.act_stride, pool);
    plan.act = act;
    act_runs_fill(*plan.kernels, prompt, n_rows_x, plan.act_stride, runs[i]);
    plan.grain = rows_per_chunk(*plan.kernels, w.rows, plan.w_row_bytes, n_rows_x, pool.size());
    plan.first_chunk = n_chunks;
    n_chunks += (w.rows + plan.grain - 1) / plan.grain;
  }
  pool.parallel_for(n_chunks, 1, [&](int64_t begin, int64_t end, int) {
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      int i = 0;
      while (i + 1 < n_outs && plans[i + 1].first_chunk <= chunk) ++i;
      const MatmulPlan& plan = plans[i];
      const int64_t row_begin = (chunk - plan.first_chunk) * plan.grain;
      matmul_rows(*plan.kernels, runs[i], outs[i].w, plan.w_row_bytes, plan.act, plan.act_stride, outs[i].y,
                  outs[i].ldy, row_begin, std::min(row_begin + plan.grain, outs[i].w.rows));
    }
  });
}

void matmul(const KernelTable& kt, const WeightView& w, const float* x, int64_t n_rows_x, float* y, int64_t ldy,
            ThreadPool& pool, const uint8_t* prompt) {
  const MatmulOut out{w, y, ldy};
  matmul_many(kt, &out, 1, x, n_rows_x, pool, prompt);
}

}  // namespace duet
