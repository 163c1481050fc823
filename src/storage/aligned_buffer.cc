#include "storage/aligned_buffer.h"

#include <malloc.h>

#include <new>

namespace bsr::storage {
namespace {

// I/O buffers are large (up to a few MiB) and short-lived, and many are in flight at
// once (replication, resync). Left to glibc's defaults, each one above the mmap
// threshold is a fresh mmap whose pages fault in zeroed and are unmapped on free,
// and freed heap tops are trimmed back to the kernel: a resync then spends more time
// in page faults than in copying data. Serving them from the heap and keeping freed
// memory lets later buffers reuse warm pages; memory in flight stays bounded by the
// callers (max-buffers, the NBD in-flight caps).
constexpr int kMmapThreshold = 64 << 20;
constexpr int kTrimThreshold = 256 << 20;

[[maybe_unused]] const bool kAllocatorTuned = [] {
  mallopt(M_MMAP_THRESHOLD, kMmapThreshold);
  mallopt(M_TRIM_THRESHOLD, kTrimThreshold);
  return true;
}();

}  // namespace

AlignedBuffer::AlignedBuffer(size_t size) : size_(size) {
  if (size == 0) return;
  size_t capacity = (size + kAlignment - 1) / kAlignment * kAlignment;
  void* p = std::aligned_alloc(kAlignment, capacity);
  if (p == nullptr) throw std::bad_alloc();
  data_.reset(static_cast<uint8_t*>(p));
  capacity_ = capacity;
}

}  // namespace bsr::storage
