// Many activation rows against Q4_K or Q6_K weights, a tile of weight rows at a
// time (8 with AVX2, 16 with AVX-512): one 32-bit lane per weight row. A tile's
// super-block is unpacked once with the weights of each weight row in its own lane
// (four elements to a lane, transposed across the rows), then each activation row
// broadcasts four of its bytes at a time against all of them. The integer sums come
// out per weight row with no horizontal sums, and are exact, so either of llama.cpp's
// float orders can follow lane by lane:
// - prompt rows (TypeKernels::prompt_tile): a sub-block's products stay in 16-bit lanes until its
//   scale is applied, then KQuantPromptRows's steps: vec_dot_prompt's bits;
// - decoded rows (TypeKernels::tile): each of vec_dot's eight int32 lanes (elements 4i..4i+3
//   of every chunk) is its own accumulator, then KQuantDecodeRows's / Q6KDecodeRows's
//   steps and their final sums: vec_dot's bits.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "quant/avx2/kquant_dot.h"

// Everything here has internal linkage: this header is compiled into files built
// with different ISA flags, and the linker must not pick one file's copy for all.
namespace duet::avx2 {
namespace {

// The vector operations the tile takes, for 8 lanes (AVX2). A wider set
// (avx512/vnni_dot.h) has the same members.
struct Lanes8 {
  static constexpr int kLanes = 8;
  using I = __m256i;
  using F = __m256;
  static I zero() { return _mm256_setzero_si256(); }
  static F zero_ps() { return _mm256_setzero_ps(); }
  static I set1(int32_t v) { return _mm256_set1_epi32(v); }
  static F set1_ps(float v) { return _mm256_set1_ps(v); }
  static I offsets(size_t stride) {
    const int s = static_cast<int>(stride);
    return _mm256_setr_epi32(0, s, 2 * s, 3 * s, 4 * s, 5 * s, 6 * s, 7 * s);
  }
  static I gather(I offsets, const uint8_t* base) {
    return _mm256_i32gather_epi32(reinterpret_cast<const int*>(base), offsets, 1);
  }
  static I loadu(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static I unpacklo32(I a, I b) { return _mm256_unpacklo_epi32(a, b); }
  static I unpackhi32(I a, I b) { return _mm256_unpackhi_epi32(a, b); }
  static I unpacklo64(I a, I b) { return _mm256_unpacklo_epi64(a, b); }
  static I unpackhi64(I a, I b) { return _mm256_unpackhi_epi64(a, b); }
  // out[l] = 128-bit lane l of in[0], then of in[1].
  static void lanes128_transpose(const I in[2], I out[2]) {
    out[0] = _mm256_permute2x128_si256(in[0], in[1], 0x20);
    out[1] = _mm256_permute2x128_si256(in[0], in[1], 0x31);
  }
  static I and_(I a, I b) { return _mm256_and_si256(a, b); }
  static I or_(I a, I b) { return _mm256_or_si256(a, b); }
  static I srli(I a, int n) { return _mm256_srli_epi32(a, n); }
  static I slli(I a, int n) { return _mm256_slli_epi32(a, n); }
  static I shuffle(I a, I control) { return _mm256_shuffle_epi8(a, control); }
  static I control(const int8_t dword_bytes[4]) {
    const int8_t* c = dword_bytes;
    auto at = [&](int lane, int k) { return static_cast<char>(c[k] < 0 ? -128 : 4 * lane + c[k]); };
    return _mm256_setr_epi8(at(0, 0), at(0, 1), at(0, 2), at(0, 3), at(1, 0), at(1, 1), at(1, 2), at(1, 3),
                            at(2, 0), at(2, 1), at(2, 2), at(2, 3), at(3, 0), at(3, 1), at(3, 2), at(3, 3),
                            at(0, 0), at(0, 1), at(0, 2), at(0, 3), at(1, 0), at(1, 1), at(1, 2), at(1, 3),
                            at(2, 0), at(2, 1), at(2, 2), at(2, 3), at(3, 0), at(3, 1), at(3, 2), at(3, 3));
  }
  static I maddubs(I u, I s) { return _mm256_maddubs_epi16(u, s); }
  static I add16(I a, I b) { return _mm256_add_epi16(a, b); }
  static I sub32(I a, I b) { return _mm256_sub_epi32(a, b); }
  static I srai16(I a, int n) { return _mm256_srai_epi16(a, n); }
  // acc + the 16-bit lanes of a times b summed in pairs.
  static I dot16(I acc, I a, I b) { return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)); }
  static F cvt(I a) { return _mm256_cvtepi32_ps(a); }
  // The f16 in the low (high = false) or high half of each lane.
  static F f16_half(I a, bool high) {
    const I halves = _mm256_shuffle_epi8(a, high ? _mm256_setr_epi8(2, 3, 6, 7, 10, 11, 14, 15, -1, -1, -1, -1, -1,
                                                                      -1, -1, -1, 2, 3, 6, 7, 10, 11, 14, 15, -1, -1,
                                                                      -1, -1, -1, -1, -1, -1)
                                                 : _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1,
                                                                    -1, -1, 0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1,
                                                                    -1, -1, -1, -1));
    return _mm256_cvtph_ps(_mm256_castsi256_si128(_mm256_permute4x64_epi64(halves, 0b1000)));
  }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F fnmadd(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); }
  static void store(float* y, F v) { _mm256_storeu_ps(y, v); }
};

