// What the K-quant dot products (Q4_K, Q5_K, Q6_K) share. With several activation
// rows a super-block is unpacked once into L1 (unsigned bytes and the 16-bit scale
// of each pair sum), then every activation row runs the same integer dot product
// over it: unpacking is paid once per block however many rows there are. With one
// row (decode) each chunk is summed as it is unpacked. Either way a row gets the
// same int32 lane sums and the same float operations on them.
#pragma once
#include <cstring>
#include <type_traits>

#include "quant/avx2/avx2_common.h"
#include "quant/kernels.h"

// Everything here has internal linkage: this header is compiled into files built
// with different ISA flags, and the linker must not pick one file's copy for all.
namespace duet::avx2 {
namespace {

struct alignas(64) KBlockUnpacked {  // 64: AVX-512 loads chunk pairs
  __m256i q[8];      // chunk j: unsigned weights of elements 32j..32j+31
  __m256i scale[8];  // chunk j: int16 factor for each pair sum (16 lanes)
};

// sums[i] = int32[8] partial sums of sum_j scale_j * q_j * a_i,j over the
// super-block, for R activation rows at once: each unpacked chunk is loaded once
// for R rows. Integer sums are exact, so the grouping cannot change a row's result.
template <int R>
inline void kblock_dot_rows(const KBlockUnpacked& u, const int8_t* const a[R], __m256i sums[R]) {
  for (int i = 0; i < R; ++i) sums[i] = _mm256_setzero_si256();
  auto chunk = [&](int j) {
    const __m256i q = _mm256_load_si256(&u.q[j]);
    const __m256i scale = _mm256_load_si256(&u.scale[j]);
    for (int i = 0; i < R; ++i) {
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[i] + 32 * j));
      sums[i] = _mm256_add_epi32(sums[i], _mm256_madd_epi16(_mm256_maddubs_epi16(q, av), scale));
    }
  };
  if constexpr (R == 1) {
    // Unrolled, so that a block unpacked just before stays in registers.
    for (int j = 0; j < 8; ++j) chunk(j);
  } else {
    // Fully unrolled over several rows, GCC regroups the integer adds into a tree
    // that keeps every product live and spills; a rolled loop keeps one running
    // sum per row.
#pragma GCC unroll 1
    for (int j = 0; j < 8; ++j) chunk(j);
  }
}

// A format's chunk consumer (see kquant_unpack.h) that stores the chunks, for
// several activation rows.
struct KBlockStore {
  KBlockUnpacked& u;
  void operator()(int j, __m256i q, __m256i scale) const {
    u.q[j] = q;
    u.scale[j] = scale;
  }
};

// A chunk consumer summing R activation rows' products as the chunks come: each
// chunk is unpacked once for all R rows and is free once summed, where storing
// the block for the rows (KBlockStore) goes through L1 and back (with one row an
// unpacked block of 16 registers would spill). The same int32 lane sums as
// kblock_dot_rows. Dot::chunk_add(sum, q, a, scale) adds one chunk's products.
template <typename Dot, int R>
struct KChunkSums {
  const int8_t* a[R];  // each activation block's 256 values
  __m256i sum[R];
  explicit KChunkSums(const ActQ8_256* const blocks[R]) {
    for (int i = 0; i < R; ++i) a[i] = blocks[i]->qs, sum[i] = _mm256_setzero_si256();
  }
  void operator()(int j, __m256i q, __m256i scale) {
    for (int i = 0; i < R; ++i) {
      sum[i] = Dot::chunk_add(sum[i], q, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[i] + 32 * j)), scale);
    }
  }
};

// The integer dot product of a path, for R rows at once: Dot::rows<R>(u, a, sums);
// kFused: up to kMaxGemvRows rows known at compile time take KChunkSums instead.
struct KBlockDotAvx2 {
  static constexpr bool kFused = true;
  static __m256i chunk_add(__m256i sum, __m256i q, __m256i a, __m256i scale) {
    return _mm256_add_epi32(sum, dot_u8_i8_scaled(q, a, scale));
  }
  template <int R>
  static void rows(const KBlockUnpacked& u, const int8_t* const a[R], __m256i sums[R]) {
    kblock_dot_rows<R>(u, a, sums);
  }
};

