// Many activation rows against the 32-element formats (Q4_0, Q5_0, Q8_0), sixteen
// weight rows at a time with one 32-bit lane per weight row, a chunk of blocks at a
// time (block32_tile_run), in one of two orders:
// - vec_dot's, the one order llama.cpp has for every row of these formats: its float
//   lane g holds each block's products of elements 4g..4g+3. The tile keeps those
//   eight lanes as eight accumulators per weight row and sums them at the end as
//   hsum_f32x8 does, so every result has vec_dot's bits.
// - the block order, for any-order rows (a drafter's): each block's whole integer
//   dot product, converted and scaled once, into one accumulator per weight row.
//   A block then costs a row one conversion and one multiply-add, not eight.
#pragma once
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "quant/avx2/kquant_tile.h"
#include "quant/avx512/vnni_dot.h"

// Everything here has internal linkage: this header is compiled into files built
// with different ISA flags, and the linker must not pick one file's copy for all.
namespace duet::avx512 {
namespace {

// A format's weights of block b, for 16 rows: q[g] = elements 4g..4g+3 as signed
// bytes, lane w = row w (block0: row 0's block; row w's at block0 + offsets[w]).
struct Q8_0Lanes {
  using Block = BlockQ8_0;
  static void unpack(const uint8_t* block0, __m512i offsets, __m512i q[8]) {
    for (int g = 0; g < 8; ++g) q[g] = Lanes16::gather(offsets, block0 + offsetof(BlockQ8_0, qs) + 4 * g);
  }
};

// Elements 0-15 are the low nibbles of qs, 16-31 the high ones.
inline __m512i nibbles_group(const uint8_t* qs0, __m512i offsets, int g) {
  const __m512i bytes = Lanes16::gather(offsets, qs0 + 4 * (g % 4));
  return _mm512_and_si512(g < 4 ? bytes : _mm512_srli_epi32(bytes, 4), _mm512_set1_epi8(0x0f));
}

struct Q4_0Lanes {
  using Block = BlockQ4_0;
  static void unpack(const uint8_t* block0, __m512i offsets, __m512i q[8]) {
    for (int g = 0; g < 8; ++g) {
      q[g] = _mm512_sub_epi8(nibbles_group(block0 + offsetof(BlockQ4_0, qs), offsets, g), _mm512_set1_epi8(8));
    }
  }
};

// Bit j of qh is element j's fifth bit.
struct Q5_0Lanes {
  using Block = BlockQ5_0;
  static void unpack(const uint8_t* block0, __m512i offsets, __m512i q[8]) {
    const __m512i qh = Lanes16::gather(offsets, block0 + offsetof(BlockQ5_0, qh));
    for (int g = 0; g < 8; ++g) {
      // Byte g / 2 of qh in all four bytes of the lane; byte k then tests bit 4g + k.
      const int8_t spread[4] = {static_cast<int8_t>(g / 2), static_cast<int8_t>(g / 2), static_cast<int8_t>(g / 2),
                                static_cast<int8_t>(g / 2)};
      const __m512i bits = _mm512_set1_epi32(g % 2 == 0 ? 0x08040201 : static_cast<int>(0x80402010));
      const __mmask64 fifth = _mm512_test_epi8_mask(Lanes16::shuffle(qh, Lanes16::control(spread)), bits);
      const __m512i nibble = nibbles_group(block0 + offsetof(BlockQ5_0, qs), offsets, g);
      q[g] = _mm512_sub_epi8(_mm512_mask_add_epi8(nibble, fifth, nibble, _mm512_set1_epi8(16)), _mm512_set1_epi8(16));
    }
  }
};

// A block of 16 weight rows of a 32-element format, unpacked (one block of
// block32_tile_run's chunk). vpdpbusd multiplies unsigned by signed bytes: the
// activations go in offset by 128 (a ^ 0x80 as a byte is a + 128), and each group's
// sum starts from -128 * sum(q), so that the int32 result is the signed dot
// product, exactly.
template <typename Format>
struct Block32Tile {
  using Block = typename Format::Block;
  static constexpr int kChunk = 16;  // blocks unpacked at a time (block32_tile_run): 17 KB of L1
  __m512i q[8];      // [group g]: elements 4g..4g+3, signed
  __m512i start[8];  // [group g]: -128 * the sum of q[g]'s four weights
  __m512i start_all;  // the sum of start[0..8): the whole block's, for the block order
  __m512 d;

