// The packed 6-bit scales and mins of Q4_K / Q5_K super-blocks (12 bytes for
// eight sub-blocks), unpacked once per block by every ISA path.
#pragma once
#include <cstdint>
#include <cstring>

#include "quant/formats.h"

// Everything here has internal linkage: this header is compiled into files built
// with different ISA flags, and the linker must not pick one file's copy for all.
namespace duet {
namespace {

struct KQuantScales {
  uint8_t scales[8];  // [sub-block] 6-bit scale
  uint8_t mins[8];    // [sub-block] 6-bit min
};

// Bytes 0-3: scales 0-3 in the low 6 bits, top 2 bits of scales 4-7 in the top 2.
// Bytes 4-7: the same for the mins. Bytes 8-11: low 4 bits of scale 4-7 (low
// nibble) and of min 4-7 (high nibble). Done four lanes at a time in 32-bit words.
inline KQuantScales kquant_scales_unpack(const uint8_t packed[12]) {
  uint32_t word[3];
  std::memcpy(word, packed, 12);
  const uint32_t low6 = 0x3f3f3f3f, low4 = 0x0f0f0f0f, low2 = 0x03030303;
  uint32_t out[4];
  out[0] = word[0] & low6;                                      // scales 0-3
  out[1] = (word[2] & low4) | (((word[0] >> 6) & low2) << 4);   // scales 4-7
  out[2] = word[1] & low6;                                      // mins 0-3
  out[3] = ((word[2] >> 4) & low4) | (((word[1] >> 6) & low2) << 4);  // mins 4-7
  KQuantScales s;
  std::memcpy(s.scales, out, 8);
  std::memcpy(s.mins, out + 2, 8);
  return s;
}

// The mins term of a K-quant dot product: sum over sub-blocks of min * sum(act).
inline int32_t kquant_mins_dot(const KQuantScales& s, const ActQ8_256& a) {
  int32_t summ = 0;
  for (int sub = 0; sub < 8; ++sub) summ += s.mins[sub] * (a.bsums[2 * sub] + a.bsums[2 * sub + 1]);
  return summ;
}

}  // namespace
}  // namespace duet
