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
// microseconds; waking a sleeping thread costs about as much, so helpers spin a
// while before they sleep.
constexpr int kSpinIterations = 1 << 16;
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
    stopping_ = true;
    ++generation_;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run_chunks(int index) {
  for (;;) {
    int64_t begin = next_item_.fetch_add(job_grain_, std::memory_order_relaxed);
    if (begin >= job_n_) return;
    int64_t end = begin + job_grain_ < job_n_ ? begin + job_grain_ : job_n_;
    (*job_)(begin, end, index);
  }
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t gen;
    for (int spin = 0; spin < kSpinIterations; ++spin) {
      if (__atomic_load_n(&generation_, __ATOMIC_ACQUIRE) != seen) break;
      cpu_relax();
    }
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return generation_ != seen; });
      gen = generation_;
      if (stopping_) return;
    }
    seen = gen;
    run_chunks(index);
    if (active_workers_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);
      done_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  if (workers_.empty() || n <= grain) {
    fn(0, n, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    job_n_ = n;
    job_grain_ = grain;
    next_item_.store(0, std::memory_order_relaxed);
    active_workers_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    __atomic_store_n(&generation_, generation_ + 1, __ATOMIC_RELEASE);
  }
  wake_.notify_all();
  run_chunks(0);
  for (int spin = 0; spin < kSpinIterations; ++spin) {
    if (active_workers_.load(std::memory_order_acquire) == 0) return;
    cpu_relax();
  }
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return active_workers_.load(std::memory_order_acquire) == 0; });
}

}  // namespace duet
