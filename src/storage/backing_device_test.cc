#include "storage/backing_device.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <vector>

#include "common/temp_dir.h"

namespace bsr::storage {
namespace {

constexpr uint64_t kSize = 4 << 20;

std::vector<uint8_t> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

std::vector<uint8_t> ReadFileRange(const std::string& path, uint64_t offset, size_t n) {
  std::vector<uint8_t> out(n);
  int fd = ::open(path.c_str(), O_RDONLY);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::pread(fd, out.data(), n, static_cast<off_t>(offset)), static_cast<ssize_t>(n));
  ::close(fd);
  return out;
}

class BackingDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (dir_ / "disk.img").string();
    auto data = RandomBytes(kSize, 1);
    std::ofstream(path_, std::ios::binary).write(reinterpret_cast<const char*>(data.data()), kSize);
    original_ = data;
  }

  // The tests below exercise the O_DIRECT path unless they ask for another mode.
  static BackingOptions Direct() {
    BackingOptions options;
    options.cache = CacheMode::kDirect;
    return options;
  }

  std::unique_ptr<BackingDevice> OpenDevice(BackingOptions options = Direct()) {
    auto dev = BackingDevice::Open(io_, path_, options);
    EXPECT_TRUE(dev.ok()) << dev.status().ToString();
    return dev.ok() ? std::move(dev).value() : nullptr;
  }

  // Runs the loop until `pending` callbacks have fired.
  void RunUntil(const int& pending) {
    io_.restart();
    while (pending > 0) {
      ASSERT_GT(io_.run_one_for(std::chrono::seconds(10)), 0u) << "I/O did not complete";
    }
  }

  TempDir dir_;
  std::string path_;
  std::vector<uint8_t> original_;
  asio::io_context io_;
};

TEST_F(BackingDeviceTest, ReportsGeometryAndUsesDirectIo) {
  auto dev = OpenDevice();
  ASSERT_NE(dev, nullptr);
  EXPECT_EQ(dev->size(), kSize);
  EXPECT_FALSE(dev->is_block_device());
  EXPECT_EQ(dev->logical_block_size() % 512, 0u);
  EXPECT_TRUE(dev->direct());  // /tmp here is a local file system that allows it
}

TEST_F(BackingDeviceTest, WriteThenReadAlignedAndUnaligned) {
  auto dev = OpenDevice();
  ASSERT_NE(dev, nullptr);
  AlignedBuffer aligned(64 * 1024);
  auto payload = RandomBytes(aligned.size(), 2);
  std::memcpy(aligned.data(), payload.data(), payload.size());
  auto odd = RandomBytes(777, 3);

  int pending = 2;
  IoResult r1, r2;
  dev->Write(8192, aligned.span(), /*fua=*/true, [&](IoResult r) { r1 = r, --pending; });
  dev->Write(100001, odd, false, [&](IoResult r) { r2 = r, --pending; });
  RunUntil(pending);
  ASSERT_TRUE(r1.ok()) << r1.status.ToString();
  ASSERT_TRUE(r2.ok()) << r2.status.ToString();
  EXPECT_EQ(ReadFileRange(path_, 8192, payload.size()), payload);
  EXPECT_EQ(ReadFileRange(path_, 100001, odd.size()), odd);

  AlignedBuffer back(64 * 1024);
  std::vector<uint8_t> back_odd(777);
  pending = 2;
  dev->Read(8192, back.span(), [&](IoResult r) { r1 = r, --pending; });
  dev->Read(100001, back_odd, [&](IoResult r) { r2 = r, --pending; });
  RunUntil(pending);
  ASSERT_TRUE(r1.ok() && r2.ok());
  EXPECT_EQ(0, std::memcmp(back.data(), payload.data(), payload.size()));
  EXPECT_EQ(back_odd, odd);
}

