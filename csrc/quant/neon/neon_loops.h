// The ARM vec_dot loops, generic over the 16-byte integer dot product. A block is
// unpacked once to signed bytes, then each activation row runs the same integer
// sums and the same float sequence (one vfmaq per block), whatever n_act is.
#pragma once
#include <arm_neon.h>

#include <cstring>

#include "quant/formats.h"
#include "quant/kernels.h"
#include "quant/kquant_scales.h"

// Everything here has internal linkage: this header is compiled into files built
// with different ISA flags, and the linker must not pick one file's copy for all.
namespace duet::arm {
namespace {

// acc + the sums of a * b over 4-byte groups.
using DotI8 = int32x4_t (*)(int32x4_t acc, int8x16_t a, int8x16_t b);

inline float f16_load(uint16_t h) { return fp16_to_fp32(h); }

// ---- 32-element formats -----------------------------------------------------------

struct Block32I8 {
  int8x16_t q[2];  // elements 0..15, 16..31
};

inline Block32I8 nibbles_signed(const uint8_t qs[16], int8_t offset) {
  const uint8x16_t bytes = vld1q_u8(qs);
  const int8x16_t off = vdupq_n_s8(offset);
  return {{vsubq_s8(vreinterpretq_s8_u8(vandq_u8(bytes, vdupq_n_u8(0x0f))), off),
           vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(bytes, 4)), off)}};
}

inline Block32I8 q4_0_unpack(const BlockQ4_0& x) { return nibbles_signed(x.qs, 8); }

inline Block32I8 q5_0_unpack(const BlockQ5_0& x) {
  uint32_t qh;
  std::memcpy(&qh, x.qh, 4);
  const uint8x16_t bytes = vld1q_u8(x.qs);
  // Byte j of each half gets bit j (or j + 16) of qh, moved to bit 4.
  const uint8x16_t bit_of_byte = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  const uint8x8_t b0 = vdup_n_u8(qh & 0xff), b1 = vdup_n_u8((qh >> 8) & 0xff);
  const uint8x8_t b2 = vdup_n_u8((qh >> 16) & 0xff), b3 = vdup_n_u8(qh >> 24);
  const uint8x16_t fifth_lo = vandq_u8(vtstq_u8(vcombine_u8(b0, b1), bit_of_byte), vdupq_n_u8(16));
  const uint8x16_t fifth_hi = vandq_u8(vtstq_u8(vcombine_u8(b2, b3), bit_of_byte), vdupq_n_u8(16));
  const int8x16_t sixteen = vdupq_n_s8(16);
  return {{vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vandq_u8(bytes, vdupq_n_u8(0x0f)), fifth_lo)), sixteen),
           vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(bytes, 4), fifth_hi)), sixteen)}};
}

inline Block32I8 q8_0_unpack(const BlockQ8_0& x) { return {{vld1q_s8(x.qs), vld1q_s8(x.qs + 16)}}; }

template <typename Block, Block32I8 (*unpack)(const Block&), DotI8 dot>
void block32_vec_dot(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  const Block* blocks = static_cast<const Block*>(w);
  const uint8_t* rows = static_cast<const uint8_t*>(act);
  float32x4_t acc[kMaxActRows];
  for (int r = 0; r < n_act; ++r) acc[r] = vdupq_n_f32(0.0f);
  for (int64_t b = 0; b < n / QK32; ++b) {
    const Block32I8 q = unpack(blocks[b]);
    const float d = f16_load(blocks[b].d);
    for (int r = 0; r < n_act; ++r) {
      const ActQ8_32& a = reinterpret_cast<const ActQ8_32*>(rows + r * act_stride)[b];
      int32x4_t sum = dot(vdupq_n_s32(0), q.q[0], vld1q_s8(a.qs));
      sum = dot(sum, q.q[1], vld1q_s8(a.qs + 16));
      acc[r] = vfmaq_f32(acc[r], vdupq_n_f32(d * a.d), vcvtq_f32_s32(sum));
    }
  }
  for (int r = 0; r < n_act; ++r) out[r] = vaddvq_f32(acc[r]);
}

