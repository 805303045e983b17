// Reads byte ranges of a model file into reusable aligned buffers on a background
// IO thread, bypassing the page cache, so that streamed weights cost only their
// buffers against the memory budget and a warm cache cannot fake a speed.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace duet {

struct ReadStats {
  uint64_t bytes_read = 0;   // bytes requested by callers (not counting alignment slack)
  double seconds_busy = 0;   // time the IO thread spent inside read calls
  bool direct_io = false;    // O_DIRECT in use (else pread + fadvise DONTNEED)
};

class FileReader {
 public:
  // Opens `path` read-only (never for writing) with n_buffers buffers of
  // buffer_bytes each. Throws std::runtime_error naming the file on failure.
  FileReader(const std::string& path, int n_buffers, size_t buffer_bytes, bool direct_io = true);
  ~FileReader();
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;

  // Queues a read of [offset, offset + size) into a free buffer; returns its ticket.
  // Blocks while every buffer is taken. Throws std::invalid_argument if the range
  // does not fit a buffer or passes the end of the file.
  int64_t submit(uint64_t offset, size_t size);
  // Waits for a ticket; returns the address of its first byte (valid until
  // release). Rethrows the read's error (std::runtime_error) if it failed.
  const uint8_t* wait(int64_t ticket);
  // Gives the ticket's buffer back for reuse.
  void release(int64_t ticket);

  uint64_t file_size() const { return file_size_; }
  size_t buffer_bytes() const { return buffer_bytes_; }
  int n_buffers() const { return int(buffers_.size()); }
  size_t resident_bytes() const { return buffers_.size() * (buffer_bytes_ + 2 * kAlign); }
  ReadStats stats();

 private:
  static constexpr size_t kAlign = 4096;  // O_DIRECT offset, size and address alignment
  struct Buffer {
    uint8_t* memory = nullptr;   // kAlign-aligned, buffer_bytes + 2 * kAlign bytes
    int64_t ticket = -1;         // -1 when free
    bool done = false;
    const uint8_t* start = nullptr;  // first requested byte inside memory
    std::exception_ptr error;
  };
  struct Request {
    int buffer;
    uint64_t offset;
    size_t size;
  };

  void io_loop();
  void read_range(Buffer& buffer, uint64_t offset, size_t size);
  Buffer& buffer_of(int64_t ticket);  // caller holds mutex_

  std::string path_;
  int fd_ = -1;
  bool direct_ = false;
  uint64_t file_size_ = 0;
  size_t buffer_bytes_;
  std::vector<Buffer> buffers_;
  std::deque<Request> queue_;
  std::mutex mutex_;
  std::condition_variable changed_;
  int64_t next_ticket_ = 0;
  bool stopping_ = false;
  ReadStats stats_;
  std::thread io_thread_;
};

}  // namespace duet
