#include "storage/buffer_pool.h"

#include <bit>

namespace bsr::storage {

int BufferPool::ClassOf(size_t capacity) {
  return std::bit_width(capacity) - 1;
}

AlignedBuffer BufferPool::Get(size_t size) {
  if (size == 0) return AlignedBuffer();
  size_t capacity = std::bit_ceil(std::max(size, AlignedBuffer::kAlignment));
  int cls = ClassOf(capacity);
  if (cls < kClasses && !free_[cls].empty()) {
    AlignedBuffer buffer = std::move(free_[cls].back());
    free_[cls].pop_back();
    cached_ -= buffer.capacity();
    buffer.Resize(size);
    return buffer;
  }
  AlignedBuffer buffer(capacity);
  buffer.Resize(size);
  return buffer;
}

void BufferPool::Put(AlignedBuffer buffer) {
  size_t capacity = buffer.capacity();
  if (capacity == 0 || !std::has_single_bit(capacity)) return;  // empty or moved-from
  int cls = ClassOf(capacity);
  if (cls >= kClasses || cached_ + capacity > max_cached_) return;
  cached_ += capacity;
  free_[cls].push_back(std::move(buffer));
}

}  // namespace bsr::storage