// ---- K-quants ---------------------------------------------------------------------

struct KBlockI8 {
  int8x16_t q[16];  // element order, 16 per vector
};

inline void q4_k_unpack(const BlockQ4_K& x, KBlockI8& u) {
  for (int c = 0; c < 4; ++c) {
    for (int t = 0; t < 2; ++t) {
      const uint8x16_t bytes = vld1q_u8(x.qs + 32 * c + 16 * t);
      u.q[4 * c + t] = vreinterpretq_s8_u8(vandq_u8(bytes, vdupq_n_u8(0x0f)));
      u.q[4 * c + 2 + t] = vreinterpretq_s8_u8(vshrq_n_u8(bytes, 4));
    }
  }
}

inline void q5_k_unpack(const BlockQ5_K& x, KBlockI8& u) {
  for (int c = 0; c < 4; ++c) {
    const uint8x16_t low_bit = vdupq_n_u8(static_cast<uint8_t>(1 << (2 * c)));
    const uint8x16_t high_bit = vdupq_n_u8(static_cast<uint8_t>(2 << (2 * c)));
    for (int t = 0; t < 2; ++t) {
      const uint8x16_t bytes = vld1q_u8(x.qs + 32 * c + 16 * t);
      const uint8x16_t qh = vld1q_u8(x.qh + 16 * t);
      const uint8x16_t fifth_lo = vandq_u8(vtstq_u8(qh, low_bit), vdupq_n_u8(16));
      const uint8x16_t fifth_hi = vandq_u8(vtstq_u8(qh, high_bit), vdupq_n_u8(16));
      u.q[4 * c + t] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(bytes, vdupq_n_u8(0x0f)), fifth_lo));
      u.q[4 * c + 2 + t] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(bytes, 4), fifth_hi));
    }
  }
}

// Q6_K as signed q - 32: element 32k + l of half h takes a nibble of ql[l] (k even)
// or ql[l + 32] (k odd), low for k < 2, and bits 2k, 2k+1 of qh[l].
inline void q6_k_unpack(const BlockQ6_K& x, KBlockI8& u) {
  const uint8x16_t low4 = vdupq_n_u8(0x0f), low2 = vdupq_n_u8(3);
  const int8x16_t offset = vdupq_n_s8(32);
  for (int h = 0; h < 2; ++h) {
    for (int t = 0; t < 2; ++t) {
      const uint8x16_t l0 = vld1q_u8(x.ql + 64 * h + 16 * t);
      const uint8x16_t l1 = vld1q_u8(x.ql + 64 * h + 32 + 16 * t);
      const uint8x16_t qh = vld1q_u8(x.qh + 32 * h + 16 * t);
      const uint8x16_t v[4] = {
          vorrq_u8(vandq_u8(l0, low4), vshlq_n_u8(vandq_u8(qh, low2), 4)),
          vorrq_u8(vandq_u8(l1, low4), vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 2), low2), 4)),
          vorrq_u8(vshrq_n_u8(l0, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 4), low2), 4)),
          vorrq_u8(vshrq_n_u8(l1, 4), vshlq_n_u8(vshrq_n_u8(qh, 6), 4)),
      };
      for (int k = 0; k < 4; ++k) u.q[8 * h + 2 * k + t] = vsubq_s8(vreinterpretq_s8_u8(v[k]), offset);
    }
  }
}

// int32x4 partial sums of sum_j scale_j * (q * a over sub-block j) for sub-blocks
// of `vectors_per_sub` 16-byte vectors.
template <DotI8 dot, int vectors_per_sub, typename Scale>
inline int32x4_t kblock_dot(const KBlockI8& u, const Scale* scales, const int8_t* a) {
  int32x4_t sumi = vdupq_n_s32(0);
  for (int j = 0; j < 16 / vectors_per_sub; ++j) {
    int32x4_t sub = vdupq_n_s32(0);
    for (int v = 0; v < vectors_per_sub; ++v) {
      const int index = j * vectors_per_sub + v;
      sub = dot(sub, u.q[index], vld1q_s8(a + 16 * index));
    }
    sumi = vmlaq_n_s32(sumi, sub, scales[j]);
  }
  return sumi;
}

