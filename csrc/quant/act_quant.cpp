// Activation quantizers (scalar reference). Every ISA path must reproduce these
// bytes exactly, so the rounding is spelled out: RNE via nearbyint in the default
// rounding mode, values scaled by 127 / amax for Q8_32 as llama.cpp's x86 quantizer does.
#include <cmath>
#include <cstring>

#include "quant/formats.h"
#include "quant/scalar_kernels.h"

namespace duet::scalar {

void quantize_q8_32(const float* x, void* dst, int64_t n) {
  ActQ8_32* blocks = static_cast<ActQ8_32*>(dst);
  for (int64_t b = 0; b < n / QK32; ++b, x += QK32) {
    float amax = 0.0f;
    for (int j = 0; j < QK32; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    // As llama.cpp's x86 quantizer: d stored in f16, the values scaled by 127 / amax
    // (not by 1 / d): scaling by the rounded d gave products 4e-4 (relative) away from
    // its, enough to flip near-tied greedy tokens.
    blocks[b].d = fp16_to_fp32(fp32_to_fp16(amax / 127.0f));
    const float id = amax == 0.0f ? 0.0f : 127.0f / amax;
    for (int j = 0; j < QK32; ++j) {
      float q = std::nearbyint(x[j] * id);
      q = std::fmin(127.0f, std::fmax(-127.0f, q));
      blocks[b].qs[j] = static_cast<int8_t>(q);
    }
  }
}

void quantize_q8_256(const float* x, void* dst, int64_t n) {
  ActQ8_256* blocks = static_cast<ActQ8_256*>(dst);
  for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
    ActQ8_256& block = blocks[b];
    // As ggml's Q8_K: scale by the signed value of largest magnitude, so d may be negative.
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK_K; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (amax == 0.0f) {
      std::memset(&block, 0, sizeof(block));
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < QK_K; ++j) {
      block.qs[j] = static_cast<int8_t>(std::fmin(127.0f, std::nearbyint(iscale * x[j])));
    }
    for (int g = 0; g < QK_K / 16; ++g) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += block.qs[16 * g + j];
      block.bsums[g] = static_cast<int16_t>(sum);
    }
    block.d = 1.0f / iscale;
  }
}

}  // namespace duet::scalar
