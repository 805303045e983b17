// Assembles one kernel table per ISA path. A path starts from the scalar table and
// replaces the entries it has specialised kernels for.
#include <stdexcept>
#include <string>

#include "quant/kernels.h"
#include "quant/scalar_kernels.h"
#if defined(DUET_X86)
#include "quant/avx2/avx2_kernels.h"
#include "quant/avx512/avx512_kernels.h"
#endif
#if defined(DUET_AMX)
#include "quant/amx/amx_kernels.h"
#endif
#if defined(DUET_ARM64)
#include "quant/neon/neon_kernels.h"
#endif

namespace duet {

namespace {

void set_kernels(KernelTable& t, GgmlType type, decltype(TypeKernels::dequantize_row) dequantize_row,
                 decltype(TypeKernels::vec_dot) vec_dot) {
  t.types[type_index(type)] = {dequantize_row, vec_dot};
}

void set_vec_dot(KernelTable& t, GgmlType type, decltype(TypeKernels::vec_dot) vec_dot) {
  t.types[type_index(type)].vec_dot = vec_dot;
}

void set_gemv(KernelTable& t, GgmlType type, decltype(TypeKernels::gemv) gemv, int min_rows = 0) {
  t.types[type_index(type)].gemv = gemv;
  t.types[type_index(type)].gemv_min_rows = min_rows;
}

void set_vec_dot_prompt(KernelTable& t, GgmlType type, decltype(TypeKernels::vec_dot_prompt) vec_dot_prompt) {
  t.types[type_index(type)].vec_dot_prompt = vec_dot_prompt;
}

void set_tiles(KernelTable& t, GgmlType type, TileKernel* prompt_tile, TileKernel* tile, int rows) {
  t.types[type_index(type)].prompt_tile = prompt_tile;
  t.types[type_index(type)].tile = tile;
  t.types[type_index(type)].tile_rows = rows;
}

// rows: the weight rows one call covers, which the type's other tiles (if any) share.
void set_any_order_tile(KernelTable& t, GgmlType type, TileKernel* tile, int rows, int min_rows) {
  t.types[type_index(type)].any_order_tile = tile;
  t.types[type_index(type)].tile_rows = rows;
  t.types[type_index(type)].any_order_tile_min_rows = min_rows;
}

KernelTable scalar_table() {
  KernelTable t{};
  t.isa = Isa::Scalar;
  set_kernels(t, GgmlType::F32, scalar::dequantize_row_f32, scalar::vec_dot_f32);
  set_kernels(t, GgmlType::F16, scalar::dequantize_row_f16, scalar::vec_dot_f16);
  set_kernels(t, GgmlType::BF16, scalar::dequantize_row_bf16, scalar::vec_dot_bf16);
  set_kernels(t, GgmlType::Q4_0, scalar::dequantize_row_q4_0, scalar::vec_dot_q4_0);
  set_kernels(t, GgmlType::Q5_0, scalar::dequantize_row_q5_0, scalar::vec_dot_q5_0);
  set_kernels(t, GgmlType::Q8_0, scalar::dequantize_row_q8_0, scalar::vec_dot_q8_0);
  set_kernels(t, GgmlType::Q4_K, scalar::dequantize_row_q4_k, scalar::vec_dot_q4_k);
  set_kernels(t, GgmlType::Q5_K, scalar::dequantize_row_q5_k, scalar::vec_dot_q5_k);
  set_kernels(t, GgmlType::Q6_K, scalar::dequantize_row_q6_k, scalar::vec_dot_q6_k);
  set_vec_dot_prompt(t, GgmlType::Q4_K, scalar::vec_dot_prompt_q4_k);
  set_vec_dot_prompt(t, GgmlType::Q5_K, scalar::vec_dot_prompt_q5_k);
  set_vec_dot_prompt(t, GgmlType::Q6_K, scalar::vec_dot_prompt_q6_k);
  t.quantize_q8_32 = scalar::quantize_q8_32;
  t.quantize_q8_256 = scalar::quantize_q8_256;
  return t;
}

#if defined(DUET_X86)
KernelTable avx2_table() {
  KernelTable t = scalar_table();
  t.isa = Isa::Avx2;
  set_vec_dot(t, GgmlType::F32, avx2::vec_dot_f32);
  set_vec_dot(t, GgmlType::F16, avx2::vec_dot_f16);
  set_vec_dot(t, GgmlType::BF16, avx2::vec_dot_bf16);
  set_vec_dot(t, GgmlType::Q4_0, avx2::vec_dot_q4_0);
  set_vec_dot(t, GgmlType::Q5_0, avx2::vec_dot_q5_0);
  set_vec_dot(t, GgmlType::Q8_0, avx2::vec_dot_q8_0);
  set_vec_dot(t, GgmlType::Q4_K, avx2::vec_dot_q4_k);
  set_vec_dot(t, GgmlType::Q5_K, avx2::vec_dot_q5_k);
  set_vec_dot(t, GgmlType::Q6_K, avx2::vec_dot_q6_k);
  set_gemv(t, GgmlType::Q4_0, avx2::gemv_q4_0);
  set_gemv(t, GgmlType::Q5_0, avx2::gemv_q5_0);
  set_gemv(t, GgmlType::Q4_K, avx2::gemv_q4_k);
  set_gemv(t, GgmlType::Q5_K, avx2::gemv_q5_k);
  set_gemv(t, GgmlType::Q6_K, avx2::gemv_q6_k);
  set_vec_dot_prompt(t, GgmlType::Q4_K, avx2::vec_dot_prompt_q4_k);
  set_vec_dot_prompt(t, GgmlType::Q5_K, avx2::vec_dot_prompt_q5_k);
  set_vec_dot_prompt(t, GgmlType::Q6_K, avx2::vec_dot_prompt_q6_k);
  set_tiles(t, GgmlType::Q4_K, avx2::prompt_tile_q4_k, avx2::tile_q4_k, 8);
  set_tiles(t, GgmlType::Q6_K, avx2::prompt_tile_q6_k, avx2::tile_q6_k, 8);
  // From six rows the tile beats the GEMV: Q5_0 4864x896, 8 rows 0.41 against
  // 0.53-0.55 ms, 6 rows even (Zen 4, session 36). Q8_0, without a GEMV here, takes
  // the same bound: its tile was measured against vec_dot from 9 rows only (128x896:
  // 0.016 against 0.020 ms).
  set_any_order_tile(t, GgmlType::Q4_0, avx2::any_order_tile_q4_0, 8, 6);
  set_any_order_tile(t, GgmlType::Q5_0, avx2::any_order_tile_q5_0, 8, 6);
  set_any_order_tile(t, GgmlType::Q8_0, avx2::any_order_tile_q8_0, 8, 6);
  t.quantize_q8_32 = avx2::quantize_q8_32;
  t.quantize_q8_256 = avx2::quantize_q8_256;
  return t;
}

// Starts from AVX2 (an AVX-512 CPU runs it): the float types, the quantizers and
// the prompt-order kernels (exact integers, then scalar float steps: the same bits
// on any x86 path) stay the AVX2 ones.
KernelTable avx512_table() {
  KernelTable t = avx2_table();
  t.isa = Isa::Avx512;
  set_vec_dot(t, GgmlType::Q4_0, avx512::vec_dot_q4_0);
  set_vec_dot(t, GgmlType::Q5_0, avx512::vec_dot_q5_0);
  set_vec_dot(t, GgmlType::Q8_0, avx512::vec_dot_q8_0);
  set_vec_dot(t, GgmlType::Q4_K, avx512::vec_dot_q4_k);
  set_vec_dot(t, GgmlType::Q5_K, avx512::vec_dot_q5_k);
  set_vec_dot(t, GgmlType::Q6_K, avx512::vec_dot_q6_k);
  set_tiles(t, GgmlType::Q4_K, avx512::prompt_tile_q4_k, avx512::tile_q4_k, 16);
  set_tiles(t, GgmlType::Q6_K, avx512::prompt_tile_q6_k, avx512::tile_q6_k, 16);
  set_tiles(t, GgmlType::Q4_0, nullptr, avx512::tile_q4_0, 16);
  set_tiles(t, GgmlType::Q5_0, nullptr, avx512::tile_q5_0, 16);
  set_tiles(t, GgmlType::Q8_0, nullptr, avx512::tile_q8_0, 16);
  // More rows than one GEMV takes (Q5_0 4864x896: even at 8 rows, 10 rows 0.43
  // against 0.45 ms, 16 rows 0.51 against 0.84; Zen 4, session 35).
  set_any_order_tile(t, GgmlType::Q4_0, avx512::any_order_tile_q4_0, 16, kMaxGemvRows + 1);
  set_any_order_tile(t, GgmlType::Q5_0, avx512::any_order_tile_q5_0, 16, kMaxGemvRows + 1);
  set_any_order_tile(t, GgmlType::Q8_0, avx512::any_order_tile_q8_0, 16, kMaxGemvRows + 1);
  // The K-quants' GEMVs are AVX2's with vpdpwssd: the integer sums are exact and
  // the float steps the same, so they give these vec_dots' bits, and one row's fused
  // unpack-and-sum runs 2.7x faster than unpacking the block for the wide multiplies
  // (Q4_K, Zen 4). Q4_0 and Q5_0 decode with unsigned nibbles and mask registers,
  // Q8_0 with its bytes moved up by 128 (block32_gemv.h). Below four rows Q8_0 keeps
  // vec_dot: on a 23130x4096 matrix (96 MB) its GEMV took 3.7-3.9 ms for one row
  // against 2.0-2.7 ms; from four rows on it beats vec_dot on the 0.5B's
  // 151936x896 head (5.3 against 6.8 ms) and the tile on both (Zen 4, session 28).
  set_gemv(t, GgmlType::Q4_0, avx512::gemv_q4_0);
  set_gemv(t, GgmlType::Q5_0, avx512::gemv_q5_0);
  set_gemv(t, GgmlType::Q8_0, avx512::gemv_q8_0, 4);
  set_gemv(t, GgmlType::Q4_K, avx512::gemv_q4_k);
  set_gemv(t, GgmlType::Q5_K, avx512::gemv_q5_k);
  set_gemv(t, GgmlType::Q6_K, avx512::gemv_q6_k);
  return t;
}
#endif

#if defined(DUET_AMX)
KernelTable amx_table() {
  KernelTable t = avx512_table();
  t.isa = Isa::Amx;
  t.types[type_index(GgmlType::Q4_K)].prompt_tile = amx::prompt_tile_q4_k;
  t.types[type_index(GgmlType::Q6_K)].prompt_tile = amx::prompt_tile_q6_k;
  return t;
}
#endif

#if defined(DUET_ARM64)
KernelTable neon_table() {
  KernelTable t = scalar_table();
  t.isa = Isa::Neon;
  set_vec_dot(t, GgmlType::F32, neon::vec_dot_f32);
  set_vec_dot(t, GgmlType::F16, neon::vec_dot_f16);
  set_vec_dot(t, GgmlType::BF16, neon::vec_dot_bf16);
  set_vec_dot(t, GgmlType::Q4_0, neon::vec_dot_q4_0);
  set_vec_dot(t, GgmlType::Q5_0, neon::vec_dot_q5_0);
  set_vec_dot(t, GgmlType::Q8_0, neon::vec_dot_q8_0);
  set_vec_dot(t, GgmlType::Q4_K, neon::vec_dot_q4_k);
  set_vec_dot(t, GgmlType::Q5_K, neon::vec_dot_q5_k);
  set_vec_dot(t, GgmlType::Q6_K, neon::vec_dot_q6_k);
  // llama.cpp's tiled matmul kernels are written for x86; here prompt tokens take
  // vec_dot (the scalar prompt kernels would make prefill slow).
  for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K}) set_vec_dot_prompt(t, type, nullptr);
  return t;
}