TEST_F(BackingDeviceTest, OutOfRangeFailsWithEinvalAndOffset) {
  auto dev = OpenDevice();
  ASSERT_NE(dev, nullptr);
  AlignedBuffer buf(4096);
  IoResult r;
  int pending = 1;
  dev->Read(kSize - 512, buf.span(), [&](IoResult x) { r = x, --pending; });
  RunUntil(pending);
  EXPECT_EQ(r.err, EINVAL);
  EXPECT_NE(r.status.message().find(std::to_string(kSize - 512)), std::string::npos)
      << r.status.message();
  // Nothing was written past the end.
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kSize);
}

TEST_F(BackingDeviceTest, FlushDiscardAndWriteZeroes) {
  auto dev = OpenDevice();
  ASSERT_NE(dev, nullptr);
  IoResult a, b, c;
  int pending = 3;
  dev->Discard(0, 65536, [&](IoResult r) { a = r, --pending; });
  dev->WriteZeroes(1 << 20, 12345, /*may_unmap=*/false, [&](IoResult r) { b = r, --pending; });
  dev->WriteZeroes(2 << 20, 1 << 20, /*may_unmap=*/true, [&](IoResult r) { c = r, --pending; });
  RunUntil(pending);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok())
      << a.status.ToString() << b.status.ToString() << c.status.ToString();
  EXPECT_EQ(ReadFileRange(path_, 0, 65536), std::vector<uint8_t>(65536, 0));
  EXPECT_EQ(ReadFileRange(path_, 1 << 20, 12345), std::vector<uint8_t>(12345, 0));
  EXPECT_EQ(ReadFileRange(path_, 2 << 20, 1 << 20), std::vector<uint8_t>(1 << 20, 0));
  // The byte after the zeroed range is untouched.
  EXPECT_EQ(ReadFileRange(path_, (1 << 20) + 12345, 1)[0], original_[(1 << 20) + 12345]);
  pending = 1;
  dev->Flush([&](IoResult r) { a = r, --pending; });
  RunUntil(pending);
  EXPECT_TRUE(a.ok()) << a.status.ToString();
}

TEST_F(BackingDeviceTest, QueueDepthBoundsInflightAndAllComplete) {
  BackingOptions options;
  options.queue_depth = 4;
  options.inline_max_bytes = 0;  // every write through io_uring
  auto dev = OpenDevice(options);
  ASSERT_NE(dev, nullptr);
  constexpr int kOps = 64;
  std::vector<AlignedBuffer> bufs;
  for (int i = 0; i < kOps; ++i) {
    bufs.emplace_back(4096);
    std::memset(bufs.back().data(), i + 1, 4096);
  }
  int pending = kOps;
  int failures = 0;
  size_t max_inflight = 0;
  EXPECT_FALSE(dev->oldest_pending_since().has_value());
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kOps; ++i) {
    dev->Write(uint64_t(i) * 4096, bufs[i].span(), false, [&](IoResult r) {
      if (!r.ok()) ++failures;
      --pending;
    });
    max_inflight = std::max(max_inflight, dev->inflight());
  }
  EXPECT_LE(max_inflight, 4u);
  EXPECT_EQ(dev->queued(), size_t(kOps - 4));
  // The disk-timeout watchdog's view: the first write is the oldest pending one.
  auto since = dev->oldest_pending_since();
  ASSERT_TRUE(since.has_value());
  EXPECT_GE(*since, t0);
  EXPECT_LE(*since, std::chrono::steady_clock::now());
  RunUntil(pending);
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(dev->inflight(), 0u);
  EXPECT_FALSE(dev->oldest_pending_since().has_value());
  for (int i = 0; i < kOps; ++i) {
    EXPECT_EQ(ReadFileRange(path_, uint64_t(i) * 4096, 1)[0], i + 1);
  }
}

