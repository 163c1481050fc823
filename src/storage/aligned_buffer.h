// Heap buffer aligned for O_DIRECT I/O (4 KiB). Move-only; owned by whichever thread
// holds it, and it must outlive any I/O submitted on it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <utility>

namespace bsr::storage {

class AlignedBuffer {
 public:
  // Alignment of address and capacity; covers every logical block size Linux uses.
  static constexpr size_t kAlignment = 4096;

  AlignedBuffer() = default;
  // Uninitialised contents; capacity is `size` rounded up to kAlignment. Out of memory
  // throws std::bad_alloc, as operator new does.
  explicit AlignedBuffer(size_t size);
  // A moved-from buffer is empty (size and capacity 0), so pools and Resize() never
  // mistake it for usable memory.
  AlignedBuffer(AlignedBuffer&& o) noexcept
      : data_(std::move(o.data_)),
        size_(std::exchange(o.size_, 0)),
        capacity_(std::exchange(o.capacity_, 0)) {}
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    data_ = std::move(o.data_);
    size_ = std::exchange(o.size_, 0);
    capacity_ = std::exchange(o.capacity_, 0);
    return *this;
  }

  uint8_t* data() { return data_.get(); }
  const uint8_t* data() const { return data_.get(); }
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  // Changes the size within the capacity (for reuse); returns false if it does not fit.
  bool Resize(size_t size) {
    if (size > capacity_) return false;
    size_ = size;
    return true;
  }
  bool empty() const { return size_ == 0; }
  std::span<uint8_t> span() { return {data_.get(), size_}; }
  std::span<const uint8_t> span() const { return {data_.get(), size_}; }

 private:
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t, Free> data_;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

}  // namespace bsr::storage
