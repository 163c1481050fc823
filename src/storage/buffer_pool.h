// BufferPool: recycles AlignedBuffers by power-of-two size class so large request
// buffers are not mmap'ed, faulted in and unmapped per request. Owned by one thread.
#pragma once

#include <array>
#include <cstddef>
#include <vector>

#include "storage/aligned_buffer.h"

namespace bsr::storage {

class BufferPool {
 public:
  // Keeps at most `max_cached_bytes` of idle buffers; beyond that they are freed.
  explicit BufferPool(size_t max_cached_bytes = 64 << 20) : max_cached_(max_cached_bytes) {}

  // A buffer of exactly `size` bytes (capacity: the next power of two >= 4 KiB).
  AlignedBuffer Get(size_t size);
  // Returns a buffer for reuse.
  void Put(AlignedBuffer buffer);

  size_t cached_bytes() const { return cached_; }

 private:
  static constexpr int kClasses = 48;
  static int ClassOf(size_t capacity);

  size_t max_cached_;
  size_t cached_ = 0;
  std::array<std::vector<AlignedBuffer>, kClasses> free_;
};

}  // namespace bsr::storage
