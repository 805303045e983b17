#include "runtime/thread_pool.h"

#include <stdexcept>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
static inline void cpu_relax() { _mm_pause(); }
#elif defined(__aarch64__)
static inline void cpu_relax() { asm volatile("yield"); }
#else
static inline void cpu_relax() {}
#endif

namespace duet {

namespace {
// Decode calls parallel_for a few hundred times per token, each lasting tens of
// microseconds; waking a sleeping thread costs about as much, so threads spin a
// while before they sleep.
constexpr int kSpinIterations = 1 << 14;
}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads) {
  if (n_threads < 1) {
    throw std::invalid_argument("thread count must be at least 1, got " + std::to_string(n_threads));
  }
  for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_.store(true);
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

bool ThreadPool::claim(uint64_t generation, int64_t& begin, int64_t& end) {
  const uint64_t tag = (generation << kItemBits) & ~kItemMask;
  uint64_t current = claim_.load(std::memory_order_acquire);
  for (;;) {
    if ((current & ~kItemMask) != tag) return false;  // that job is over
    // The job is live while the counter carries its tag, so its slot is stable.
    const Job& job = jobs_[generation & 1];
    const int64_t n = job.n.load(std::memory_order_relaxed), grain = job.grain.load(std::memory_order_relaxed);
    begin = int64_t(current & kItemMask);
    if (begin >= n) return false;
    end = begin + grain < n ? begin + grain : n;
    if (claim_.compare_exchange_weak(current, tag | uint64_t(end), std::memory_order_acq_rel)) return true;
  }
}

void ThreadPool::run_chunks(uint64_t generation, int index) {
  int64_t begin, end;
  while (claim(generation, begin, end)) {
    const Job& job = jobs_[generation & 1];
    (*job.fn.load(std::memory_order_relaxed))(begin, end, index);
    if (done_items_.fetch_add(end - begin, std::memory_order_acq_rel) + (end - begin) ==
        job.n.load(std::memory_order_relaxed)) {
      std::lock_guard<std::mutex> lock(mutex_);
      finished_.notify_one();
    }
  }
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t generation = generation_.load(std::memory_order_acquire);
    for (int spin = 0; spin < kSpinIterations && generation == seen; ++spin) {
      cpu_relax();
      generation = generation_.load(std::memory_order_acquire);
    }
    if (generation == seen) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return generation_.load() != seen; });
      generation = generation_.load();
    }
    if (stopping_.load()) return;
    seen = generation;
    run_chunks(generation, index);
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  if (workers_.empty() || n <= grain) {
    fn(0, n, 0);
    return;
  }
  const uint64_t generation = generation_.load(std::memory_order_relaxed) + 1;
  Job& job = jobs_[generation & 1];
  job.fn.store(&fn, std::memory_order_relaxed);
  job.n.store(n, std::memory_order_relaxed);
  job.grain.store(grain, std::memory_order_relaxed);
  done_items_.store(0, std::memory_order_relaxed);
  claim_.store((generation << kItemBits) & ~kItemMask, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    generation_.store(generation, std::memory_order_release);
  }
  wake_.notify_all();
  run_chunks(generation, 0);
  for (int spin = 0; spin < kSpinIterations; ++spin) {
    if (done_items_.load(std::memory_order_acquire) == n) return;
    cpu_relax();
  }
  std::unique_lock<std::mutex> lock(mutex_);
  finished_.wait(lock, [&] { return done_items_.load(std::memory_order_acquire) == n; });
}

}  // namespace duet
