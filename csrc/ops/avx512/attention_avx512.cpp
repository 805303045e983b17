// AVX-512 attention kernels for the decode order of llama.cpp's AVX-512 build (four
// vectors of 16: 64 lanes), the order of every decode step and tree node on this
// path; other orders and shapes take the AVX2 kernels. The bits are the AVX2
// kernels' (attention_kernels.h's orders); only the way to them differs.
//
// The AVX2 kernels spent about 80 cycles on each cache row of each head (the 0.5B
// drafter's step: 14% of it in attention). Their score held a row's 64 lanes in
// eight ymm accumulators, two rows at a time, which spilled, and then reduced each
// row alone across a vector; their accumulation added eight lanes per load and store.
#include <immintrin.h>

#include "ops/attention_kernels.h"

namespace duet {

namespace {

constexpr int kDecodeLanes = 4 * kGgmlWidth16;
constexpr int kRowBlock = 16;  // rows scored together, one per lane of a vector

// One row's dot in the 64 lanes (lane l of accumulator j is lane 16j + l; element d
// goes to lane d % 64, in order of d), the four vectors folded as lanes_reduce
// folds them: (0 + 2) + (1 + 3). Lane l of the result is lanes_reduce's vec[l].
inline __m512 row_vector(const float* q, const float* row, int head_dim) {
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  for (int d = 0; d < head_dim; d += kDecodeLanes) {
    for (int j = 0; j < 4; ++j) {
      acc[j] = _mm512_fmadd_ps(_mm512_loadu_ps(q + d + 16 * j), _mm512_loadu_ps(row + d + 16 * j), acc[j]);
    }
  }
  return _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]));
}