  void unpack(const uint8_t* block0, size_t stride) {
    const __m512i offsets = Lanes16::offsets(stride);
    Format::unpack(block0, offsets, q);
    const __m512i offset128 = _mm512_set1_epi8(static_cast<char>(0x80));
    for (int g = 0; g < 8; ++g) {
      start[g] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), offset128, q[g]));
    }
    start_all = start[0];
    for (int g = 1; g < 8; ++g) start_all = _mm512_add_epi32(start_all, start[g]);
    d = Lanes16::f16_half(Lanes16::gather(offsets, block0), false);
  }
};

// vec_dot's order: float lane g takes each block's products of elements 4g..4g+3.
// tiles[j] meets block j of each row a[r]; the R rows' eight lanes stay in
// registers across the tiles (R = 2: sixteen of the 32 vector registers).
struct VecDotOrder {
  using State = avx2::EightLaneState<Lanes16>;
  static constexpr int kRows = 2;
  static void clear(State& st) { st.clear(); }
  static __m512 total(const State& st) { return st.total(); }

  template <typename Tile, int R>
  static void rows(const Tile* tiles, int n_tiles, const ActQ8_32* const a[R], State st[R]) {
    __m512 acc[R][8];
    for (int r = 0; r < R; ++r) {
      for (int g = 0; g < 8; ++g) acc[r][g] = st[r].acc[g];
    }
    for (int j = 0; j < n_tiles; ++j) {
      const Tile& t = tiles[j];
      __m512 scale[R];
      for (int r = 0; r < R; ++r) scale[r] = _mm512_mul_ps(t.d, _mm512_set1_ps(a[r][j].d));
      for (int g = 0; g < 8; ++g) {
        for (int r = 0; r < R; ++r) {
          const __m512i shifted =
              _mm512_set1_epi32(avx2::load_i32(a[r][j].qs + 4 * g) ^ static_cast<int32_t>(0x80808080));
          const __m512 sum = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(t.start[g], shifted, t.q[g]));
          acc[r][g] = _mm512_fmadd_ps(scale[r], sum, acc[r][g]);
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      for (int g = 0; g < 8; ++g) st[r].acc[g] = acc[r][g];
    }
  }
};

// The block order: a block's groups summed as integers (exact), then one
// conversion and one multiply-add per row. The activations are moved up by 128
// once per row and block, into a buffer that each group's four bytes are broadcast
// from: a register broadcast of the moved scalar cost more than a group's dot
// product (Q5_0 4864x896, 138 rows: 4.9 ms in vec_dot's order, 3.4 with register
// broadcasts, 2.9 from the buffer; Zen 4, session 35).
struct BlockOrder {
  using State = __m512;
  static constexpr int kRows = 4;
  static void clear(State& st) { st = _mm512_setzero_ps(); }
  static __m512 total(const State& st) { return st; }