inline int32_t load_i32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// out[k] = dword k of each of r[0..kLanes), lane w holding r[w]'s: a transpose of
// kLanes x kLanes dwords in registers (r is overwritten).
template <typename L>
void lanes_transpose(typename L::I r[L::kLanes], typename L::I out[L::kLanes]) {
  using I = typename L::I;
  constexpr int n = L::kLanes, n_quads = L::kLanes / 4;
  I t[n];
  for (int i = 0; i < n; i += 2) {
    t[i] = L::unpacklo32(r[i], r[i + 1]);
    t[i + 1] = L::unpackhi32(r[i], r[i + 1]);
  }
  // r[4i + e], 128-bit lane l: dword 4l + e of rows 4i .. 4i + 3.
  for (int i = 0; i < n; i += 4) {
    r[i] = L::unpacklo64(t[i], t[i + 2]);
    r[i + 1] = L::unpackhi64(t[i], t[i + 2]);
    r[i + 2] = L::unpacklo64(t[i + 1], t[i + 3]);
    r[i + 3] = L::unpackhi64(t[i + 1], t[i + 3]);
  }
  for (int e = 0; e < 4; ++e) {
    I quads[n_quads], words[n_quads];
    for (int i = 0; i < n_quads; ++i) quads[i] = r[4 * i + e];
    L::lanes128_transpose(quads, words);
    for (int l = 0; l < n_quads; ++l) out[4 * l + e] = words[l];
  }
}

// out[j] = dword j of n_words consecutive dwords of each of the tile's weight rows
// (row w's at row0 + w * stride), by loads and a transpose in registers: the tiles
// ran 3-5% faster than with a gather per dword (the scales, a few words, are still
// gathered).
template <typename L, int n_words>
void row_words_load(const uint8_t* row0, size_t stride, typename L::I out[n_words]) {
  static_assert(n_words % L::kLanes == 0);
  for (int j = 0; j < n_words; j += L::kLanes) {
    typename L::I r[L::kLanes];
    for (int i = 0; i < L::kLanes; ++i) r[i] = L::loadu(row0 + 4 * j + i * stride);
    lanes_transpose<L>(r, out + j);
  }
}

// The 16-bit lanes of each 32-bit lane from bytes (lo, hi) of that lane,
// zero-extended, or sign-extended when is_signed.
template <typename L>
typename L::I bytes_to_16_pair(typename L::I v, int lo, int hi, bool is_signed = false) {
  if (!is_signed) {
    const int8_t c[4] = {static_cast<int8_t>(lo), -1, static_cast<int8_t>(hi), -1};
    return L::shuffle(v, L::control(c));
  }
  const int8_t c[4] = {-1, static_cast<int8_t>(lo), -1, static_cast<int8_t>(hi)};
  return L::srai16(L::shuffle(v, L::control(c)), 8);
}

// The float state of a row in a tile, one vector over the tile's weight rows per
// float lane of the row kernel's order.
//
// Prompt order (KQuantPromptRows, Q6KPromptRows): one float per row.
template <typename L>
struct PromptState {
  typename L::F acc;
  void clear() { acc = L::zero_ps(); }
  typename L::F total() const { return acc; }
};

