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
  // from a shared counter so that a slow or descheduled thread takes fewer. Returns
  // when every item is done; it never waits for a worker that took no chunk. Each
  // item is handled by exactly one thread, so results cannot depend on the split.
  // Not reentrant, and one caller at a time.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int)>& fn);

 private:
  // The claim counter holds the job's generation in its high bits and the next
  // item in its low bits: a worker that wakes late for a finished job fails to
  // claim from the next one instead of running the wrong function.
  static constexpr int kItemBits = 40;
  static constexpr uint64_t kItemMask = (uint64_t(1) << kItemBits) - 1;
  // Atomic only because a worker two jobs behind may read a slot being refilled;
  // its claim then fails, so what it read is never used.
  struct Job {
    std::atomic<const std::function<void(int64_t, int64_t, int)>*> fn{nullptr};
    std::atomic<int64_t> n{0};
    std::atomic<int64_t> grain{1};
  };

  void worker_loop(int index);
  void run_chunks(uint64_t generation, int index);
  bool claim(uint64_t generation, int64_t& begin, int64_t& end);

  int n_threads_;
  std::vector<std::thread> workers_;
  Job jobs_[2];                            // by generation parity; stable while its job runs
  std::atomic<uint64_t> claim_{0};         // (generation << kItemBits) | next item
  std::atomic<uint64_t> generation_{0};    // the latest job's number; workers wake on a change
  std::atomic<int64_t> done_items_{0};     // items finished in the current job
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::condition_variable wake_;           // workers sleeping for a new job
  std::condition_variable finished_;       // the caller sleeping for the last items
};

}  // namespace duet
