// A row's flag in the prompt arrays of matmul and attention: which order its sums
// follow.
#pragma once
#include <cstdint>

namespace duet {

// A decoded row sums in llama.cpp's one-token order, a prompt row in its
// prompt-batch order (so that every path through the engine agrees with llama.cpp
// and with itself). An any-order row is a drafter's: its logits only shape a tree
// that the target checks, so it takes the fastest kernels for its batch, and its
// bits depend on the batch (matmul.h).
enum RowOrder : uint8_t { kRowDecoded = 0, kRowPrompt = 1, kRowAnyOrder = 2 };

}  // namespace duet
