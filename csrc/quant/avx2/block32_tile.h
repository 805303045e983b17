// Many any-order activation rows (a drafter's, ops/row_order.h) against the
// 32-element formats (Q4_0, Q5_0, Q8_0) on AVX2: eight weight rows at a time, one
// 32-bit lane per weight row, in the AVX-512 tile's block order
// (avx512/block32_tile.h): each block's whole integer dot product, converted and
// scaled once, into one accumulator per weight row. Its float steps are that
// tile's, so both paths give such rows the same bits. Without it these rows took
// vec_dot four at a time, one conversion and multiply-add per row for every 32
// products.
#pragma once
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "quant/avx2/block32_unpack.h"
#include "quant/avx2/kquant_tile.h"

// Everything here has internal linkage: this header is compiled into files built
// with different ISA flags, and the linker must not pick one file's copy for all.
namespace duet::avx2 {
namespace {

// A block of eight weight rows, unpacked: the signed weights (q - offset, as vec_dot
// unpacks them), transposed so that lane w is row w.
template <typename Block>
struct Block32Tile8 {
  static constexpr int kChunk = 16;  // blocks unpacked at a time: 8 KB of L1
  // Q4_0's and Q5_0's products, at most 16 * 127 in magnitude, sum in 16 bits over a
  // whole block (2 * 8 * 16 * 127 < 2^15); Q8_0's (up to 128 * 127) over one group.
  static constexpr bool kBlockIn16Bits = !std::is_same_v<Block, BlockQ8_0>;
  __m256i q[8];      // [group g]: elements 4g..4g+3, signed
  __m256i q_abs[8];  // their magnitudes, maddubs's unsigned side (the signs go onto the activations)
  __m256 d;

  template <__m256i (*unpack)(const Block&)>
  void unpack_rows(const uint8_t* block0, size_t stride) {
    __m256i rows[8];
    alignas(32) float scales[8];
    for (int w = 0; w < 8; ++w) {
      const Block& block = *reinterpret_cast<const Block*>(block0 + w * stride);
      rows[w] = unpack(block);
      scales[w] = f16_load(block.d);
    }
    lanes_transpose<Lanes8>(rows, q);
    for (int g = 0; g < 8; ++g) q_abs[g] = _mm256_sign_epi8(q[g], q[g]);
    d = _mm256_load_ps(scales);
  }

  // The block's exact integer dot product with one activation block, per weight row.
  __m256i dot(const ActQ8_32& a) const {
    const __m256i ones = _mm256_set1_epi16(1);
    auto products = [&](int g) {
      const __m256i group = _mm256_set1_epi32(load_i32(a.qs + 4 * g));
      return _mm256_maddubs_epi16(q_abs[g], _mm256_sign_epi8(group, q[g]));
    };
    if constexpr (kBlockIn16Bits) {
      __m256i sum16 = products(0);
      for (int g = 1; g < 8; ++g) sum16 = _mm256_add_epi16(sum16, products(g));
      return _mm256_madd_epi16(sum16, ones);
    } else {
      __m256i sum = _mm256_madd_epi16(products(0), ones);
      for (int g = 1; g < 8; ++g) sum = _mm256_add_epi32(sum, _mm256_madd_epi16(products(g), ones));
      return sum;
    }
  }
};

// tiles[j] against block j of R activation rows, into one accumulator per row: the
// AVX-512 BlockOrder's float steps.
template <typename Tile, int R>
void block_order_rows(const Tile* tiles, int n_tiles, const ActQ8_32* const a[R], __m256 acc[R]) {
  for (int j = 0; j < n_tiles; ++j) {
    for (int r = 0; r < R; ++r) {
      const __m256 scale = _mm256_mul_ps(tiles[j].d, _mm256_set1_ps(a[r][j].d));
      acc[r] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(tiles[j].dot(a[r][j])), acc[r]);
    }
  }
}

// A TypeKernels any-order tile (avx2::tile_run's contract) over eight weight rows, a
// chunk of blocks unpacked at a time and then met by every activation row, four
// rows at a time.
template <typename Block, __m256i (*unpack)(const Block&)>
void block32_any_order_run(int64_t n, const void* w_rows, size_t w_stride, const void* act, size_t act_stride,
                           int n_act, float* y, int64_t ldy) {
  using Tile = Block32Tile8<Block>;
  constexpr int kChunk = Tile::kChunk, kRows = 4;
  const uint8_t* w = static_cast<const uint8_t*>(w_rows);
  const uint8_t* rows = static_cast<const uint8_t*>(act);
  const int64_t n_blocks = n / QK32;
  Tile tiles[kChunk];
  __m256 acc[kMaxTileAct];
  for (int i = 0; i < n_act; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t b0 = 0; b0 < n_blocks; b0 += kChunk) {
    const int n_tiles = static_cast<int>(n_blocks - b0 < kChunk ? n_blocks - b0 : kChunk);
    for (int j = 0; j < n_tiles; ++j) {
      tile_blocks_prefetch<Lanes8, Block>(w, w_stride, b0 + j, n_blocks, kChunk);
      tiles[j].template unpack_rows<unpack>(w + (b0 + j) * sizeof(Block), w_stride);
    }
    const ActQ8_32* a[kMaxTileAct];
    for (int i = 0; i < n_act; ++i) a[i] = reinterpret_cast<const ActQ8_32*>(rows + i * act_stride) + b0;
    int i = 0;
    for (; i + kRows <= n_act; i += kRows) block_order_rows<Tile, kRows>(tiles, n_tiles, a + i, acc + i);
    for (; i < n_act; ++i) block_order_rows<Tile, 1>(tiles, n_tiles, a + i, acc + i);
  }
  for (int i = 0; i < n_act; ++i) _mm256_storeu_ps(y + i * ldy, acc[i]);
}

}  // namespace
}  // namespace duet::avx2
