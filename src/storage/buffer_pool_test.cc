#include "storage/buffer_pool.h"

#include <gtest/gtest.h>

namespace bsr::storage {
namespace {

TEST(BufferPool, ReusesBySizeClassAndIsAligned) {
  BufferPool pool(1 << 20);
  AlignedBuffer a = pool.Get(5000);
  EXPECT_EQ(a.size(), 5000u);
  EXPECT_EQ(a.capacity(), 8192u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % AlignedBuffer::kAlignment, 0u);
  uint8_t* p = a.data();
  pool.Put(std::move(a));
  EXPECT_EQ(pool.cached_bytes(), 8192u);
  AlignedBuffer b = pool.Get(8000);
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(b.size(), 8000u);
  EXPECT_EQ(pool.cached_bytes(), 0u);
  AlignedBuffer c = pool.Get(100);
  EXPECT_NE(c.data(), p);
  EXPECT_EQ(c.capacity(), 4096u);
}

TEST(BufferPool, CapsCachedBytes) {
  BufferPool pool(64 << 10);
  pool.Put(pool.Get(64 << 10));
  pool.Put(pool.Get(64 << 10));  // same buffer again: fits
  AlignedBuffer extra = pool.Get(32 << 10);
  pool.Put(AlignedBuffer(64 << 10));  // over the cap: freed, not cached
  EXPECT_EQ(pool.cached_bytes(), size_t{64 << 10});
  EXPECT_EQ(pool.Get(0).size(), 0u);
}

// A moved-from buffer is empty: no data, size and capacity 0, Resize() refuses.
TEST(AlignedBuffer, MovedFromIsEmpty) {
  AlignedBuffer a(8192);
  AlignedBuffer b = std::move(a);
  EXPECT_EQ(a.data(), nullptr);  // NOLINT(bugprone-use-after-move): what is tested
  EXPECT_EQ(a.size(), 0u);
  EXPECT_EQ(a.capacity(), 0u);
  EXPECT_FALSE(a.Resize(4096));
  EXPECT_EQ(b.size(), 8192u);
  AlignedBuffer c(4096);
  c = std::move(b);
  EXPECT_EQ(b.capacity(), 0u);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(c.size(), 8192u);
}

// The pool must never hand out a moved-from buffer.
TEST(BufferPool, IgnoresMovedFromBuffer) {
  BufferPool pool(1 << 20);
  AlignedBuffer a = pool.Get(4096);
  AlignedBuffer b = std::move(a);
  pool.Put(std::move(a));  // NOLINT(bugprone-use-after-move): what is tested
  EXPECT_EQ(pool.cached_bytes(), 0u);
  pool.Put(std::move(b));
  AlignedBuffer c = pool.Get(4096);
  EXPECT_NE(c.data(), nullptr);
}

}  // namespace
}  // namespace bsr::storage