// Q4_K / Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins.
template <typename Block, void (*unpack)(const Block&, KBlockI8&), DotI8 dot>
void kquant_mins_vec_dot(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  const Block* blocks = static_cast<const Block*>(w);
  const uint8_t* rows = static_cast<const uint8_t*>(act);
  float32x4_t acc[kMaxActRows];
  float acc_mins[kMaxActRows];
  for (int r = 0; r < n_act; ++r) {
    acc[r] = vdupq_n_f32(0.0f);
    acc_mins[r] = 0.0f;
  }
  KBlockI8 u;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    unpack(blocks[b], u);
    const KQuantScales s = kquant_scales_unpack(blocks[b].scales);
    int32_t scales[8];
    for (int j = 0; j < 8; ++j) scales[j] = s.scales[j];
    const float d = f16_load(blocks[b].d), dmin = f16_load(blocks[b].dmin);
    for (int r = 0; r < n_act; ++r) {
      const ActQ8_256& a = reinterpret_cast<const ActQ8_256*>(rows + r * act_stride)[b];
      const int32x4_t sumi = kblock_dot<dot, 2>(u, scales, a.qs);
      acc[r] = vfmaq_f32(acc[r], vdupq_n_f32(d * a.d), vcvtq_f32_s32(sumi));
      acc_mins[r] = acc_mins[r] - (dmin * a.d) * static_cast<float>(kquant_mins_dot(s, a));
    }
  }
  for (int r = 0; r < n_act; ++r) out[r] = vaddvq_f32(acc[r]) + acc_mins[r];
}

// Q6_K: 16 sub-blocks of 16 with int8 scales.
template <DotI8 dot>
void q6_k_vec_dot(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  const BlockQ6_K* blocks = static_cast<const BlockQ6_K*>(w);
  const uint8_t* rows = static_cast<const uint8_t*>(act);
  float32x4_t acc[kMaxActRows];
  for (int r = 0; r < n_act; ++r) acc[r] = vdupq_n_f32(0.0f);
  KBlockI8 u;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    q6_k_unpack(blocks[b], u);
    int32_t scales[16];
    for (int j = 0; j < 16; ++j) scales[j] = blocks[b].scales[j];
    const float d = f16_load(blocks[b].d);
    for (int r = 0; r < n_act; ++r) {
      const ActQ8_256& a = reinterpret_cast<const ActQ8_256*>(rows + r * act_stride)[b];
      const int32x4_t sumi = kblock_dot<dot, 1>(u, scales, a.qs);
      acc[r] = vfmaq_f32(acc[r], vdupq_n_f32(d * a.d), vcvtq_f32_s32(sumi));
    }
  }
  for (int r = 0; r < n_act; ++r) out[r] = vaddvq_f32(acc[r]);
}

// ---- float weights ----------------------------------------------------------------

inline float32x4_t load4_f32(const float* w) { return vld1q_f32(w); }
inline float32x4_t load4_f16(const uint16_t* w) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(w))); }
inline float32x4_t load4_bf16(const uint16_t* w) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(w), 16)); }
inline float load1_f32(const float* w) { return *w; }
inline float load1_f16(const uint16_t* w) { return fp16_to_fp32(*w); }
inline float load1_bf16(const uint16_t* w) { return bf16_to_fp32(*w); }

template <typename Weight, float32x4_t (*load4)(const Weight*), float (*load1)(const Weight*)>
void float_vec_dot(int64_t n, const void* w, const void* act, size_t act_stride, int n_act, float* out) {
  const Weight* weights = static_cast<const Weight*>(w);
  const uint8_t* rows = static_cast<const uint8_t*>(act);
  for (int r = 0; r < n_act; ++r) {
    const float* x = reinterpret_cast<const float*>(rows + r * act_stride);
    float32x4_t acc = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) acc = vfmaq_f32(acc, load4(weights + i), vld1q_f32(x + i));
    float sum = vaddvq_f32(acc);
    for (; i < n; ++i) sum += load1(weights + i) * x[i];
    out[r] = sum;
  }
}

}  // namespace
}  // namespace duet::arm
