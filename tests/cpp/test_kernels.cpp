// Kernel tests without Python: every runnable SIMD path against the scalar path
// (dequantize equal, vec_dot close, prompt-order vec_dot and quantizers equal) and
// batch invariance of vec_dot and matmul (prompt and decoded rows mixed), on fixed-seed random blocks. Prints "isa NAME: N checks" per
// path it ran (so a run shows which paths the CPU had), then "N passed, N failed".
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ops/matmul.h"
#include "quant/formats.h"
#include "quant/kernels.h"
#include "quant/scalar_kernels.h"

using namespace duet;

namespace {

int g_passed = 0, g_failed = 0;

void check(bool ok, const std::string& what) {
  if (ok) {
    ++g_passed;
  } else {
    ++g_failed;
    std::printf("FAIL: %s\n", what.c_str());
  }
}

const GgmlType kTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q5_0,
                           GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};

// Byte offsets of the f16 scale fields in a block, which random bytes would make
// inf or nan.
std::vector<int> scale_offsets(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0: return {0};
    case GgmlType::Q4_K: case GgmlType::Q5_K: return {0, 2};
    case GgmlType::Q6_K: return {208};
    default: return {};
  }
}

void f16_store(uint8_t* p, float v) {
  uint16_t h = fp32_to_fp16(v);
  std::memcpy(p, &h, 2);
}

// rows rows of n elements of `type`, valid: finite scales and weights.
std::vector<uint8_t> random_rows(GgmlType type, int64_t rows, int64_t n, std::mt19937& rng) {
  const TypeTraits& t = type_traits(type);
  std::vector<uint8_t> data(rows * row_bytes(type, n));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> small(-0.05f, 0.05f);
  const int64_t count = rows * n / t.block_elems;
  for (int64_t b = 0; b < count; ++b) {
    uint8_t* block = data.data() + b * t.block_bytes;
    switch (type) {
      case GgmlType::F32: { float v = normal(rng); std::memcpy(block, &v, 4); break; }
      case GgmlType::F16: f16_store(block, normal(rng)); break;
      case GgmlType::BF16: {
        float v = normal(rng);
        uint32_t u;
        std::memcpy(&u, &v, 4);
        uint16_t h = static_cast<uint16_t>(u >> 16);
        std::memcpy(block, &h, 2);
        break;
      }
      default:
        for (int i = 0; i < t.block_bytes; ++i) block[i] = static_cast<uint8_t>(rng());
        for (int offset : scale_offsets(type)) f16_store(block + offset, small(rng));
    }
  }
  return data;
}

// Activation rows as vec_dot takes them, and their float values.
struct Activations {
  std::vector<uint8_t> bytes;   // [n_rows][stride]
  std::vector<double> values;   // [n_rows][n] what the bytes encode
  size_t stride;
};

Activations activations_quantize(const KernelTable& kt, GgmlType type, const std::vector<float>& x, int64_t n_rows,
                                 int64_t n) {
  const ActFormat format = type_traits(type).act_format;
  Activations a;
  a.stride = act_row_bytes(format, n);
  a.bytes.resize(a.stride * n_rows);
  a.values.resize(n_rows * n);
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* row = x.data() + r * n;
    uint8_t* dst = a.bytes.data() + r * a.stride;
    double* values = a.values.data() + r * n;
    if (format == ActFormat::F32) {
      std::memcpy(dst, row, n * sizeof(float));
      for (int64_t i = 0; i < n; ++i) values[i] = row[i];
    } else if (format == ActFormat::Q8_32) {
      kt.quantize_q8_32(row, dst, n);
      const ActQ8_32* blocks = reinterpret_cast<const ActQ8_32*>(dst);
      for (int64_t i = 0; i < n; ++i) values[i] = double(blocks[i / QK32].d) * blocks[i / QK32].qs[i % QK32];
    } else {
      kt.quantize_q8_256(row, dst, n);
      const ActQ8_256* blocks = reinterpret_cast<const ActQ8_256*>(dst);
      for (int64_t i = 0; i < n; ++i) values[i] = double(blocks[i / QK_K].d) * blocks[i / QK_K].qs[i % QK_K];
    }
  }
  return a;
}

