// A fixed set of worker threads that split a range of work items. The calling
// thread is worker 0, so a pool of n threads starts n - 1.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace duet {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);  // throws std::invalid_argument if n_threads < 1
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(begin, end, thread_index) over [0, n) in chunks of `grain` items, taken
  // from a shared counter so that a slow thread takes fewer. Returns when all are
  // done. Each item is handled by exactly one thread, so results cannot depend on
  // the split. Not reentrant: fn must not call parallel_for on the same pool.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int)>& fn);

 private:
  void worker_loop(int index);
  void run_chunks(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  uint64_t generation_ = 0;       // bumped once per parallel_for
  std::atomic<int> active_workers_{0};  // helpers still inside the current job
  bool stopping_ = false;
  // The current job.
  const std::function<void(int64_t, int64_t, int)>* job_ = nullptr;
  int64_t job_n_ = 0;
  int64_t job_grain_ = 1;
  std::atomic<int64_t> next_item_{0};
};

}  // namespace duet
