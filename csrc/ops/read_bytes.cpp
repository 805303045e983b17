#include "ops/read_bytes.h"

#include <atomic>
#include <cstring>

#include "quant/kernels.h"

namespace duet {

namespace {
// About what one 32-row chunk of a 1536-column Q4_K matmul reads.
constexpr int64_t kBytesPerChunk = 32 * 1024;
}  // namespace

uint64_t read_bytes_checksum(const uint8_t* data, int64_t n, ThreadPool& pool, bool prefetch) {
  std::atomic<uint64_t> total{0};
  const int64_t n_chunks = (n + kBytesPerChunk - 1) / kBytesPerChunk;
  pool.parallel_for(n_chunks, 1, [&](int64_t begin, int64_t end, int) {
    const int64_t first = begin * kBytesPerChunk;
    const int64_t last = end * kBytesPerChunk < n ? end * kBytesPerChunk : n;
    uint64_t lanes[4] = {0, 0, 0, 0};  // independent chains so the loads overlap
    int64_t i = first;
    for (; i + 32 <= last; i += 32) {
      if (prefetch) __builtin_prefetch(data + i + kWeightPrefetchBytes, 0, 2);  // into L2, as the kernels ask
      uint64_t words[4];
      std::memcpy(words, data + i, 32);
      for (int k = 0; k < 4; ++k) lanes[k] ^= words[k];
    }
    uint64_t local = lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3];
    for (; i < last; ++i) local ^= static_cast<uint64_t>(data[i]) << (8 * (i % 8));
    total.fetch_xor(local, std::memory_order_relaxed);
  });
  return total.load();
}

}  // namespace duet