int64_t cols_for(GgmlType type) {
  const int block = type_traits(type).block_elems;
  return block == 1 ? 157 : block * 5;
}

bool bits_equal(const float* a, const float* b, int64_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

void test_isa_against_scalar(Isa isa, GgmlType type) {
  const KernelTable& simd = kernel_table(isa);
  const KernelTable& scalar = kernel_table(Isa::Scalar);
  const std::string label = std::string(isa_name(isa)) + " " + type_traits(type).name;
  std::mt19937 rng(1234 + static_cast<int>(type));
  const int64_t n = cols_for(type), rows = 3;
  const std::vector<uint8_t> w = random_rows(type, rows, n, rng);
  const size_t w_stride = row_bytes(type, n);

  // Dequantize: equal bits.
  std::vector<float> deq_simd(rows * n), deq_scalar(rows * n);
  kernels_for(simd, type).dequantize_row(w.data(), deq_simd.data(), rows * n);
  kernels_for(scalar, type).dequantize_row(w.data(), deq_scalar.data(), rows * n);
  check(bits_equal(deq_simd.data(), deq_scalar.data(), rows * n), label + " dequantize equals scalar");

  // Quantizers: identical bytes.
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> x(kMaxActRows * n);
  for (float& v : x) v = normal(rng);
  const Activations a = activations_quantize(simd, type, x, kMaxActRows, n);
  const Activations a_ref = activations_quantize(scalar, type, x, kMaxActRows, n);
  check(a.bytes == a_ref.bytes, label + " activation quantizer bytes equal scalar");

  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* w_row = w.data() + r * w_stride;
    float got[kMaxActRows], want[kMaxActRows];
    kernels_for(simd, type).vec_dot(n, w_row, a.bytes.data(), a.stride, kMaxActRows, got);
    kernels_for(scalar, type).vec_dot(n, w_row, a.bytes.data(), a.stride, kMaxActRows, want);
    bool close = true;
    for (int i = 0; i < kMaxActRows; ++i) {
      double scale = 0.0;
      for (int64_t k = 0; k < n; ++k) scale += std::fabs(deq_scalar[r * n + k] * a.values[i * n + k]);
      close = close && std::fabs(double(got[i]) - double(want[i])) <= 2e-5 * scale + 1e-30;
    }
    check(close, label + " vec_dot close to scalar, row " + std::to_string(r));

    // Batch invariance: each row alone, and every n_act, give the same bits.
    bool invariant = true;
    for (int n_act = 1; n_act <= kMaxActRows; ++n_act) {
      for (int first = 0; first + n_act <= kMaxActRows; ++first) {
        float part[kMaxActRows];
        kernels_for(simd, type).vec_dot(n, w_row, a.bytes.data() + first * a.stride, a.stride, n_act, part);
        invariant = invariant && bits_equal(part, got + first, n_act);
      }
    }
    check(invariant, label + " vec_dot batch invariant, row " + std::to_string(r));
  }
}

// A path's prompt-order kernel against the scalar one: equal bits (exact integers,
// then the same float steps), for every activation row in every window of rows.
void test_vec_dot_prompt(Isa isa, GgmlType type) {
  const auto simd = kernels_for(kernel_table(isa), type).vec_dot_prompt;
  const auto scalar = kernels_for(kernel_table(Isa::Scalar), type).vec_dot_prompt;
  if (simd == nullptr || isa == Isa::Scalar) return;
  const std::string label = std::string(isa_name(isa)) + " " + type_traits(type).name;
  std::mt19937 rng(4321 + static_cast<int>(type));
  const int64_t n = cols_for(type), rows = 5;
  const std::vector<uint8_t> w = random_rows(type, rows, n, rng);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> x(kMaxActRows * n);
  for (float& v : x) v = normal(rng);
  const Activations a = activations_quantize(kernel_table(Isa::Scalar), type, x, kMaxActRows, n);
  bool equal = true;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* w_row = w.data() + r * row_bytes(type, n);
    float want[kMaxActRows];
    scalar(n, w_row, a.bytes.data(), a.stride, kMaxActRows, want);
    for (int n_act = 1; n_act <= kMaxActRows; ++n_act) {
      for (int first = 0; first + n_act <= kMaxActRows; ++first) {
        float got[kMaxActRows];
        simd(n, w_row, a.bytes.data() + first * a.stride, a.stride, n_act, got);
        equal = equal && bits_equal(got, want + first, n_act);
      }
    }
  }
  check(equal, label + " vec_dot_prompt has the scalar bits");
}