// Sixteen rows' vec (row_vector) reduced at once, each in lanes_reduce's order for
// one 16-wide vector: vec[l] + vec[l + 8], then quad[m] = that[m] + that[m + 4],
// then (quad[0] + quad[2]) + (quad[1] + quad[3]). Each step adds two shuffles of a
// pair of vectors, so that every lane does one row's addition. Returns row r's sum
// in lane r.
inline __m512 rows_reduce(const __m512 vec[kRowBlock]) {
  __m512 halves[8];  // 128-bit quarters: row 2p's vec[l] + vec[l + 8] (two), then row 2p + 1's
  for (int p = 0; p < 8; ++p) {
    halves[p] = _mm512_add_ps(_mm512_shuffle_f32x4(vec[2 * p], vec[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                              _mm512_shuffle_f32x4(vec[2 * p], vec[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  __m512 quads[4];  // quarter k: row 4m + k's quad
  for (int m = 0; m < 4; ++m) {
    quads[m] = _mm512_add_ps(_mm512_shuffle_f32x4(halves[2 * m], halves[2 * m + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(halves[2 * m], halves[2 * m + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  }
  __m512 pairs[2];  // in quarter k: rows 8n + k's quad[0] + quad[2], quad[1] + quad[3], then row 8n + 4 + k's
  for (int n = 0; n < 2; ++n) {
    pairs[n] = _mm512_add_ps(_mm512_shuffle_ps(quads[2 * n], quads[2 * n + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(quads[2 * n], quads[2 * n + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  // Element e of quarter k: row 4e + k.
  const __m512 sums = _mm512_add_ps(_mm512_shuffle_ps(pairs[0], pairs[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_ps(pairs[0], pairs[1], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512i row_order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(row_order, sums);
}

void score_tile_avx512(const float* q, int n_heads, const float* tile, int n, int head_dim, float scale, float* scores,
                       int64_t score_stride, int n_lanes) {
  if (n_lanes != kDecodeLanes || head_dim % kDecodeLanes != 0) {
    return attention_kernels_avx2().score_tile(q, n_heads, tile, n, head_dim, scale, scores, score_stride, n_lanes);
  }
  const __m512 scale16 = _mm512_set1_ps(scale);
  for (int h = 0; h < n_heads; ++h) {
    const float* head_q = q + h * head_dim;
    for (int i = 0; i < n; i += kRowBlock) {
      const int rows = n - i < kRowBlock ? n - i : kRowBlock;
      __m512 vec[kRowBlock];
      for (int r = 0; r < kRowBlock; ++r) {  // past the tile's rows: its last again, not stored
        vec[r] = row_vector(head_q, tile + (i + (r < rows ? r : rows - 1)) * head_dim, head_dim);
      }
      // The sums are floats, as lanes_reduce's are; with no elements past the lanes,
      // the AVX2 kernel's sum in double is this float.
      _mm512_mask_storeu_ps(scores + h * score_stride + i, static_cast<__mmask16>((1u << rows) - 1),
                            _mm512_mul_ps(rows_reduce(vec), scale16));
    }
  }
}

// Sixteen d of one cache row, from element `offset` of v, as floats.
template <KvType kType>
inline __m512 value_chunk(const void* v, int64_t offset) {
  if constexpr (kType == KvType::F16) {
    return _mm512_cvtph_ps(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(v) + offset)));
  } else {
    return _mm512_loadu_ps(static_cast<const float*>(v) + offset);
  }
}

// Sixteen d (from d) of one head's 64 lanes: lane l is the sum, fused and in order,
// of w[i] * v[i] over the visible rows i = l (mod 64), as accumulate_tile leaves
// it over the tiles. Sixteen lanes at a time stay in registers over every row: a
// tile's lanes in memory, 32 KiB a head at head_dim 128, spilled from L1 each tile.
template <KvType kType>
void chunk_lanes(const float* w, const void* v, int64_t row_stride, const int32_t* visible, int n, int d,
                 __m512 lanes[kDecodeLanes]) {
  for (int group = 0; group < kDecodeLanes; group += 16) {
    __m512 acc[16];
    for (int j = 0; j < 16; ++j) acc[j] = _mm512_setzero_ps();
    int base = group;
    for (; base + 16 <= n; base += kDecodeLanes) {
      for (int j = 0; j < 16; ++j) {
        acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(w[base + j]), value_chunk<kType>(v, visible[base + j] * row_stride + d),
                                 acc[j]);
      }
    }
    for (int j = 0; j < 16; ++j) lanes[group + j] = acc[j];
    for (int j = 0; base + j < n; ++j) {  // the last rows, fewer than 16 lanes
      lanes[group + j] = _mm512_fmadd_ps(_mm512_set1_ps(w[base + j]),
                                         value_chunk<kType>(v, visible[base + j] * row_stride + d), lanes[group + j]);
    }
  }
}

// lanes_reduce over 64 lanes for sixteen d at once: (0 + 32) + (16 + 48), then the
// 16-wide vector's halves, then quarters, then (0 + 2) + (1 + 3).
inline __m512 lanes_fold(const __m512 lane[kDecodeLanes]) {
  __m512 vec[16];
  for (int l = 0; l < 16; ++l) {
    vec[l] = _mm512_add_ps(_mm512_add_ps(lane[l], lane[32 + l]), _mm512_add_ps(lane[16 + l], lane[48 + l]));
  }
  for (int l = 0; l < 8; ++l) vec[l] = _mm512_add_ps(vec[l], vec[l + 8]);
  for (int m = 0; m < 4; ++m) vec[m] = _mm512_add_ps(vec[m], vec[m + 4]);
  return _mm512_add_ps(_mm512_add_ps(vec[0], vec[2]), _mm512_add_ps(vec[1], vec[3]));
}

bool attend_values_avx512(const float* weights, int64_t weight_stride, int n_heads, const void* v, KvType kv_type,
                          int64_t row_stride, const int32_t* visible, int n_visible, int head_dim, int n_lanes,
                          float* out) {
  if (n_lanes != kDecodeLanes || head_dim % 16 != 0) return false;
  const auto lanes_of = kv_type == KvType::F16 ? chunk_lanes<KvType::F16> : chunk_lanes<KvType::F32>;
  __m512 lanes[kDecodeLanes];
  for (int h = 0; h < n_heads; ++h) {
    for (int d = 0; d < head_dim; d += 16) {
      lanes_of(weights + h * weight_stride, v, row_stride, visible, n_visible, d, lanes);
      _mm512_storeu_ps(out + h * head_dim + d, lanes_fold(lanes));
    }
  }
  return true;
}

}  // namespace

const AttentionKernels& attention_kernels_avx512() {
  const AttentionKernels& avx2 = attention_kernels_avx2();
  static const AttentionKernels kernels{avx2.gather_f32,    avx2.gather_f16,  score_tile_avx512,
                                        avx2.softmax_numerators, avx2.scale_weights, avx2.accumulate_tile,
                                        avx2.reduce_lanes,   attend_values_avx512};
  return kernels;
}

}  // namespace duet