// Whether a dot product over kRows rows (0: known only at run time) sums the
// chunks as they are unpacked (KChunkSums).
template <typename Dot, int kRows>
constexpr bool fused() {
  return Dot::kFused && kRows >= 1 && kRows <= kMaxGemvRows;
}

// f(std::integral_constant<int, R>(), first) over the n rows in groups of at most
// four, so that every group runs code compiled for its row count: per-row state
// then lives in registers, not in arrays indexed at run time.
template <typename F>
inline void row_groups_each(int n, F&& f) {
  int first = 0;
  for (; first + 4 <= n; first += 4) f(std::integral_constant<int, 4>(), first);
  switch (n - first) {
    case 3: f(std::integral_constant<int, 3>(), first); break;
    case 2: f(std::integral_constant<int, 2>(), first); break;
    case 1: f(std::integral_constant<int, 1>(), first); break;
    default: break;
  }
}

// Activation rows that matmul cannot keep in L1 across weight rows (it tries to):
// they are walked in lockstep, more streams than the hardware prefetchers follow,
// so each row's block two steps ahead is requested.
constexpr size_t kActL1Budget = 24 * 1024;  // of the 32 KB L1, leaving room for weights

inline bool act_rows_need_prefetch(int n_act, size_t stride) {
  return n_act > 1 && static_cast<size_t>(n_act) * stride > kActL1Budget;
}

// The activation blocks b of n_act rows.
inline void act_blocks_gather(const uint8_t* rows, size_t stride, int n_act, int64_t b, bool prefetch,
                              const ActQ8_256* blocks[]) {
  for (int r = 0; r < n_act; ++r) {
    blocks[r] = reinterpret_cast<const ActQ8_256*>(rows + r * stride) + b;
    if (!prefetch) continue;
    const char* ahead = reinterpret_cast<const char*>(blocks[r] + 2);
    for (int line = 0; line < 5; ++line) _mm_prefetch(ahead + 64 * line, _MM_HINT_T0);
  }
}

// [d, dmin, 0, 0] of a Q4_K / Q5_K block (the two f16 at its start), in one load
// and one conversion.
inline __m128 kquant_factors_load(const void* block) {
  int32_t both;
  std::memcpy(&both, block, 4);
  return _mm_cvtph_ps(_mm_cvtsi32_si128(both));
}

// The shuffle control that puts byte i of each 128-bit half, zero-extended, in
// every 16-bit lane of that half (a control byte with its top bit set gives 0).
inline __m256i byte_u16_broadcast_control(int i) { return _mm256_set1_epi16(static_cast<short>(0x8000 | i)); }

// The scalar kquant_scales_unpack (kquant_scales.h) in each 128-bit half: bytes
// 0-7 the scales, 8-15 the mins.
// head = the block's first 16 bytes in both halves (packed word k in 32-bit lane
// k + 1). 32-bit lane k of a half is output word k of the scalar version: lanes 0
// and 2 are the low 6 bits of words 0 and 1; lanes 1 and 3 combine a nibble of
// word 2 with the top 2 bits of words 0 and 1.
inline __m256i kquant_scales_unpack_x2(__m256i head) {
  const __m256i low_words = _mm256_shuffle_epi32(head, _MM_SHUFFLE(2, 2, 1, 1));  // w0 w0 w1 w1
  const __m256i nibble_words =
      _mm256_srlv_epi32(_mm256_shuffle_epi32(head, _MM_SHUFFLE(3, 2, 3, 1)), _mm256_setr_epi32(0, 0, 0, 4, 0, 0, 0, 4));
  const __m256i low6 = _mm256_and_si256(low_words, _mm256_set1_epi32(0x3f3f3f3f));
  const __m256i top2 =
      _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(low_words, 6), _mm256_set1_epi32(0x03030303)), 4);
  const __m256i combined = _mm256_or_si256(_mm256_and_si256(nibble_words, _mm256_set1_epi32(0x0f0f0f0f)), top2);
  return _mm256_blend_epi32(low6, combined, 0b10101010);
}

