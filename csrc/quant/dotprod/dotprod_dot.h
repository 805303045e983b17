// The ARMv8.2 dot-product extension: four int8 products summed per int32 lane.
#pragma once
#include <arm_neon.h>

namespace duet::dotprod {
namespace {

inline int32x4_t dot_i8(int32x4_t acc, int8x16_t a, int8x16_t b) { return vdotq_s32(acc, a, b); }

}  // namespace
}  // namespace duet::dotprod