TEST_F(BackingDeviceTest, ReadOnlyRefusesWrites) {
  BackingOptions options;
  options.read_only = true;
  auto dev = OpenDevice(options);
  ASSERT_NE(dev, nullptr);
  std::vector<uint8_t> data(512, 7);
  IoResult r;
  int pending = 1;
  dev->Write(0, data, false, [&](IoResult x) { r = x, --pending; });
  RunUntil(pending);
  EXPECT_EQ(r.err, EROFS);
  EXPECT_EQ(ReadFileRange(path_, 0, 512),
            std::vector<uint8_t>(original_.begin(), original_.begin() + 512));
}

TEST_F(BackingDeviceTest, OpenErrorsNameThePath) {
  auto missing = BackingDevice::Open(io_, (dir_ / "nope").string(), {});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope"), std::string::npos);
  auto directory = BackingDevice::Open(io_, dir_.path().string(), {});
  ASSERT_FALSE(directory.ok());
}

TEST_F(BackingDeviceTest, CacheModeNamesRoundTrip) {
  for (CacheMode m : {CacheMode::kAuto, CacheMode::kDirect, CacheMode::kBuffered}) {
    auto parsed = ParseCacheMode(CacheModeName(m));
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(*parsed, m);
  }
  EXPECT_FALSE(ParseCacheMode("Direct").has_value());
  EXPECT_FALSE(ParseCacheMode("").has_value());
}

TEST_F(BackingDeviceTest, AutoModeBuffersRegularFiles) {
  auto dev = OpenDevice(BackingOptions{});
  ASSERT_NE(dev, nullptr);
  EXPECT_FALSE(dev->direct());
  // Aligned I/O in buffered mode: written, flushed, and read back through the device
  // and straight from the file.
  AlignedBuffer buf(8192);
  auto payload = RandomBytes(buf.size(), 11);
  std::memcpy(buf.data(), payload.data(), payload.size());
  IoResult w, f, r;
  int pending = 1;
  dev->Write(4096, buf.span(), false, [&](IoResult x) { w = x, --pending; });
  RunUntil(pending);
  ASSERT_TRUE(w.ok()) << w.status.ToString();
  pending = 1;
  dev->Flush([&](IoResult x) { f = x, --pending; });
  RunUntil(pending);
  ASSERT_TRUE(f.ok()) << f.status.ToString();
  AlignedBuffer back(8192);
  pending = 1;
  dev->Read(4096, back.span(), [&](IoResult x) { r = x, --pending; });
  RunUntil(pending);
  ASSERT_TRUE(r.ok()) << r.status.ToString();
  EXPECT_EQ(std::vector<uint8_t>(back.data(), back.data() + back.size()), payload);
  EXPECT_EQ(ReadFileRange(path_, 4096, payload.size()), payload);
}

TEST_F(BackingDeviceTest, EnvironmentOverridesAutoMode) {
  ::setenv("BSR_BACKING_CACHE", "direct", 1);
  auto direct = BackingDevice::Open(io_, path_, {});
  ::setenv("BSR_BACKING_CACHE", "sideways", 1);
  auto bad = BackingDevice::Open(io_, path_, {});
  BackingOptions buffered;
  buffered.cache = CacheMode::kBuffered;  // an explicit mode wins over the environment
  ::setenv("BSR_BACKING_CACHE", "direct", 1);
  auto explicit_mode = BackingDevice::Open(io_, path_, buffered);
  ::unsetenv("BSR_BACKING_CACHE");
  ASSERT_TRUE(direct.ok()) << direct.status().ToString();
  EXPECT_TRUE((*direct)->direct());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("BSR_BACKING_CACHE=sideways"), std::string::npos)
      << bad.status().message();
  ASSERT_TRUE(explicit_mode.ok());
  EXPECT_FALSE((*explicit_mode)->direct());
}