// A Q4_K / Q5_K block's scales and mins unpacked (kquant_scales_unpack_x2) in both
// 128-bit halves, from one broadcast load of the block's head, so that each
// factor below is a single in-lane shuffle.
inline __m256i kquant_scales_load(const void* block) {
  return kquant_scales_unpack_x2(_mm256_broadcastsi128_si256(_mm_loadu_si128(static_cast<const __m128i*>(block))));
}

// Sub-block j's scale as the factor of every pair sum (chunk j is sub-block j).
inline __m256i kquant_chunk_scale(__m256i scales, int j) {
  return _mm256_shuffle_epi8(scales, byte_u16_broadcast_control(j));
}

// The eight mins as int16[8].
inline __m128i kquant_mins16(__m256i scales) {
  const __m128i bytes = _mm256_castsi256_si128(scales);
  return _mm_cvtepu8_epi16(_mm_unpackhi_epi64(bytes, bytes));
}

// int16[8] sums of the activation's bsums in pairs (one per 32-element sub-block):
// the activation side of the mins term, the same for every weight row.
inline __m128i act_pair_sums(const ActQ8_256& a) {
  const __m128i* bsums = reinterpret_cast<const __m128i*>(a.bsums);
  return _mm_hadd_epi16(_mm_loadu_si128(bsums), _mm_loadu_si128(bsums + 1));
}

// Lane r = the sum of the int32 lanes of v[r] for r < R (0 above): the exact
// integer totals of up to four rows in one vector, reduced together.
template <int R>
inline __m128i hsum_i32x8_rows(const __m256i v[R]) {
  __m256i x[4];
  for (int r = 0; r < 4; ++r) x[r] = r < R ? v[r] : _mm256_setzero_si256();
  const __m256i halves = _mm256_hadd_epi32(_mm256_hadd_epi32(x[0], x[1]), _mm256_hadd_epi32(x[2], x[3]));
  return _mm_add_epi32(_mm256_castsi256_si128(halves), _mm256_extracti128_si256(halves, 1));
}

template <int R>
inline __m128i hsum_i32x4_rows(const __m128i v[R]) {
  __m128i x[4];
  for (int r = 0; r < 4; ++r) x[r] = r < R ? v[r] : _mm_setzero_si128();
  return _mm_hadd_epi32(_mm_hadd_epi32(x[0], x[1]), _mm_hadd_epi32(x[2], x[3]));
}

// The activation blocks' scales of R rows in lanes 0..R-1 (0 above). Built in
// registers: four scalar stores read back as one vector would stall forwarding.
template <int R>
inline __m128 act_scales(const ActQ8_256* const a[R]) {
  auto d = [&](int r) { return r < R ? a[r]->d : 0.0f; };
  return _mm_setr_ps(d(0), d(1), d(2), d(3));
}

// The float state of a dot product's rows, in one of llama.cpp's two orders.
// add<R>(first, ...) takes one block for rows first..first+R-1 (first a multiple
// of 4: row_groups_each's groups); result(r) is row r's dot product. Every path
// (any number of activation rows) goes through add, so a row's float operations
// are the same whatever path computed its integers.
//
// Q4_K / Q5_K: sumi = int32[8] scale sums and summ = int32[4] mins sums per row,
// factors = [d, dmin, ...] of the weight block.
//
// Decode order (ggml's vec_dot, which llama.cpp runs for a decoded token): d * ad
// and -(dmin * ad) as two products, then one FMA per term into float lanes, summed
// across lanes at the end.
struct KQuantDecodeRows {
  __m256 scaled[kMaxActRows];
  __m128 mins[kMaxActRows];
  explicit KQuantDecodeRows(int n_rows) {
    for (int r = 0; r < n_rows; ++r) scaled[r] = _mm256_setzero_ps(), mins[r] = _mm_setzero_ps();
  }
  template <int R>
  void add(int first, const __m256i sumi[R], const __m128i summ[R], __m128 factors, const ActQ8_256* const a[R]) {
    for (int r = 0; r < R; ++r) {
      const __m128 products = _mm_mul_ps(factors, _mm_set1_ps(a[r]->d));
      const __m128 neg_products = _mm_xor_ps(products, _mm_set1_ps(-0.0f));
      scaled[first + r] = _mm256_fmadd_ps(_mm256_broadcastss_ps(products), _mm256_cvtepi32_ps(sumi[r]),
                                          scaled[first + r]);
      mins[first + r] = _mm_fmadd_ps(_mm_permute_ps(neg_products, 0x55), _mm_cvtepi32_ps(summ[r]), mins[first + r]);
    }
  }
  float result(int r) const { return hsum_f32x8(scaled[r]) + hsum_f32x4(mins[r]); }
};