// The bytes of K-quant weights with every weight at its largest (Q4_K 15, Q6_K 63
// before its -32), the scales left as they are: with activations of -128 the 16-bit
// sums of a prompt tile come nearest to overflowing.
void weights_saturate(GgmlType type, std::vector<uint8_t>& w) {
  const TypeTraits& t = type_traits(type);
  for (size_t b = 0; b < w.size() / t.block_bytes; ++b) {
    uint8_t* block = w.data() + b * t.block_bytes;
    if (type == GgmlType::Q4_K) std::memset(block + offsetof(BlockQ4_K, qs), 0xff, sizeof(BlockQ4_K::qs));
    if (type == GgmlType::Q6_K) std::memset(block, 0xff, offsetof(BlockQ6_K, scales));
  }
}

// A path's tiles against its row-by-row kernels (prompt_tile: vec_dot_prompt;
// tile: vec_dot): equal bits for each weight row of the tile and each activation
// row, for batches from 1 to the most a call takes, with weight rows padded apart;
// also at the integer extremes. 37 blocks: more than two of the chunks a tile
// unpacks at a time (16 blocks of a 32-element format), and a part of one.
void test_tiles(Isa isa, GgmlType type) {
  const TypeKernels& k = kernels_for(kernel_table(isa), type);
  const std::pair<TileKernel*, decltype(k.vec_dot)> pairs[] = {{k.prompt_tile, k.vec_dot_prompt},
                                                                     {k.tile, k.vec_dot}};
  const std::string label = std::string(isa_name(isa)) + " " + type_traits(type).name;
  std::mt19937 rng(2468 + static_cast<int>(type));
  const int64_t n = type_traits(type).block_elems * 37, rows = k.tile_rows;
  const size_t packed_bytes = row_bytes(type, n), stride = packed_bytes + 64;
  for (const auto& [tile, row_kernel] : pairs) {
    if (tile == nullptr) continue;
    const std::string name = tile == k.tile ? " tile" : " prompt tile";
    for (bool extreme : {false, true}) {
      std::vector<uint8_t> packed = random_rows(type, rows, n, rng);
      if (extreme) weights_saturate(type, packed);
      std::vector<uint8_t> w(rows * stride);
      for (int64_t r = 0; r < rows; ++r) {
        std::memcpy(w.data() + r * stride, packed.data() + r * packed_bytes, packed_bytes);
      }
      std::normal_distribution<float> normal(0.0f, 2.0f);
      std::vector<float> x(kMaxTileAct * n);
      for (float& v : x) v = extreme ? -1.0f : normal(rng);  // all -1: every value quantizes to -128 (Q8_K)
      const Activations a = activations_quantize(kernel_table(isa), type, x, kMaxTileAct, n);
      std::vector<float> want(kMaxTileAct * rows);  // [act row][weight row]
      for (int64_t r = 0; r < rows; ++r) {
        for (int m = 0; m < kMaxTileAct; ++m) {
          row_kernel(n, w.data() + r * stride, a.bytes.data() + m * a.stride, a.stride, 1, &want[m * rows + r]);
        }
      }
      bool equal = true;
      for (int n_act : {1, 2, 3, 4, 5, 7, 16, 17, 33, 48, kMaxTileAct - 1, kMaxTileAct}) {
        std::vector<float> got(n_act * rows);
        tile(n, w.data(), stride, a.bytes.data(), a.stride, n_act, got.data(), rows);
        equal = equal && bits_equal(got.data(), want.data(), n_act * rows);
      }
      check(equal, label + name + (extreme ? " at the extremes" : "") + " has its row kernel's bits");
    }
  }
}

// Every weight of a 32-element format's blocks at its largest magnitude (Q4_0 -8,
// Q5_0 -16, Q8_0 -128), the scales left as they are.
void weights_extreme32(GgmlType type, std::vector<uint8_t>& w) {
  const TypeTraits& t = type_traits(type);
  for (size_t b = 0; b < w.size() / t.block_bytes; ++b) {
    uint8_t* block = w.data() + b * t.block_bytes;
    std::memset(block + 2, type == GgmlType::Q8_0 ? 0x80 : 0x00, t.block_bytes - 2);
  }
}

