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

// A chunk consumer summing one activation row's products as the chunks come: with
// one row nothing of the block needs keeping, so a chunk's registers are free once
// it is summed (an unpacked block of 16 registers would spill). The same int32 lane
// sums as kblock_dot_rows.
struct KChunkSum {
  const int8_t* a;  // the activation block's 256 values
  __m256i sum;
  void operator()(int j, __m256i q, __m256i scale) {
    const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 32 * j));
    sum = _mm256_add_epi32(sum, dot_u8_i8_scaled(q, av, scale));
  }
};

// The integer dot product of a path, for R rows at once: Dot::rows<R>(u, a, sums);
// kFusedOneRow: one row takes KChunkSum instead.
struct KBlockDotAvx2 {
  static constexpr bool kFusedOneRow = true;
  template <int R>
  static void rows(const KBlockUnpacked& u, const int8_t* const a[R], __m256i sums[R]) {
    kblock_dot_rows<R>(u, a, sums);
  }
};

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

// Row state of a Q4_K / Q5_K dot product: the scale term and the mins term, each
// one FMA per block.
struct KQuantRowAcc {
  __m256 scaled;
  __m128 mins;
};

inline KQuantRowAcc kquant_row_acc_zero() { return {_mm256_setzero_ps(), _mm_setzero_ps()}; }

// One block's update of a row's accumulators: sumi = int32[8] scale sums, summ =
// int32[4] mins sums, factors = [d, dmin, ...] of the weight block, ad = the
// activation block's scale. Every path (any number of activation rows) goes
// through here, so a row's float operations are the same whatever path computed
// its integers: d * ad and -(dmin * ad) as two products, then one FMA per term.
inline void kquant_row_acc_add(KQuantRowAcc& acc, __m256i sumi, __m128i summ, __m128 factors, float ad) {
  const __m128 products = _mm_mul_ps(factors, _mm_set1_ps(ad));
  const __m128 neg_products = _mm_xor_ps(products, _mm_set1_ps(-0.0f));
  acc.scaled = _mm256_fmadd_ps(_mm256_broadcastss_ps(products), _mm256_cvtepi32_ps(sumi), acc.scaled);
  acc.mins = _mm_fmadd_ps(_mm_permute_ps(neg_products, 0x55), _mm_cvtepi32_ps(summ), acc.mins);
}

inline float kquant_row_acc_sum(const KQuantRowAcc& acc) { return hsum_f32x8(acc.scaled) + hsum_f32x4(acc.mins); }

// One Q4_K / Q5_K block's contribution to R rows' accumulators.
template <typename Dot, int R>
inline void kquant_mins_block_rows(const KBlockUnpacked& u, __m128i mins16, __m128 factors,
                                   const ActQ8_256* const a[R], KQuantRowAcc acc[R]) {
  const int8_t* qs[R];
  for (int r = 0; r < R; ++r) qs[r] = a[r]->qs;
  __m256i sumi[R];
  Dot::template rows<R>(u, qs, sumi);
  for (int r = 0; r < R; ++r) {
    kquant_row_acc_add(acc[r], sumi[r], _mm_madd_epi16(mins16, act_pair_sums(*a[r])), factors, a[r]->d);
  }
}

// Runs a K-quant-with-mins dot product (Q4_K, Q5_K) over n_act rows given the
// format's chunks (Q4KChunks, Q5KChunks: each(block, f) hands chunk j to f and
// returns the mins). kRows is n_act when known at compile time, else 0. Either way
// each row's operations are the same.
template <typename Chunks, typename Dot, int kRows>
void kquant_mins_rows(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  using Block = typename Chunks::Block;
  if constexpr (kRows > 0) n_act = kRows;
  const bool prefetch = act_rows_need_prefetch(n_act, act_stride);
  const Block* blocks = static_cast<const Block*>(w);
  const uint8_t* rows = static_cast<const uint8_t*>(act);
  KQuantRowAcc acc[kMaxActRows];
  for (int r = 0; r < n_act; ++r) acc[r] = kquant_row_acc_zero();
  KBlockUnpacked u;
  const int64_t n_blocks = n / QK_K;
  for (int64_t b = 0; b < n_blocks; ++b) {
    _mm_prefetch(reinterpret_cast<const char*>(blocks + b + 4), _MM_HINT_T0);
    const __m128 factors = kquant_factors_load(blocks + b);
    const ActQ8_256* a[kMaxActRows];
    act_blocks_gather(rows, act_stride, n_act, b, prefetch, a);
    if constexpr (kRows == 1 && Dot::kFusedOneRow) {
      KChunkSum sum{a[0]->qs, _mm256_setzero_si256()};
      const __m128i mins16 = Chunks::each(blocks[b], sum);
      kquant_row_acc_add(acc[0], sum.sum, _mm_madd_epi16(mins16, act_pair_sums(*a[0])), factors, a[0]->d);
    } else {
      const __m128i mins16 = Chunks::each(blocks[b], KBlockStore{u});
      row_groups_each(n_act, [&](auto group, int first) {
        kquant_mins_block_rows<Dot, decltype(group)::value>(u, mins16, factors, a + first, acc + first);
      });
    }
  }
  for (int r = 0; r < n_act; ++r) out[r] = kquant_row_acc_sum(acc[r]);
}