TEST_F(BackingDeviceTest, BufferedModeWorksToo) {
  BackingOptions options;
  options.cache = CacheMode::kBuffered;
  auto dev = OpenDevice(options);
  ASSERT_NE(dev, nullptr);
  EXPECT_FALSE(dev->direct());
  std::vector<uint8_t> data = RandomBytes(5000, 9);
  IoResult r;
  int pending = 1;
  dev->Write(3, data, true, [&](IoResult x) { r = x, --pending; });
  RunUntil(pending);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(ReadFileRange(path_, 3, data.size()), data);
}

// Small page-cache writes and cached reads are done inline, yet their callbacks still
// run from the io_context, never inside the call.
TEST_F(BackingDeviceTest, SmallBufferedIoRunsInlineAndCompletesLater) {
  BackingOptions options;
  options.cache = CacheMode::kBuffered;
  options.inline_slow = std::chrono::seconds(10);  // a loaded machine must not trip it
  auto dev = OpenDevice(options);
  ASSERT_NE(dev, nullptr);
  auto data = RandomBytes(4096, 21);
  auto big = RandomBytes(options.inline_max_bytes + 4096, 22);
  IoResult small_r, big_r;
  int pending = 2;
  dev->Write(12288, data, false, [&](IoResult x) { small_r = x, --pending; });
  EXPECT_EQ(pending, 2);  // not run inside Write
  EXPECT_EQ(dev->inflight(), 0u);
  EXPECT_EQ(ReadFileRange(path_, 12288, data.size()), data);  // already in the file
  dev->Write(1 << 20, big, false, [&](IoResult x) { big_r = x, --pending; });
  EXPECT_EQ(dev->inflight(), 1u);  // above the cap: io_uring
  RunUntil(pending);
  ASSERT_TRUE(small_r.ok() && big_r.ok()) << small_r.status.ToString() << big_r.status.ToString();
  EXPECT_EQ(dev->stats().inline_writes, 1u);
  EXPECT_EQ(dev->stats().slow_inline_writes, 0u);
  EXPECT_EQ(ReadFileRange(path_, 1 << 20, big.size()), big);

  // A FUA write always goes through io_uring (RWF_DSYNC would wait for the device).
  pending = 1;
  dev->Write(0, data, true, [&](IoResult x) { small_r = x, --pending; });
  EXPECT_EQ(dev->inflight(), 1u);
  RunUntil(pending);
  ASSERT_TRUE(small_r.ok());
  EXPECT_EQ(dev->stats().inline_writes, 1u);

  // The written range is cached: read back inline.
  std::vector<uint8_t> back(4096);
  pending = 1;
  dev->Read(12288, back, [&](IoResult x) { small_r = x, --pending; });
  EXPECT_EQ(pending, 1);
  RunUntil(pending);
  ASSERT_TRUE(small_r.ok()) << small_r.status.ToString();
  EXPECT_EQ(back, data);
  EXPECT_EQ(dev->stats().inline_reads, 1u);
}

