// K-quant prompt rows on AMX: the VNNI prompt tile's block (avx2/kquant_tile.h)
// unpacks into B tiles with the sub-block scales folded in, 16 activation rows at
// a time are an A tile, and each block's exact integer sum
// comes out of the C tiles into the prompt order's float steps, as from the VNNI
// tile, so that every result keeps vec_dot_prompt's bits.
#include <immintrin.h>

#include "quant/amx/amx_kernels.h"
#include "quant/avx512/avx512_kernels.h"
#include "quant/avx512/vnni_dot.h"

namespace duet::amx {

namespace {

using L = avx512::Lanes16;
using I = __m512i;
using State = avx2::PromptState<L>;

constexpr int kTileAct = 16;     // activation rows per A and C tile
constexpr int kChunkBytes = 64;  // elements of a block per tile multiply
constexpr int kChunks = QK_K / kChunkBytes;

// Tile registers (the intrinsics take them as literals): 0 and 1 activations (16
// rows x 64 int8), 2 and 3 weights (16 rows of 4 elements x 16 weight rows; hi int8,
// lo int8 or uint8 as Digits::kLoUnsigned says), 4 to 7 int32 sums (16 activation
// rows x 16 weight rows).
struct alignas(64) TileConfig {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

void tiles_configure() {
  TileConfig c{};
  c.palette = 1;
  for (int t = 0; t < 8; ++t) c.rows[t] = 16, c.colsb[t] = 64;
  _tile_loadconfig(&c);
}

// A block's weights times their sub-block scales, w = q * scale, as two byte digits,
// w = 2^kShift * hi + lo: the C tiles then hold S = 2^kShift * C_hi + C_lo, exact,
// with no step per sub-block. Row r of chunk k, elements 64k + 4r .. 64k + 4r + 3 of
// every weight row, is the unpacked tile's q[16k + r] counted flat, in both formats.
struct BlockTiles {
  I hi[kChunks][16], lo[kChunks][16];
};

// Q4_K: the 6-bit scale split, s = 8 (s >> 3) + (s & 7), each part times a nibble at
// most 105; two nibbles to a 16-bit lane, each product under 2^8, so one multiply
// scales both.
struct Q4KDigits {
  using Tile = avx2::Q4KTile<L>;
  static constexpr int kShift = 3;
  static constexpr bool kLoUnsigned = false;
  static void fold(const Tile& t, int j, int g, I q, BlockTiles& b) {
    const int i = 8 * j + g;
    b.hi[i / 16][i % 16] = _mm512_mullo_epi16(q, _mm512_srli_epi16(t.scale[j], 3));
    b.lo[i / 16][i % 16] = _mm512_mullo_epi16(q, _mm512_and_si512(t.scale[j], _mm512_set1_epi16(7)));
  }
};

// Q6_K: w = (q - 32) * scale in [-4064, 4096] is a 16-bit product whose two bytes
// are the digits, w = 256 hi + lo: hi in [-16, 16], lo in [0, 255], which the lo
// tiles multiply as unsigned. maddubs gives the even and the odd elements' q * scale
// in 16-bit lanes (q at most 63, so no saturation), 32 * scale off each.
struct Q6KDigits {
  using Tile = avx2::Q6KTile<L>;
  static constexpr int kShift = 8;
  static constexpr bool kLoUnsigned = true;
  static void fold(const Tile& t, int j, int g, I q, BlockTiles& b) {
    constexpr int kSelect = 0xca;  // ternary logic: a ? b : c, bit by bit
    const I high_byte = _mm512_set1_epi16(int16_t(0xff00));
    const I scale = t.scale[j], offset = _mm512_slli_epi16(scale, 5);
    const I even = _mm512_sub_epi16(_mm512_maddubs_epi16(q, _mm512_andnot_si512(high_byte, scale)), offset);
    const I odd = _mm512_sub_epi16(_mm512_maddubs_epi16(q, _mm512_slli_epi16(scale, 8)), offset);
    const int i = 4 * j + g;
    b.lo[i / 16][i % 16] = _mm512_ternarylogic_epi32(high_byte, _mm512_slli_epi16(odd, 8), even, kSelect);
    b.hi[i / 16][i % 16] = _mm512_ternarylogic_epi32(high_byte, odd, _mm512_srli_epi16(even, 8), kSelect);
  }
};

// A format's tile whose block also unpacks into B tiles, folding each weight vector
// as it comes, without a pass over the unpacked block. kKeepQ: the unpacked block is
// kept too, for the rows past the last 16 (the VNNI tile's steps read it).
template <typename D, bool kKeepQ>
struct AmxTile : D::Tile {
  using Digits = D;
  BlockTiles b;
  void unpack(const uint8_t* block0, size_t stride) {
    D::Tile::unpack(block0, stride, [this](int j, int g, I q) {
      if (kKeepQ) this->q[j][g] = q;
      D::fold(*this, j, g, q, b);
    });
  }
};

// C tiles 4 to 7 as stored: int32 sums [tile][activation row][weight row].
using CTiles = int32_t[4][kTileAct][16];

// st[m] += the block's contribution for 16 activation rows whose S is 2^kShift hi + lo,
// hi and lo as their C tiles hold them.
template <typename Digits>
void rows_add(const typename Digits::Tile& t, const int32_t (*hi)[16], const int32_t (*lo)[16],
              const ActQ8_256* const a[], State st[]) {
  for (int m = 0; m < kTileAct; ++m) {
    const I h = _mm512_load_si512(hi[m]), l = _mm512_load_si512(lo[m]);
    t.prompt_add(_mm512_add_epi32(_mm512_slli_epi32(h, Digits::kShift), l), *a[m], st[m]);
  }
}

void c_tiles_zero() {
  _tile_zero(4);
  _tile_zero(5);
  _tile_zero(6);
  _tile_zero(7);
}

void c_tiles_store(CTiles& c) {
  _tile_stored(4, c[0], 64);
  _tile_stored(5, c[1], 64);
  _tile_stored(6, c[2], 64);
  _tile_stored(7, c[3], 64);
}

// C tile c += A tile a times the lo B tile b, whose bytes are signed or unsigned as
// the enclosing function's Digits says. A macro: the tile intrinsics paste their
// registers into asm as literals, so a template parameter cannot name one.
#define DUET_TILE_LO_MULTIPLY(c, a, b) \
  if constexpr (Digits::kLoUnsigned) {  \
    _tile_dpbsud(c, a, b);              \
  } else {                              \
    _tile_dpbssd(c, a, b);              \
  }

// A tile multiply waits for the one before it into the same C tile. For 32
// activation rows, two activation tiles times (hi, lo), sharing each chunk's B
// tiles, keep four C tiles in flight; 16 rows keep two, (hi, lo) over all the
// chunks: splitting them into even and odd chunks, four C tiles added after,
// measured 5% slower (Q4_K) for the extra stores and loads of the C tiles.
template <typename Tile>
void block_rows32(const Tile& t, const ActQ8_256* const a[], size_t act_stride, State st[]) {
  using Digits = typename Tile::Digits;
  const BlockTiles& b = t.b;
  alignas(64) CTiles c;
  c_tiles_zero();
  for (int k = 0; k < kChunks; ++k) {
    _tile_loadd(2, b.hi[k], 64);
    _tile_loadd(3, b.lo[k], 64);
    _tile_loadd(0, a[0]->qs + kChunkBytes * k, act_stride);
    _tile_loadd(1, a[kTileAct]->qs + kChunkBytes * k, act_stride);
    _tile_dpbssd(4, 0, 2);
    DUET_TILE_LO_MULTIPLY(5, 0, 3)
    _tile_dpbssd(6, 1, 2);
    DUET_TILE_LO_MULTIPLY(7, 1, 3)
  }
  c_tiles_store(c);
  rows_add<Digits>(t, c[0], c[1], a, st);
  rows_add<Digits>(t, c[2], c[3], a + kTileAct, st + kTileAct);
}

template <typename Tile>
void block_rows16(const Tile& t, const ActQ8_256* const a[], size_t act_stride, State st[]) {
  using Digits = typename Tile::Digits;
  const BlockTiles& b = t.b;
  alignas(64) int32_t c[2][kTileAct][16];  // C tiles 4 and 5 as stored
  _tile_zero(4);
  _tile_zero(5);
  for (int k = 0; k < kChunks; ++k) {
    _tile_loadd(2, b.hi[k], 64);
    _tile_loadd(3, b.lo[k], 64);
    _tile_loadd(0, a[0]->qs + kChunkBytes * k, act_stride);
    _tile_dpbssd(4, 0, 2);
    DUET_TILE_LO_MULTIPLY(5, 0, 3)
  }
  _tile_stored(4, c[0], 64);
  _tile_stored(5, c[1], 64);
  rows_add<Digits>(t, c[0], c[1], a, st);
}

// TypeKernels::prompt_tile for n_act >= 16: tile_run's unpacked blocks,
// each block's weights in B tiles for whole tiles of 16 activation rows; the rows
// past the last 16 take the VNNI tile's steps on the same unpacked block.
template <typename Digits, bool kKeepQ>
void prompt_tile(int64_t n, const void* w, size_t w_stride, const void* act, size_t act_stride, int n_act, float* y,
                 int64_t ldy) {
  using Tile = AmxTile<Digits, kKeepQ>;
  tiles_configure();
  avx2::tile_run<Tile, avx2::PromptState>(
      n, w, w_stride, act, act_stride, n_act, y, ldy,
      [&](const Tile& t, const ActQ8_256* const a[], int count, State st[]) {
        const int n_amx = count / kTileAct * kTileAct;
        int m0 = 0;
        for (; m0 + 2 * kTileAct <= n_amx; m0 += 2 * kTileAct) block_rows32(t, a + m0, act_stride, st + m0);
        if (m0 < n_amx) block_rows16(t, a + m0, act_stride, st + m0);
        avx2::TileRowsEach()(t, a + n_amx, count - n_amx, st + n_amx);
      });
  _tile_release();
}

template <typename Digits>
void prompt_tile_rows(int64_t n, const void* w, size_t w_stride, const void* act, size_t act_stride, int n_act,
                      float* y, int64_t ldy) {
  if (n_act % kTileAct == 0) return prompt_tile<Digits, false>(n, w, w_stride, act, act_stride, n_act, y, ldy);
  prompt_tile<Digits, true>(n, w, w_stride, act, act_stride, n_act, y, ldy);
}

}  // namespace

// Fewer than 16 rows take the VNNI tile alone.
void prompt_tile_q4_k(int64_t n, const void* w, size_t w_stride, const void* act, size_t act_stride, int n_act,
                      float* y, int64_t ldy) {
  if (n_act < kTileAct) return avx512::prompt_tile_q4_k(n, w, w_stride, act, act_stride, n_act, y, ldy);
  prompt_tile_rows<Q4KDigits>(n, w, w_stride, act, act_stride, n_act, y, ldy);
}

void prompt_tile_q6_k(int64_t n, const void* w, size_t w_stride, const void* act, size_t act_stride, int n_act,
                      float* y, int64_t ldy) {
  if (n_act < kTileAct) return avx512::prompt_tile_q6_k(n, w, w_stride, act, act_stride, n_act, y, ldy);
  prompt_tile_rows<Q6KDigits>(n, w, w_stride, act, act_stride, n_act, y, ldy);
}

#undef DUET_TILE_LO_MULTIPLY

}  // namespace duet::amx