  template <typename Tile, int R>
  static void rows(const Tile* tiles, int n_tiles, const ActQ8_32* const a[R], State acc_io[R]) {
    alignas(32) int32_t moved[R][Tile::kChunk][8];  // [row][block][group]: the group's bytes + 128
    const __m256i offset128 = _mm256_set1_epi8(static_cast<char>(0x80));
    __m512 acc[R];
    for (int r = 0; r < R; ++r) {
      acc[r] = acc_io[r];
      for (int j = 0; j < n_tiles; ++j) {
        const __m256i qs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[r][j].qs));
        _mm256_store_si256(reinterpret_cast<__m256i*>(moved[r][j]), _mm256_xor_si256(qs, offset128));
      }
    }
    for (int j = 0; j < n_tiles; ++j) {
      const Tile& t = tiles[j];
      for (int r = 0; r < R; ++r) {
        // Two sums, so that the groups' multiply-adds are two chains, not one.
        __m512i even = t.start_all, odd = _mm512_setzero_si512();
        for (int g = 0; g < 8; g += 2) {
          even = _mm512_dpbusd_epi32(even, _mm512_set1_epi32(moved[r][j][g]), t.q[g]);
          odd = _mm512_dpbusd_epi32(odd, _mm512_set1_epi32(moved[r][j][g + 1]), t.q[g + 1]);
        }
        const __m512 scale = _mm512_mul_ps(t.d, _mm512_set1_ps(a[r][j].d));
        acc[r] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(_mm512_add_epi32(even, odd)), acc[r]);
      }
    }
    for (int r = 0; r < R; ++r) acc_io[r] = acc[r];
  }
};

// A TypeKernels tile of a 32-element format in Order (avx2::tile_run's contract), a chunk
// of blocks unpacked at a time so that each pair of activation rows keeps its
// sixteen accumulators in registers across the chunk. tile_run's one block at a
// time sent them through memory every block; with every row of the call under one
// unpacking (not passes of 16), 64 and 110 rows of a 4864x896 Q5_0 matrix took
// 0.72x the time (session 30).
template <typename Format, typename Order>
void block32_tile_run(int64_t n, const void* w_rows, size_t w_stride, const void* act, size_t act_stride, int n_act,
                      float* y, int64_t ldy) {
  using Tile = Block32Tile<Format>;
  constexpr int kChunk = Tile::kChunk;
  const uint8_t* w = static_cast<const uint8_t*>(w_rows);
  const uint8_t* rows = static_cast<const uint8_t*>(act);
  const int64_t n_blocks = n / QK32;
  Tile tiles[kChunk];
  typename Order::State st[kMaxTileAct];
  for (int i = 0; i < n_act; ++i) Order::clear(st[i]);
  // The first chunk's blocks at once, then each next chunk's while this one is
  // unpacked: a chunk is unpacked back to back, with no arithmetic between its
  // blocks to hide a prefetch two blocks ahead (16 rows of the 0.5B's Q8_0 head,
  // from memory, ran 13% slower so).
  for (int64_t j = 0; j < kChunk && j < n_blocks; ++j) {
    avx2::tile_blocks_prefetch<Lanes16, typename Tile::Block>(w, w_stride, j, n_blocks, 0);
  }
  for (int64_t b0 = 0; b0 < n_blocks; b0 += kChunk) {
    const int n_tiles = static_cast<int>(n_blocks - b0 < kChunk ? n_blocks - b0 : kChunk);
    for (int j = 0; j < n_tiles; ++j) {
      avx2::tile_blocks_prefetch<Lanes16, typename Tile::Block>(w, w_stride, b0 + j, n_blocks, kChunk);
      tiles[j].unpack(w + (b0 + j) * sizeof(typename Tile::Block), w_stride);
    }
    const ActQ8_32* a[kMaxTileAct];
    for (int i = 0; i < n_act; ++i) a[i] = reinterpret_cast<const ActQ8_32*>(rows + i * act_stride) + b0;
    int i = 0;
    for (; i + Order::kRows <= n_act; i += Order::kRows) {
      Order::template rows<Tile, Order::kRows>(tiles, n_tiles, a + i, st + i);
    }
    for (; i < n_act; ++i) Order::template rows<Tile, 1>(tiles, n_tiles, a + i, st + i);
  }
  for (int i = 0; i < n_act; ++i) Lanes16::store(y + i * ldy, Order::total(st[i]));
}

}  // namespace
}  // namespace duet::avx512