// A path's any-order tile (the block order, for a drafter's rows) against a plain
// model of that order: each block's exact integer dot product, then one FMA with
// the product of the two blocks' scales into the row's sum, block after block. For
// batches from 1 row to the most a call takes, weight rows padded apart, also at
// the integer extremes (every product at its largest: -1 quantizes to -127).
void test_any_order_tile(Isa isa, GgmlType type) {
  const TypeKernels& k = kernels_for(kernel_table(isa), type);
  if (k.any_order_tile == nullptr) return;
  const std::string label = std::string(isa_name(isa)) + " " + type_traits(type).name + " any-order tile";
  std::mt19937 rng(1357 + static_cast<int>(type));
  const int64_t n = QK32 * 37, n_blocks = 37, rows = k.tile_rows;
  const size_t packed_bytes = row_bytes(type, n), stride = packed_bytes + 64, block_bytes = packed_bytes / n_blocks;
  const auto dequantize_row = kernels_for(kernel_table(Isa::Scalar), type).dequantize_row;
  for (bool extreme : {false, true}) {
    std::vector<uint8_t> packed = random_rows(type, rows, n, rng);
    if (extreme) weights_extreme32(type, packed);
    std::vector<uint8_t> w(rows * stride);
    std::vector<int32_t> q(rows * n);  // the integer weights, q - offset
    std::vector<float> d(rows * n_blocks), row(n);
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t* src = packed.data() + r * packed_bytes;
      std::memcpy(w.data() + r * stride, src, packed_bytes);
      dequantize_row(src, row.data(), n);
      for (int64_t b = 0; b < n_blocks; ++b) {
        uint16_t h;
        std::memcpy(&h, src + b * block_bytes, 2);
        d[r * n_blocks + b] = fp16_to_fp32(h);
      }
      for (int64_t i = 0; i < n; ++i) {
        const float scale = d[r * n_blocks + i / QK32];  // 0: the block adds nothing, whatever q
        q[r * n + i] = scale != 0.0f ? static_cast<int32_t>(std::lrint(row[i] / scale)) : 0;
      }
    }
    std::normal_distribution<float> normal(0.0f, 2.0f);
    std::vector<float> x(kMaxTileAct * n);
    for (float& v : x) v = extreme ? -1.0f : normal(rng);
    const Activations a = activations_quantize(kernel_table(isa), type, x, kMaxTileAct, n);
    std::vector<float> want(kMaxTileAct * rows);  // [act row][weight row]
    for (int m = 0; m < kMaxTileAct; ++m) {
      const ActQ8_32* blocks = reinterpret_cast<const ActQ8_32*>(a.bytes.data() + m * a.stride);
      for (int64_t r = 0; r < rows; ++r) {
        float sum = 0.0f;
        for (int64_t b = 0; b < n_blocks; ++b) {
          int32_t dot = 0;
          for (int i = 0; i < QK32; ++i) dot += q[r * n + b * QK32 + i] * blocks[b].qs[i];
          sum = std::fma(d[r * n_blocks + b] * blocks[b].d, static_cast<float>(dot), sum);
        }
        want[m * rows + r] = sum;
      }
    }
    bool equal = true;
    for (int n_act : {1, 2, 3, 4, 5, 7, 16, 17, 33, 48, kMaxTileAct - 1, kMaxTileAct}) {
      std::vector<float> got(n_act * rows);
      k.any_order_tile(n, w.data(), stride, a.bytes.data(), a.stride, n_act, got.data(), rows);
      equal = equal && bits_equal(got.data(), want.data(), n_act * rows);
    }
    check(equal, label + (extreme ? " at the extremes" : "") + " sums in the block order");
  }
}