// One sum per row, four rows to a vector: lane r % 4 of sums[r / 4].
struct PromptRowSums {
  __m128 sums[kMaxActRows / 4];
  explicit PromptRowSums(int n_rows) {
    for (int g = 0; g < (n_rows + 3) / 4; ++g) sums[g] = _mm_setzero_ps();
  }
  float result(int r) const {
    alignas(16) float lanes[4];
    _mm_store_ps(lanes, sums[r / 4]);
    return lanes[r % 4];
  }
};

// Prompt order (ggml's tiled matmul, which llama.cpp runs for a prompt batch of 8
// tokens or more): the block's integers summed exactly, d * scaled - dmin * mins
// with one rounding of the difference, then one FMA with ad into the row's sum.
// The scalar kquant_vec_dot_prompt's operations, on four rows at once.
struct KQuantPromptRows : PromptRowSums {
  using PromptRowSums::PromptRowSums;
  template <int R>
  void add(int first, const __m256i sumi[R], const __m128i summ[R], __m128 factors, const ActQ8_256* const a[R]) {
    const __m128 scaled = _mm_cvtepi32_ps(hsum_i32x8_rows<R>(sumi));
    const __m128 mins = _mm_cvtepi32_ps(hsum_i32x4_rows<R>(summ));
    const __m128 block = _mm_fnmadd_ps(_mm_permute_ps(factors, 0x55), mins, _mm_mul_ps(_mm_permute_ps(factors, 0), scaled));
    sums[first / 4] = _mm_fmadd_ps(block, act_scales<R>(a), sums[first / 4]);
  }
};

// One Q4_K / Q5_K block's contribution to R rows from `first` on.
template <typename Dot, int R, typename Rows>
inline void kquant_mins_block_rows(const KBlockUnpacked& u, __m128i mins16, __m128 factors,
                                   const ActQ8_256* const a[R], int first, Rows& rows) {
  const int8_t* qs[R];
  for (int r = 0; r < R; ++r) qs[r] = a[r]->qs;
  __m256i sumi[R];
  __m128i summ[R];
  Dot::template rows<R>(u, qs, sumi);
  for (int r = 0; r < R; ++r) summ[r] = _mm_madd_epi16(mins16, act_pair_sums(*a[r]));
  rows.template add<R>(first, sumi, summ, factors, a);
}

// Runs a K-quant-with-mins dot product (Q4_K, Q5_K) over n_act rows given the
// format's chunks (Q4KChunks, Q5KChunks: each(block, f) hands chunk j to f and
// returns the mins) and an order (Rows: KQuantDecodeRows, KQuantPromptRows). kRows
// is n_act when known at compile time, else 0. Either way each row's operations are
// the same.
template <typename Chunks, typename Dot, typename Rows, int kRows>
void kquant_mins_rows(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  using Block = typename Chunks::Block;
  if constexpr (kRows > 0) n_act = kRows;
  const bool prefetch = act_rows_need_prefetch(n_act, act_stride);
  const Block* blocks = static_cast<const Block*>(w);
  const uint8_t* rows = static_cast<const uint8_t*>(act);
  Rows state(n_act);
  KBlockUnpacked u;
  const int64_t n_blocks = n / QK_K;
  for (int64_t b = 0; b < n_blocks; ++b) {
    weights_prefetch(blocks + b, n_act > 1);
    const __m128 factors = kquant_factors_load(blocks + b);
    const ActQ8_256* a[kMaxActRows];
    act_blocks_gather(rows, act_stride, n_act, b, prefetch, a);
    if constexpr (fused<Dot, kRows>()) {
      KChunkSums<Dot, kRows> sums(a);
      const __m128i mins16 = Chunks::each(blocks[b], sums);
      __m128i summ[kRows];
      for (int r = 0; r < kRows; ++r) summ[r] = _mm_madd_epi16(mins16, act_pair_sums(*a[r]));
      state.template add<kRows>(0, sums.sum, summ, factors, a);
    } else {
      const __m128i mins16 = Chunks::each(blocks[b], KBlockStore{u});
      row_groups_each(n_act, [&](auto group, int first) {
        kquant_mins_block_rows<Dot, decltype(group)::value>(u, mins16, factors, a + first, first, state);
      });
    }
  }
  for (int r = 0; r < n_act; ++r) out[r] = state.result(r);
}