// hsum_f32x8 of eight float lanes held as eight vectors, lane by lane: ((l0 + l4) +
// (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
template <typename L>
typename L::F lanes_hsum8(const typename L::F l[8]) {
  return L::add(L::add(L::add(l[0], l[4]), L::add(l[2], l[6])), L::add(L::add(l[1], l[5]), L::add(l[3], l[7])));
}

// vec_dot's order with eight float lanes summed at the end (Q6KDecodeRows, and the
// 32-element formats' block32_dot_rows).
template <typename L>
struct EightLaneState {
  typename L::F acc[8];
  void clear() {
    for (auto& v : acc) v = L::zero_ps();
  }
  typename L::F total() const { return lanes_hsum8<L>(acc); }
};

// vec_dot's order for Q4_K (KQuantDecodeRows): eight float lanes of scale sums and
// four of mins sums.
template <typename L>
struct Q4KDecodeState {
  typename L::F scaled[8], mins[4];
  void clear() {
    for (auto& v : scaled) v = L::zero_ps();
    for (auto& v : mins) v = L::zero_ps();
  }
  // hsum_f32x8(scaled) + hsum_f32x4(mins), lane by lane.
  typename L::F total() const {
    return L::add(lanes_hsum8<L>(scaled), L::add(L::add(mins[0], mins[2]), L::add(mins[1], mins[3])));
  }
};

// One super-block of a Q4_K tile, unpacked: lane w is weight row w.
template <typename L>
struct Q4KTile {
  using Lanes = L;
  using Block = BlockQ4_K;
  using Act = ActQ8_256;
  static constexpr int kBlockElems = QK_K;
  using I = typename L::I;
  using F = typename L::F;
  I q[8][8];   // [sub-block][group g]: elements 4g..4g+3 of the sub-block, unsigned
  I scale[8];  // [sub-block]: the 6-bit scale in both 16-bit halves
  I mins[4];   // [sub-block pair p]: min 2p in the low 16 bits, min 2p+1 in the high
  F d, dmin;

  // block0: row 0's block; lane w's is at block0 + w * stride. The scales are
  // kquant_scales_unpack's words, computed in every lane.
  void unpack(const uint8_t* block0, size_t stride) {
    unpack(block0, stride, [this](int j, int g, I v) { q[j][g] = v; });
  }

  // As unpack, with q[j][g]'s vector given to q_sink(j, g, v) instead, once the
  // scales are in place (the AMX tiles fold them in on the way).
  template <typename QSink>
  void unpack(const uint8_t* block0, size_t stride, QSink&& q_sink) {
    const I offsets = L::offsets(stride);
    auto word = [&](size_t byte) { return L::gather(offsets, block0 + byte); };
    const I factors = word(0);
    d = L::f16_half(factors, false);
    dmin = L::f16_half(factors, true);
    const I w0 = word(4), w1 = word(8), w2 = word(12);
    const I low6 = L::set1(0x3f3f3f3f), low4 = L::set1(0x0f0f0f0f), low2 = L::set1(0x03030303);
    const I scales_lo = L::and_(w0, low6);
    const I scales_hi = L::or_(L::and_(w2, low4), L::slli(L::and_(L::srli(w0, 6), low2), 4));
    const I mins_lo = L::and_(w1, low6);
    const I mins_hi = L::or_(L::and_(L::srli(w2, 4), low4), L::slli(L::and_(L::srli(w1, 6), low2), 4));
    for (int k = 0; k < 4; ++k) {
      scale[k] = bytes_to_16_pair<L>(scales_lo, k, k);
      scale[4 + k] = bytes_to_16_pair<L>(scales_hi, k, k);
    }
    for (int p = 0; p < 2; ++p) {
      mins[p] = bytes_to_16_pair<L>(mins_lo, 2 * p, 2 * p + 1);
      mins[2 + p] = bytes_to_16_pair<L>(mins_hi, 2 * p, 2 * p + 1);
    }
    // 32-byte chunk c holds sub-block 2c in its low nibbles and 2c+1 in its high.
    I qs[32];
    row_words_load<L, 32>(block0 + offsetof(BlockQ4_K, qs), stride, qs);
    for (int c = 0; c < 4; ++c) {
      for (int g = 0; g < 8; ++g) {
        const I bytes = qs[8 * c + g];
        q_sink(2 * c, g, L::and_(bytes, low4));
        q_sink(2 * c + 1, g, L::and_(L::srli(bytes, 4), low4));
      }
    }
  }