KernelTable dotprod_table() {
  KernelTable t = neon_table();
  t.isa = Isa::Dotprod;
  set_vec_dot(t, GgmlType::Q4_0, dotprod::vec_dot_q4_0);
  set_vec_dot(t, GgmlType::Q5_0, dotprod::vec_dot_q5_0);
  set_vec_dot(t, GgmlType::Q8_0, dotprod::vec_dot_q8_0);
  set_vec_dot(t, GgmlType::Q4_K, dotprod::vec_dot_q4_k);
  set_vec_dot(t, GgmlType::Q5_K, dotprod::vec_dot_q5_k);
  set_vec_dot(t, GgmlType::Q6_K, dotprod::vec_dot_q6_k);
  return t;
}
#endif

}  // namespace

const KernelTable& kernel_table(Isa isa) {
  if (!isa_runnable(isa)) {
    throw std::invalid_argument(std::string("ISA '") + isa_name(isa) + "' cannot run on this CPU or build");
  }
  static const KernelTable scalar = scalar_table();
  switch (isa) {
#if defined(DUET_X86)
    case Isa::Avx2: {
      static const KernelTable table = avx2_table();
      return table;
    }
    case Isa::Avx512: {
      static const KernelTable table = avx512_table();
      return table;
    }
#endif
#if defined(DUET_AMX)
    case Isa::Amx: {
      static const KernelTable table = amx_table();
      return table;
    }
#endif
#if defined(DUET_ARM64)
    case Isa::Neon: {
      static const KernelTable table = neon_table();
      return table;
    }
    case Isa::Dotprod: {
      static const KernelTable table = dotprod_table();
      return table;
    }
#endif
    default: return scalar;
  }
}

}  // namespace duet
