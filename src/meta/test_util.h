// Helpers for meta/ unit tests: sparse files on disk and open shortcuts. Test thread only.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "meta/metadata.h"

namespace bsr::meta::testing {

inline void MakeSparseFile(const std::string& path, uint64_t size) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
  ::close(fd);
}

inline std::unique_ptr<MetaIo> OpenFile(const std::string& path) {
  auto io = FileIo::Open(path);
  EXPECT_TRUE(io.ok()) << io.status().ToString();
  return io.ok() ? std::unique_ptr<MetaIo>(std::move(*io)) : nullptr;
}

// Flips one bit of the file at `offset`.
inline void FlipBit(const std::string& path, uint64_t offset, int bit = 0) {
  int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  uint8_t b = 0;
  ASSERT_EQ(::pread(fd, &b, 1, static_cast<off_t>(offset)), 1);
  b ^= static_cast<uint8_t>(1u << bit);
  ASSERT_EQ(::pwrite(fd, &b, 1, static_cast<off_t>(offset)), 1);
  ::close(fd);
}

}  // namespace bsr::meta::testing
