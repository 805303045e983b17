// The baseline AArch64 16-byte integer dot product: widening multiplies, then
// pairwise add-accumulate into int32 (what vdotq_s32 does in one instruction).
#pragma once
#include <arm_neon.h>

namespace duet::neon {
namespace {

inline int32x4_t dot_i8(int32x4_t acc, int8x16_t a, int8x16_t b) {
  const int16x8_t low = vmull_s8(vget_low_s8(a), vget_low_s8(b));
  const int16x8_t high = vmull_high_s8(a, b);
  return vpadalq_s16(vpadalq_s16(acc, low), high);
}

}  // namespace
}  // namespace duet::neon