template <typename Chunks, typename Dot, typename Rows = KQuantDecodeRows>
void kquant_mins_vec_dot(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  if (n_act == 1) {
    kquant_mins_rows<Chunks, Dot, Rows, 1>(n, w, act, act_stride, n_act, out);
  } else {
    kquant_mins_rows<Chunks, Dot, Rows, 0>(n, w, act, act_stride, n_act, out);
  }
}

inline __m256i act_bsums(const ActQ8_256& a) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bsums));
}

// sumi = int32[8] sums of scale * q * a, q in 0..63, less the -32 offset of every
// weight, taken once per block as 32 * sum_j(scale_j * bsums_j) (exact in int32):
// the integers of a Q6_K block, as q - 32 gives them. scales_all = the block's
// int16[16] scales, bsums = the activation's.
inline __m256i q6_k_offset_sums(__m256i sumi, __m256i scales_all, __m256i bsums) {
  return _mm256_sub_epi32(sumi, _mm256_slli_epi32(_mm256_madd_epi16(scales_all, bsums), 5));
}

// Q6_K's two orders (see KQuantDecodeRows, KQuantPromptRows); add takes one block's
// offset sums per row and the weight block's d.
struct Q6KDecodeRows {
  __m256 acc[kMaxActRows];
  explicit Q6KDecodeRows(int n_rows) {
    for (int r = 0; r < n_rows; ++r) acc[r] = _mm256_setzero_ps();
  }
  template <int R>
  void add(int first, const __m256i sums[R], float d, const ActQ8_256* const a[R]) {
    for (int r = 0; r < R; ++r) {
      acc[first + r] = _mm256_fmadd_ps(_mm256_set1_ps(d * a[r]->d), _mm256_cvtepi32_ps(sums[r]), acc[first + r]);
    }
  }
  float result(int r) const { return hsum_f32x8(acc[r]); }
};

struct Q6KPromptRows : PromptRowSums {
  using PromptRowSums::PromptRowSums;
  template <int R>
  void add(int first, const __m256i offset_sums[R], float d, const ActQ8_256* const a[R]) {
    const __m128 block = _mm_mul_ps(_mm_set1_ps(d), _mm_cvtepi32_ps(hsum_i32x8_rows<R>(offset_sums)));
    sums[first / 4] = _mm_fmadd_ps(block, act_scales<R>(a), sums[first / 4]);
  }
};

inline __m256i q6_k_scales_all(const BlockQ6_K& x) {
  return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x.scales)));
}

// One Q6_K block's contribution to R rows' accumulators.
template <typename Dot, int R, typename Rows>
inline void q6_k_block_rows(const KBlockUnpacked& u, __m256i scales_all, float d, const ActQ8_256* const a[R],
                            int first, Rows& rows) {
  const int8_t* qs[R];
  for (int r = 0; r < R; ++r) qs[r] = a[r]->qs;
  __m256i sums[R];
  Dot::template rows<R>(u, qs, sums);
  for (int r = 0; r < R; ++r) sums[r] = q6_k_offset_sums(sums[r], scales_all, act_bsums(*a[r]));
  rows.template add<R>(first, sums, d, a);
}