// Row m's result with flag prompt[m] equals that row alone with its flag, for any
// batch size, with prompt and decoded rows mixed (a tree whose root is a prompt token).
void test_matmul_batch_invariance(Isa isa, GgmlType type, ThreadPool& pool) {
  const KernelTable& kt = kernel_table(isa);
  std::mt19937 rng(99 + static_cast<int>(type));
  const int64_t n = cols_for(type), rows = 45, max_m = 17;
  const std::vector<uint8_t> w = random_rows(type, rows, n, rng);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(max_m * n);
  for (float& v : x) v = normal(rng);
  std::vector<uint8_t> prompt(max_m);
  for (int64_t m = 0; m < max_m; ++m) prompt[m] = m < 3 || m % 4 == 1;
  const WeightView view{w.data(), type, rows, n};
  std::vector<float> single(max_m * rows);
  for (int64_t m = 0; m < max_m; ++m) {
    matmul(kt, view, x.data() + m * n, 1, single.data() + m * rows, rows, pool, prompt.data() + m);
  }
  bool invariant = true;
  for (int64_t m_rows = 1; m_rows <= max_m; ++m_rows) {
    std::vector<float> y(m_rows * rows);
    matmul(kt, view, x.data(), m_rows, y.data(), rows, pool, prompt.data());
    invariant = invariant && bits_equal(y.data(), single.data(), m_rows * rows);
  }
  check(invariant, std::string(isa_name(isa)) + " " + type_traits(type).name + " matmul batch invariant");
}

// matmul_many over matrices of different types, sizes and activation formats, with
// prompt and decoded rows mixed: every product equals matmul's, bit for bit, and
// matrices of different widths are refused.
void test_matmul_many(Isa isa, ThreadPool& pool) {
  const KernelTable& kt = kernel_table(isa);
  std::mt19937 rng(7);
  const int64_t n = 2 * QK_K, max_m = 17;
  const std::pair<GgmlType, int64_t> products[] = {
      {GgmlType::Q5_0, 200}, {GgmlType::Q4_K, 33}, {GgmlType::Q6_K, 130}, {GgmlType::Q8_0, 64}, {GgmlType::F32, 5}};
  std::vector<std::vector<uint8_t>> weights;
  for (const auto& [type, rows] : products) weights.push_back(random_rows(type, rows, n, rng));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(max_m * n);
  for (float& v : x) v = normal(rng);
  std::vector<uint8_t> prompt(max_m);
  for (int64_t m = 0; m < max_m; ++m) prompt[m] = m % 3 == 0;
  bool equal = true;
  for (int64_t m_rows : {1, 3, 9, 17}) {
    std::vector<MatmulOut> outs;
    std::vector<std::vector<float>> fused, alone;
    for (size_t i = 0; i < weights.size(); ++i) {
      const int64_t rows = products[i].second;
      fused.emplace_back(m_rows * rows, -1.0f);
      alone.emplace_back(m_rows * rows, -2.0f);
      const WeightView view{weights[i].data(), products[i].first, rows, n};
      matmul(kt, view, x.data(), m_rows, alone[i].data(), rows, pool, prompt.data());
      outs.push_back({view, fused[i].data(), rows});
    }
    matmul_many(kt, outs.data(), static_cast<int>(outs.size()), x.data(), m_rows, pool, prompt.data());
    for (size_t i = 0; i < weights.size(); ++i) equal = equal && fused[i] == alone[i];
  }
  check(equal, std::string(isa_name(isa)) + " matmul_many equals matmul per product");
  std::vector<float> y(64);
  const MatmulOut mixed[] = {{{weights[0].data(), GgmlType::Q5_0, 1, n}, y.data(), 1},
                             {{weights[1].data(), GgmlType::Q4_K, 1, QK_K}, y.data() + 1, 1}};
  bool refused = false;
  try {
    matmul_many(kt, mixed, 2, x.data(), 1, pool, nullptr);
  } catch (const std::invalid_argument&) {
    refused = true;
  }
  check(refused, std::string(isa_name(isa)) + " matmul_many refuses matrices of different widths");
}

