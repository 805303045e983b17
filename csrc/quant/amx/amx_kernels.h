// The AMX path's kernels: the AVX-512 path's, with the K-quant tiles of prompt rows on the
// AMX-INT8 tile multiplier where a weight block meets 16 or more of them. Same bits.
#pragma once
#include "quant/kernels.h"

namespace duet::amx {

TileKernel prompt_tile_q4_k, prompt_tile_q6_k;

}  // namespace duet::amx