// Q6_K's dot product over n_act rows given its chunks (Q6KChunks) and an order
// (Q6KDecodeRows, Q6KPromptRows).
template <typename Chunks, typename Dot, typename Rows, int kRows>
void q6_k_rows(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  if constexpr (kRows > 0) n_act = kRows;
  const bool prefetch = act_rows_need_prefetch(n_act, act_stride);
  const BlockQ6_K* blocks = static_cast<const BlockQ6_K*>(w);
  const uint8_t* rows = static_cast<const uint8_t*>(act);
  Rows state(n_act);
  KBlockUnpacked u;
  const int64_t n_blocks = n / QK_K;
  for (int64_t b = 0; b < n_blocks; ++b) {
    weights_prefetch(blocks + b, n_act > 1);
    const __m256i scales_all = q6_k_scales_all(blocks[b]);
    const float d = f16_load(blocks[b].d);
    const ActQ8_256* a[kMaxActRows];
    act_blocks_gather(rows, act_stride, n_act, b, prefetch, a);
    if constexpr (fused<Dot, kRows>()) {
      KChunkSums<Dot, kRows> sums(a);
      Chunks::each(blocks[b], sums);
      for (int r = 0; r < kRows; ++r) sums.sum[r] = q6_k_offset_sums(sums.sum[r], scales_all, act_bsums(*a[r]));
      state.template add<kRows>(0, sums.sum, d, a);
    } else {
      Chunks::each(blocks[b], KBlockStore{u});
      row_groups_each(n_act, [&](auto group, int first) {
        q6_k_block_rows<Dot, decltype(group)::value>(u, scales_all, d, a + first, first, state);
      });
    }
  }
  for (int r = 0; r < n_act; ++r) out[r] = state.result(r);
}

template <typename Chunks, typename Dot, typename Rows = Q6KDecodeRows>
void q6_k_vec_dot_with(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  if (n_act == 1) {
    q6_k_rows<Chunks, Dot, Rows, 1>(n, w, act, act_stride, n_act, out);
  } else {
    q6_k_rows<Chunks, Dot, Rows, 0>(n, w, act, act_stride, n_act, out);
  }
}

// GEMV (decode): n_act <= kMaxGemvRows activation rows against n_rows weight rows
// (row r at w + r * w_stride bytes), each weight row by row_dot's function, a dot
// product above over rows known at compile time: its chunks are summed for all the
// rows as they are unpacked, so each weight row is read and unpacked once. Inlined
// here, a row costs no call and no set-up beyond its accumulators, and its bits
// are vec_dot's. (Interleaving several weight rows per activation block was
// measured slower: a single row streams sequentially for the prefetchers, and the
// rows' unpacked blocks no longer fit in registers. So was walking long rows in
// segments whose activations fit L1, several weight rows per segment: ffn_down's
// 8960 columns, 3 to 8 rows, 1.1-1.3x slower, session 24.)
// row_dot(std::integral_constant<int, R>()) gives the dot product for R rows.
template <typename RowDot>
void gemv_by_rows(int64_t n, const void* w, size_t w_stride, int64_t n_rows, const void* act, size_t act_stride,
                  int n_act, float* out, int64_t ldo, RowDot row_dot) {
  const uint8_t* base = static_cast<const uint8_t*>(w);
  gemv_rows_dispatch(n_act, [&](auto rows) {
    constexpr int R = decltype(rows)::value;
    constexpr auto dot = decltype(row_dot(rows))::value;
    float results[R];
    for (int64_t r = 0; r < n_rows; ++r) {
      dot(n, base + static_cast<size_t>(r) * w_stride, act, act_stride, R, results);
      for (int i = 0; i < R; ++i) out[i * ldo + r] = results[i];
    }
  });
}

// A function as a type, so that gemv_by_rows calls it directly (inlined).
template <auto F>
using Function = std::integral_constant<decltype(F), F>;

template <typename Chunks, typename Dot>
void kquant_mins_gemv(int64_t n, const void* w, size_t w_stride, int64_t n_rows, const void* act, size_t act_stride,
                      int n_act, float* out, int64_t ldo) {
  gemv_by_rows(n, w, w_stride, n_rows, act, act_stride, n_act, out, ldo, [](auto rows) {
    return Function<kquant_mins_rows<Chunks, Dot, KQuantDecodeRows, decltype(rows)::value>>();
  });
}

template <typename Chunks, typename Dot>
void q6_k_gemv_with(int64_t n, const void* w, size_t w_stride, int64_t n_rows, const void* act, size_t act_stride,
                    int n_act, float* out, int64_t ldo) {
  gemv_by_rows(n, w, w_stride, n_rows, act, act_stride, n_act, out, ldo, [](auto rows) {
    return Function<q6_k_rows<Chunks, Dot, Q6KDecodeRows, decltype(rows)::value>>();
  });
}

}  // namespace
}  // namespace duet::avx2
