#include "storage/page_cache_file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <random>
#include <vector>

#include "common/temp_dir.h"
#include "storage/backing_device.h"

namespace bsr::storage {
namespace {

constexpr size_t kSize = 1 << 20;

class PageCacheFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (dir_ / "disk.img").string();
    data_.resize(kSize);
    std::mt19937 rng(7);
    for (auto& b : data_) b = static_cast<uint8_t>(rng());
    UniqueFd fd(::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd.valid());
    ASSERT_EQ(::pwrite(fd.get(), data_.data(), kSize, 0), static_cast<ssize_t>(kSize));
    ASSERT_EQ(::fsync(fd.get()), 0);
    fd_ = std::move(fd);
  }

  // Reads exactly n bytes from a socket.
  static std::vector<uint8_t> RecvAll(int sock, size_t n) {
    std::vector<uint8_t> out(n);
    size_t got = 0;
    while (got < n) {
      ssize_t r = ::recv(sock, out.data() + got, n - got, 0);
      if (r <= 0) break;
      got += static_cast<size_t>(r);
    }
    out.resize(got);
    return out;
  }

  TempDir dir_;
  std::string path_;
  std::vector<uint8_t> data_;
  UniqueFd fd_;
};

TEST_F(PageCacheFileTest, CachedFollowsThePageCache) {
  if (!PageCacheFile::KernelHasCachestat()) {
    GTEST_SKIP() << "this kernel has no cachestat(2) (Linux 6.5+): Cached() is always false";
  }
  auto file = PageCacheFile::Dup(fd_.get());
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  // Just written: in the page cache.
  EXPECT_TRUE((*file)->Cached(0, kSize));
  EXPECT_TRUE((*file)->Cached(4096, 8192));
  // Written back and dropped: a send would wait for the disk.
  ASSERT_EQ(::posix_fadvise(fd_.get(), 0, 0, POSIX_FADV_DONTNEED), 0);
  EXPECT_FALSE((*file)->Cached(0, kSize));
  // Read back one page: it is cached again (read-ahead may add its neighbours).
  std::vector<uint8_t> page(4096);
  ASSERT_EQ(::pread(fd_.get(), page.data(), page.size(), 65536), 4096);
  EXPECT_TRUE((*file)->Cached(65536, 4096));
}

TEST_F(PageCacheFileTest, SendsTheRangeAndStopsAtTheEnd) {
  auto file = PageCacheFile::Dup(fd_.get());
  ASSERT_TRUE(file.ok());
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd tx(sv[0]), rx(sv[1]);
  // The descriptor is a duplicate: closing the original does not end the sends.
  fd_.Reset();
  ssize_t n = (*file)->SendTo(tx.get(), 12345, 20000);
  ASSERT_GT(n, 0);
  auto got = RecvAll(rx.get(), static_cast<size_t>(n));
  ASSERT_EQ(got.size(), static_cast<size_t>(n));
  EXPECT_TRUE(std::equal(got.begin(), got.end(), data_.begin() + 12345));
  // At the end of the file: 0, which the socket treats as a failed file.
  EXPECT_EQ((*file)->SendTo(tx.get(), kSize, 4096), 0);
  EXPECT_EQ((*file)->SendTo(-1, 0, 4096), -EBADF);
  EXPECT_FALSE((*file)->failed());
  (*file)->MarkFailed();
  EXPECT_TRUE((*file)->failed());
}

TEST_F(PageCacheFileTest, OnlyForDevicesWhoseIoUsesThePageCache) {
  asio::io_context io;
  BackingOptions buffered;
  buffered.cache = CacheMode::kBuffered;
  auto dev = BackingDevice::Open(io, path_, buffered);
  ASSERT_TRUE(dev.ok()) << dev.status().ToString();
  auto file = (*dev)->page_cache_file();
  ASSERT_NE(file, nullptr);
  EXPECT_EQ((*dev)->page_cache_file(), file);  // one per device
  // Once a send failed on it, the device hands out no file (reads take over).
  file->MarkFailed();
  EXPECT_EQ((*dev)->page_cache_file(), nullptr);

  BackingOptions direct;
  direct.cache = CacheMode::kDirect;
  auto ddev = BackingDevice::Open(io, path_, direct);
  ASSERT_TRUE(ddev.ok()) << ddev.status().ToString();
  if ((*ddev)->direct()) {
    EXPECT_EQ((*ddev)->page_cache_file(), nullptr);
  }
}

}  // namespace
}  // namespace bsr::storage
