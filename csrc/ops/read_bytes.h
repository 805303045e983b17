// A plain parallel read of a buffer: the memory-bandwidth baseline that matmul's
// GEMV speed is measured against.
#pragma once
#include <cstdint>

#include "runtime/thread_pool.h"

namespace duet {

// XOR of the buffer's 8-byte words (the tail bytes folded in), read by the pool's
// threads in chunks from the shared counter, as matmul splits its rows. prefetch:
// also ask for the bytes kWeightPrefetchBytes ahead, as the decoding kernels do (on
// this Xeon, over the 1.5B's matrices on two threads, the plain loop read 28.5 GB/s
// and this one 39.6: bench_matmul, session 18, in the README).
uint64_t read_bytes_checksum(const uint8_t* data, int64_t n, ThreadPool& pool, bool prefetch);

}  // namespace duet