  // Prompt order: st[r] += this block's contribution for R activation rows: the
  // integer totals S1 = sum_j scale_j * q_j . a_j and S2 = sum_j min_j * bsum_j,
  // then d * S1 - dmin * S2 in one rounding and one FMA with the row's scale. A
  // sub-block's products stay in 16 bits: eight maddubs of at most 2 * 15 * 128
  // sum to 30720, below 2^15.
  template <int R>
  void rows(const ActQ8_256* const a[R], PromptState<L> st[R]) const {
    I s1[R];
    for (int r = 0; r < R; ++r) s1[r] = L::zero();
#pragma GCC unroll 1
    for (int j = 0; j < 8; ++j) {
      I p[R];
      for (int r = 0; r < R; ++r) p[r] = L::zero();
      for (int g = 0; g < 8; ++g) {
        for (int r = 0; r < R; ++r) {
          p[r] = L::add16(p[r], L::maddubs(q[j][g], L::set1(load_i32(a[r]->qs + 32 * j + 4 * g))));
        }
      }
      for (int r = 0; r < R; ++r) s1[r] = L::dot16(s1[r], p[r], scale[j]);
    }
    for (int r = 0; r < R; ++r) prompt_add(s1[r], *a[r], st[r]);
  }

  // The prompt order's float steps for one activation row, given S1.
  void prompt_add(I s1, const ActQ8_256& a, PromptState<L>& st) const {
    alignas(16) int16_t pair_sums[8];
    _mm_store_si128(reinterpret_cast<__m128i*>(pair_sums), act_pair_sums(a));
    I s2 = L::zero();
    for (int p = 0; p < 4; ++p) s2 = L::dot16(s2, mins[p], L::set1(load_i32(pair_sums + 2 * p)));
    const F block = L::fnmadd(dmin, L::cvt(s2), L::mul(d, L::cvt(s1)));
    st.acc = L::fmadd(block, L::set1_ps(a.d), st.acc);
  }

  // Decode order: vec_dot's int32 lane g (elements 4g..4g+3 of every sub-block) is
  // an accumulator of its own.
  template <int R>
  void rows(const ActQ8_256* const a[R], Q4KDecodeState<L> st[R]) const {
    for (int r = 0; r < R; ++r) {
      I sums[8];
      for (int g = 0; g < 8; ++g) sums[g] = L::zero();
#pragma GCC unroll 1
      for (int j = 0; j < 8; ++j) {
        for (int g = 0; g < 8; ++g) {
          sums[g] = L::dot16(sums[g], L::maddubs(q[j][g], L::set1(load_i32(a[r]->qs + 32 * j + 4 * g))), scale[j]);
        }
      }
      const F d_ad = L::mul(d, L::set1_ps(a[r]->d));
      const F neg_dmin_ad = L::mul(dmin, L::set1_ps(-a[r]->d));
      for (int g = 0; g < 8; ++g) st[r].scaled[g] = L::fmadd(d_ad, L::cvt(sums[g]), st[r].scaled[g]);
      alignas(16) int16_t pair_sums[8];
      _mm_store_si128(reinterpret_cast<__m128i*>(pair_sums), act_pair_sums(*a[r]));
      for (int p = 0; p < 4; ++p) {
        const I m = L::dot16(L::zero(), mins[p], L::set1(load_i32(pair_sums + 2 * p)));
        st[r].mins[p] = L::fmadd(neg_dmin_ad, L::cvt(m), st[r].mins[p]);
      }
    }
  }
};

// One super-block of a Q6_K tile, unpacked: lane w is weight row w.
template <typename L>
struct Q6KTile {
  using Lanes = L;
  using Block = BlockQ6_K;
  using Act = ActQ8_256;
  static constexpr int kBlockElems = QK_K;
  using I = typename L::I;
  using F = typename L::F;
  I q[16][4];    // [sub-block][group g]: elements 4g..4g+3 of the 16, unsigned 6-bit (q + 32)
  I scale[16];   // [sub-block]: the signed scale in both 16-bit halves
  I scales2[8];  // [sub-block pair p]: scale 2p in the low 16 bits, 2p+1 in the high
  F d;