// Pages not in the page cache are read through io_uring (RWF_NOWAIT refuses them).
TEST_F(BackingDeviceTest, UncachedReadFallsBackToTheRing) {
  BackingOptions options;
  options.cache = CacheMode::kBuffered;
  auto dev = OpenDevice(options);
  ASSERT_NE(dev, nullptr);
  int fd = ::open(path_.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ::fdatasync(fd);
  ASSERT_EQ(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
  ::close(fd);
  std::vector<uint8_t> back(8192);
  IoResult r;
  int pending = 1;
  dev->Read(kSize - 8192, back, [&](IoResult x) { r = x, --pending; });
  RunUntil(pending);
  ASSERT_TRUE(r.ok()) << r.status.ToString();
  EXPECT_EQ(back, std::vector<uint8_t>(original_.end() - 8192, original_.end()));
  // Some file systems (tmpfs) have no cache to drop: only then was the read inline.
  EXPECT_EQ(dev->stats().inline_reads + dev->stats().ring_ops, 1u);
}

// The guard: an inline write slower than inline_slow pauses inline writes (doubling
// the pause while it repeats); the writes in the pause go through io_uring.
TEST_F(BackingDeviceTest, SlowInlineWritePausesInlineWrites) {
  BackingOptions options;
  options.cache = CacheMode::kBuffered;
  options.inline_slow = std::chrono::nanoseconds(0);  // every inline write counts as slow
  options.inline_backoff = std::chrono::seconds(60);
  auto dev = OpenDevice(options);
  ASSERT_NE(dev, nullptr);
  auto data = RandomBytes(4096, 31);
  auto before = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) {
    IoResult r;
    int pending = 1;
    dev->Write(uint64_t(i) * 4096, data, false, [&](IoResult x) { r = x, --pending; });
    // The first ran inline (and was slow); the others went through the ring.
    EXPECT_EQ(dev->inflight(), i == 0 ? 0u : 1u) << "write " << i;
    RunUntil(pending);
    EXPECT_TRUE(r.ok()) << r.status.ToString();
  }
  EXPECT_EQ(dev->stats().inline_writes, 1u);
  EXPECT_EQ(dev->stats().slow_inline_writes, 1u);
  EXPECT_GE(dev->inline_paused_until(), before + std::chrono::seconds(59));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(ReadFileRange(path_, uint64_t(i) * 4096, 4096), data);
}

// Writes in flight together go inline too, except one that overlaps a ring write
// still in flight: it queues behind it, so the later data wins on disk.
TEST_F(BackingDeviceTest, OverlappingWriteWaitsBehindRingWrite) {
  BackingOptions options;
  options.cache = CacheMode::kBuffered;
  options.inline_slow = std::chrono::seconds(10);
  auto dev = OpenDevice(options);
  ASSERT_NE(dev, nullptr);
  auto first = RandomBytes(8192, 41);
  auto second = RandomBytes(4096, 42);
  auto other = RandomBytes(4096, 43);
  int pending = 4;
  int failures = 0;
  auto count = [&](IoResult x) {
    if (!x.ok()) ++failures;
    --pending;
  };
  dev->Write(0, first, /*fua=*/true, count);  // FUA: always the ring
  EXPECT_EQ(dev->inflight(), 1u);
  dev->Write(4096, second, false, count);  // overlaps it: behind it in the ring
  EXPECT_EQ(dev->inflight(), 2u);
  dev->Write(16384, other, false, count);  // disjoint: inline although the ring is busy
  dev->Write(20480, other, false, count);
  EXPECT_EQ(dev->inflight(), 2u);
  EXPECT_EQ(dev->stats().inline_writes, 2u);
  RunUntil(pending);
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(ReadFileRange(path_, 0, 4096),
            std::vector<uint8_t>(first.begin(), first.begin() + 4096));
  EXPECT_EQ(ReadFileRange(path_, 4096, 4096), second);
  EXPECT_EQ(ReadFileRange(path_, 16384, 4096), other);
  EXPECT_EQ(ReadFileRange(path_, 20480, 4096), other);
}

TEST_F(BackingDeviceTest, InlineEnvironmentOverride) {
  ::setenv("BSR_BACKING_INLINE", "0", 1);
  BackingOptions options;
  options.cache = CacheMode::kBuffered;
  auto off = BackingDevice::Open(io_, path_, options);
  ::setenv("BSR_BACKING_INLINE", "lots", 1);
  auto bad = BackingDevice::Open(io_, path_, options);
  ::unsetenv("BSR_BACKING_INLINE");
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("BSR_BACKING_INLINE=lots"), std::string::npos)
      << bad.status().message();
  std::vector<uint8_t> data(512, 5);
  IoResult r;
  int pending = 1;
  (*off)->Write(0, data, false, [&](IoResult x) { r = x, --pending; });
  EXPECT_EQ((*off)->inflight(), 1u);
  RunUntil(pending);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ((*off)->stats().inline_writes, 0u);
}

}  // namespace
}  // namespace bsr::storage