// A path's GEMV (a few activation rows, many weight rows) against its vec_dot with
// one activation row: equal bits for every weight row and activation row, over any
// run of weight rows (counts that are not multiples of a kernel's row group), any
// number of activation rows it takes, with weight rows padded apart and results
// written with a leading dimension wider than the run.
void test_gemv(Isa isa, GgmlType type) {
  const TypeKernels& k = kernels_for(kernel_table(isa), type);
  if (k.gemv == nullptr) return;
  const std::string label = std::string(isa_name(isa)) + " " + type_traits(type).name;
  std::mt19937 rng(777 + static_cast<int>(type));
  const int64_t n = cols_for(type), rows = 13, ldo = rows + 5;
  const size_t packed_bytes = row_bytes(type, n), stride = packed_bytes + 64;
  const std::vector<uint8_t> packed = random_rows(type, rows, n, rng);
  std::vector<uint8_t> w(rows * stride);  // [rows][stride], the same rows 64 bytes apart
  for (int64_t r = 0; r < rows; ++r) std::memcpy(w.data() + r * stride, packed.data() + r * packed_bytes, packed_bytes);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(kMaxGemvRows * n);
  for (float& v : x) v = normal(rng);
  const Activations a = activations_quantize(kernel_table(isa), type, x, kMaxGemvRows, n);
  std::vector<float> want(kMaxGemvRows * rows);  // [activation row][weight row]
  for (int i = 0; i < kMaxGemvRows; ++i) {
    for (int64_t r = 0; r < rows; ++r) {
      k.vec_dot(n, w.data() + r * stride, a.bytes.data() + i * a.stride, a.stride, 1, &want[i * rows + r]);
    }
  }
  bool equal = true;
  for (int n_act = 1; n_act <= kMaxGemvRows; ++n_act) {
    for (int64_t first = 0; first < rows; ++first) {
      for (int64_t count = 1; first + count <= rows; ++count) {
        std::vector<float> got(n_act * ldo, -1.0f);
        k.gemv(n, w.data() + first * stride, stride, count, a.bytes.data(), a.stride, n_act, got.data(), ldo);
        for (int i = 0; i < n_act; ++i) {
          equal = equal && bits_equal(got.data() + i * ldo, want.data() + i * rows + first, count);
          equal = equal && got[i * ldo + count] == -1.0f;  // nothing past the run
        }
      }
    }
  }
  check(equal, label + " gemv has vec_dot's bits for 1 to " + std::to_string(kMaxGemvRows) + " rows");
}

}  // namespace

// Q4_0 weights as ggml's reference makes them: the value of largest magnitude
// (the first of equal ones) maps to q = 0, so d = -max / 8; every weight comes
// back within one step |d| (half a step, but for the far end, clipped at q = 15);
// a zero block gives d = -0 and q = 8.
void test_quantize_q4_0() {
  float x[3 * QK32] = {};
  for (int j = 0; j < QK32; ++j) x[j] = 0.25f * static_cast<float>(j - 12);  // max magnitude 4.75 at j = 31
  x[QK32 + 3] = -2.0f, x[QK32 + 9] = 2.0f;                                     // ties: the first, negative, wins
  BlockQ4_0 q[3];
  scalar::quantize_row_q4_0(x, q, 3 * QK32);
  check(q[0].d == fp32_to_fp16(4.75f / -8.0f), "quantize_q4_0: d from the signed max");
  check(fp16_to_fp32(q[1].d) == 0.25f && (q[1].qs[3] & 0xf) == 0, "quantize_q4_0: the first of equal magnitudes");
  check(fp16_to_fp32(q[2].d) == 0.0f && q[2].qs[0] == 0x88, "quantize_q4_0: a zero block");
  float y[3 * QK32];
  scalar::dequantize_row_q4_0(q, y, 3 * QK32);
  bool close = true;
  for (int i = 0; i < 3 * QK32; ++i) close &= std::fabs(y[i] - x[i]) <= std::fabs(fp16_to_fp32(q[i / QK32].d));
  check(close, "quantize_q4_0: weights within a step");
}

int main() {
  test_quantize_q4_0();
  ThreadPool pool(2);
  for (Isa isa : isa_runnable_list()) {
    const int checks_before = g_passed + g_failed;
    for (GgmlType type : kTypes) {
      if (isa != Isa::Scalar) test_isa_against_scalar(isa, type);
      test_gemv(isa, type);
      test_vec_dot_prompt(isa, type);
      test_tiles(isa, type);
      test_any_order_tile(isa, type);
      test_matmul_batch_invariance(isa, type, pool);
    }
    test_matmul_many(isa, pool);
    std::printf("isa %s: %d checks\n", isa_name(isa), g_passed + g_failed - checks_before);
  }
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
