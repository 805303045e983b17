// Token embedding lookup: dequantize the chosen rows of the table.
#include <stdexcept>
#include <string>

#include "ops/layer_ops.h"

namespace duet {

void embedding_lookup(const KernelTable& kt, const void* table, GgmlType type, int64_t n_vocab, int64_t n_embd,
                      const int32_t* ids, int64_t n_ids, float* out) {
  const size_t stride = row_bytes(type, n_embd);
  const auto dequantize_row = kernels_for(kt, type).dequantize_row;
  for (int64_t i = 0; i < n_ids; ++i) {
    if (ids[i] < 0 || ids[i] >= n_vocab) {
      throw std::out_of_range("token id " + std::to_string(ids[i]) + " outside the vocabulary [0, " +
                              std::to_string(n_vocab) + ")");
    }
    dequantize_row(static_cast<const uint8_t*>(table) + ids[i] * stride, out + i * n_embd, n_embd);
  }
}

}  // namespace duet