  void unpack(const uint8_t* block0, size_t stride) {
    unpack(block0, stride, [this](int j, int g, I v) { q[j][g] = v; });
  }

  // As Q4KTile's.
  template <typename QSink>
  void unpack(const uint8_t* block0, size_t stride, QSink&& q_sink) {
    const I offsets = L::offsets(stride);
    auto word = [&](size_t byte) { return L::gather(offsets, block0 + byte); };
    // d is the block's last two bytes: read with the two scales before them, so
    // that the last row's last block is not read past its end.
    d = L::f16_half(word(offsetof(BlockQ6_K, d) - 2), true);
    for (int k = 0; k < 4; ++k) {
      const I four = word(offsetof(BlockQ6_K, scales) + 4 * k);
      for (int i = 0; i < 4; ++i) scale[4 * k + i] = bytes_to_16_pair<L>(four, i, i, true);
      for (int i = 0; i < 2; ++i) scales2[2 * k + i] = bytes_to_16_pair<L>(four, 2 * i, 2 * i + 1, true);
    }
    // Half h (128 elements) takes ql[64h..64h+63] and qh[32h..32h+31]; its chunk k
    // (32 elements) is the low (k < 2) or high nibbles of ql[64h + 32(k % 2) + l]
    // with bits 2k, 2k+1 of qh[32h + l] on top (ggml's Q6_K layout).
    const I low4 = L::set1(0x0f0f0f0f), low2 = L::set1(0x03030303);
    I ql[32], qh[16];
    row_words_load<L, 32>(block0 + offsetof(BlockQ6_K, ql), stride, ql);
    row_words_load<L, 16>(block0 + offsetof(BlockQ6_K, qh), stride, qh);
    for (int h = 0; h < 2; ++h) {
      for (int g = 0; g < 8; ++g) {
        const I high = qh[8 * h + g];
        const I low[2] = {ql[16 * h + g], ql[16 * h + 8 + g]};
        for (int k = 0; k < 4; ++k) {
          const I nibble = L::and_(k < 2 ? low[k] : L::srli(low[k % 2], 4), low4);
          const I top = L::slli(L::and_(L::srli(high, 2 * k), low2), 4);
          q_sink(8 * h + 2 * k + g / 4, g % 4, L::or_(nibble, top));
        }
      }
    }
  }