template <typename Chunks, typename Dot>
void kquant_mins_vec_dot(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  if (n_act == 1) {
    kquant_mins_rows<Chunks, Dot, 1>(n, w, act, act_stride, n_act, out);
  } else {
    kquant_mins_rows<Chunks, Dot, 0>(n, w, act, act_stride, n_act, out);
  }
}

inline __m256i act_bsums(const ActQ8_256& a) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bsums));
}

// One Q6_K block's update of a row's accumulator (sumi = int32[8] scale sums,
// scales_all = the block's int16[16] scales, bsums = the activation's): the -32
// offset of every weight is taken once per block as 32 * sum_j(scale_j * bsums_j),
// exact in int32. Shared by every path, as kquant_row_acc_add.
inline void q6_k_row_acc_add(__m256& acc, __m256i sumi, __m256i scales_all, __m256i bsums, float d, float ad) {
  const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(scales_all, bsums), 5);
  const __m256 sum = _mm256_cvtepi32_ps(_mm256_sub_epi32(sumi, offset));
  acc = _mm256_fmadd_ps(_mm256_set1_ps(d * ad), sum, acc);
}

inline __m256i q6_k_scales_all(const BlockQ6_K& x) {
  return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x.scales)));
}

// One Q6_K block's contribution to R rows' accumulators.
template <typename Dot, int R>
inline void q6_k_block_rows(const KBlockUnpacked& u, __m256i scales_all, float d, const ActQ8_256* const a[R],
                            __m256 acc[R]) {
  const int8_t* qs[R];
  for (int r = 0; r < R; ++r) qs[r] = a[r]->qs;
  __m256i sumi[R];
  Dot::template rows<R>(u, qs, sumi);
  for (int r = 0; r < R; ++r) q6_k_row_acc_add(acc[r], sumi[r], scales_all, act_bsums(*a[r]), d, a[r]->d);
}

// Q6_K's dot product over n_act rows given its chunks (Q6KChunks).
template <typename Chunks, typename Dot, int kRows>
void q6_k_rows(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  if constexpr (kRows > 0) n_act = kRows;
  const bool prefetch = act_rows_need_prefetch(n_act, act_stride);
  const BlockQ6_K* blocks = static_cast<const BlockQ6_K*>(w);
  const uint8_t* rows = static_cast<const uint8_t*>(act);
  __m256 acc[kMaxActRows];
  for (int r = 0; r < n_act; ++r) acc[r] = _mm256_setzero_ps();
  KBlockUnpacked u;
  const int64_t n_blocks = n / QK_K;
  for (int64_t b = 0; b < n_blocks; ++b) {
    _mm_prefetch(reinterpret_cast<const char*>(blocks + b + 4), _MM_HINT_T0);
    const __m256i scales_all = q6_k_scales_all(blocks[b]);
    const float d = f16_load(blocks[b].d);
    const ActQ8_256* a[kMaxActRows];
    act_blocks_gather(rows, act_stride, n_act, b, prefetch, a);
    if constexpr (kRows == 1 && Dot::kFusedOneRow) {
      KChunkSum sum{a[0]->qs, _mm256_setzero_si256()};
      Chunks::each(blocks[b], sum);
      q6_k_row_acc_add(acc[0], sum.sum, scales_all, act_bsums(*a[0]), d, a[0]->d);
    } else {
      Chunks::each(blocks[b], KBlockStore{u});
      row_groups_each(n_act, [&](auto group, int first) {
        q6_k_block_rows<Dot, decltype(group)::value>(u, scales_all, d, a + first, acc + first);
      });
    }
  }
  for (int r = 0; r < n_act; ++r) out[r] = hsum_f32x8(acc[r]);
}

template <typename Chunks, typename Dot>
void q6_k_vec_dot_with(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  if (n_act == 1) {
    q6_k_rows<Chunks, Dot, 1>(n, w, act, act_stride, n_act, out);
  } else {
    q6_k_rows<Chunks, Dot, 0>(n, w, act, act_stride, n_act, out);
  }
}

// GEMV (decode): one activation row against n_rows weight rows (row r at w + r *
// w_stride bytes), each by row_dot, the one-activation-row loop of a vec_dot above.
// Inlined here, a row costs no call and no set-up beyond its accumulators, and its
// bits are vec_dot's. (Interleaving several weight rows per activation block was
// measured slower: a single row streams sequentially for the prefetchers, and the
// rows' unpacked blocks no longer fit in registers.)
template <void (*row_dot)(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out)>
void gemv_by_rows(int64_t n, const void* w, size_t w_stride, int64_t n_rows, const void* act, float* out) {
  const uint8_t* base = static_cast<const uint8_t*>(w);
  for (int64_t r = 0; r < n_rows; ++r) row_dot(n, base + static_cast<size_t>(r) * w_stride, act, 0, 1, out + r);
}

template <typename Chunks, typename Dot>
void kquant_mins_gemv(int64_t n, const void* w, size_t w_stride, int64_t n_rows, const void* act, float* out) {
  gemv_by_rows<kquant_mins_rows<Chunks, Dot, 1>>(n, w, w_stride, n_rows, act, out);
}

template <typename Chunks, typename Dot>
void q6_k_gemv_with(int64_t n, const void* w, size_t w_stride, int64_t n_rows, const void* act, float* out) {
  gemv_by_rows<q6_k_rows<Chunks, Dot, 1>>(n, w, w_stride, n_rows, act, out);
}

}  // namespace
}  // namespace duet::avx2