  // Prompt order: st[r] += d * S * ad for R activation rows, S = sum_j scale_j *
  // (q_j - 32) . a_j exactly: the unsigned products less 32 * sum_j scale_j *
  // bsum_j. Two maddubs of at most 2 * 63 * 128 sum to 32256, below 2^15.
  template <int R>
  void rows(const ActQ8_256* const a[R], PromptState<L> st[R]) const {
    I s[R];
    for (int r = 0; r < R; ++r) s[r] = L::zero();
#pragma GCC unroll 1
    for (int j = 0; j < 16; ++j) {
      for (int half = 0; half < 2; ++half) {
        for (int r = 0; r < R; ++r) {
          const int8_t* x = a[r]->qs + 16 * j + 8 * half;
          const I p = L::add16(L::maddubs(q[j][2 * half], L::set1(load_i32(x))),
                               L::maddubs(q[j][2 * half + 1], L::set1(load_i32(x + 4))));
          s[r] = L::dot16(s[r], p, scale[j]);
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      I offset = L::zero();
      for (int p = 0; p < 8; ++p) offset = L::dot16(offset, scales2[p], L::set1(load_i32(a[r]->bsums + 2 * p)));
      prompt_add(L::sub32(s[r], L::slli(offset, 5)), *a[r], st[r]);
    }
  }

  // The prompt order's float steps for one activation row, given S.
  void prompt_add(I s, const ActQ8_256& a, PromptState<L>& st) const {
    st.acc = L::fmadd(L::mul(d, L::cvt(s)), L::set1_ps(a.d), st.acc);
  }

  // Decode order: float lane i of vec_dot takes, from each 32-element chunk c,
  // elements 4i..4i+3: sub-block 2c + i / 4, group i % 4.
  template <int R>
  void rows(const ActQ8_256* const a[R], EightLaneState<L> st[R]) const {
    for (int r = 0; r < R; ++r) {
      I sums[8];
      for (int i = 0; i < 8; ++i) sums[i] = L::zero();
#pragma GCC unroll 1
      for (int c = 0; c < 8; ++c) {
        for (int i = 0; i < 8; ++i) {
          const int sub = 2 * c + i / 4;
          const I p = L::maddubs(q[sub][i % 4], L::set1(load_i32(a[r]->qs + 16 * sub + 4 * (i % 4))));
          sums[i] = L::dot16(sums[i], p, scale[sub]);
        }
      }
      const F d_ad = L::mul(d, L::set1_ps(a[r]->d));
      for (int i = 0; i < 8; ++i) {
        const I offset = L::dot16(L::zero(), scales2[i], L::set1(load_i32(a[r]->bsums + 2 * i)));
        st[r].acc[i] = L::fmadd(d_ad, L::cvt(L::sub32(sums[i], L::slli(offset, 5))), st[r].acc[i]);
      }
    }
  }
};

// Requests block b + ahead of each of the tile's weight rows: the rows are read in
// lockstep, more streams than the hardware prefetchers follow (a memory-bound LM
// head ran 1.3x slower without). Into L2, as every weight stream: 8 and 16 rows of
// the Q6_K LM head took 22% and 15% less time than with the bytes asked into L1
// (Zen 4, session 23).
template <typename L, typename Block>
inline void tile_blocks_prefetch(const uint8_t* w, size_t w_stride, int64_t b, int64_t n_blocks, int64_t ahead = 2) {
  if (b + ahead >= n_blocks) return;
  for (int r = 0; r < L::kLanes; ++r) {
    block_lines_prefetch<Block>(reinterpret_cast<const char*>(w + r * w_stride + (b + ahead) * sizeof(Block)));
  }
}

// tile_run's step for one unpacked block: each activation row's blocks a[i] into
// st[i], for i < count, by the tile's vector rows (the AMX tiles put a step of their
// own in front).
struct TileRowsEach {
  template <typename Tile, typename Act, typename St>
  void operator()(const Tile& t, const Act* const a[], int count, St st[]) const {
    row_groups_each(count, [&](auto group, int g0) { t.template rows<decltype(group)::value>(a + g0, st + g0); });
  }
};

// A TypeKernels tile: y[i * ldy + w] = the row kernel's dot product of weight row w
// (at w_rows + w * w_stride) and activation row i, for w < Lanes::kLanes and i <
// n_act <= kMaxTileAct, in the order State keeps. Blocks outermost: the tile's
// unpacked block stays in L1 while every activation row's block passes under it,
// so a block is unpacked once a call (in passes of 16 rows, 24 and 64 decoded rows
// of a Q4_K 8960x1536 matrix took 12% and 16% longer; session 30).
template <typename Tile, template <typename> class State, typename BlockRows = TileRowsEach>
void tile_run(int64_t n, const void* w_rows, size_t w_stride, const void* act, size_t act_stride, int n_act,
              float* y, int64_t ldy, BlockRows block_rows = {}) {
  using L = typename Tile::Lanes;
  using Block = typename Tile::Block;
  using Act = typename Tile::Act;
  const uint8_t* w = static_cast<const uint8_t*>(w_rows);
  const uint8_t* rows = static_cast<const uint8_t*>(act);
  const int64_t n_blocks = n / Tile::kBlockElems;
  Tile t;
  State<L> st[kMaxTileAct];
  for (int i = 0; i < n_act; ++i) st[i].clear();
  for (int64_t b = 0; b < n_blocks; ++b) {
    tile_blocks_prefetch<L, Block>(w, w_stride, b, n_blocks);
    t.unpack(w + b * sizeof(Block), w_stride);
    const Act* a[kMaxTileAct];
    for (int i = 0; i < n_act; ++i) a[i] = reinterpret_cast<const Act*>(rows + i * act_stride) + b;
    block_rows(t, a, n_act, st);
  }
  for (int i = 0; i < n_act; ++i) L::store(y + i * ldy, st[i].total());
}

}  // namespace
}  // namespace duet::avx2
