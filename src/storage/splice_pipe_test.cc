// SplicePipe and BackingDevice::WriteFromPipe: bytes from a real TCP connection reach the
// file at the right offset without passing through user space.
#include "storage/splice_pipe.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <fstream>
#include <random>
#include <vector>

#include "common/temp_dir.h"
#include "storage/backing_device.h"

namespace bsr::storage {
namespace {

constexpr uint64_t kSize = 4 << 20;

std::vector<uint8_t> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

// A connected TCP pair over loopback: {sender, receiver}.
std::pair<UniqueFd, UniqueFd> TcpPair() {
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  EXPECT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), len), 0);
  EXPECT_EQ(::listen(listener.get(), 1), 0);
  EXPECT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  UniqueFd sender(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(::connect(sender.get(), reinterpret_cast<sockaddr*>(&addr), len), 0);
  UniqueFd receiver(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
  EXPECT_TRUE(receiver.valid());
  return {std::move(sender), std::move(receiver)};
}

void SendAll(int fd, const std::vector<uint8_t>& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    ASSERT_GT(n, 0);
    sent += static_cast<size_t>(n);
  }
}

class SplicePipeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (dir_ / "disk.img").string();
    original_ = RandomBytes(kSize, 1);
    std::ofstream(path_, std::ios::binary)
        .write(reinterpret_cast<const char*>(original_.data()), kSize);
  }

  std::vector<uint8_t> FileBytes() {
    std::vector<uint8_t> out(kSize);
    int fd = ::open(path_.c_str(), O_RDONLY);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::pread(fd, out.data(), kSize, 0), static_cast<ssize_t>(kSize));
    ::close(fd);
    return out;
  }

  // Fills `pipe` with `n` bytes from `sock` (the sender already sent them).
  static void Fill(SplicePipe& pipe, int sock, size_t n) {
    size_t got = 0;
    for (int spins = 0; got < n && spins < 100000; ++spins) {
      ssize_t r = pipe.FillFromSocket(sock, n - got);
      if (r > 0) got += static_cast<size_t>(r);
      ASSERT_TRUE(r > 0 || r == -EAGAIN) << r;
    }
    ASSERT_EQ(got, n);
  }

  TempDir dir_;
  std::string path_;
  std::vector<uint8_t> original_;
  asio::io_context io_;
};

TEST_F(SplicePipeTest, SocketBytesLandInTheFileAtTheOffset) {
  BackingOptions options;
  options.cache = CacheMode::kBuffered;
  auto dev = BackingDevice::Open(io_, path_, options);
  ASSERT_TRUE(dev.ok()) << dev.status().ToString();
  ASSERT_TRUE((*dev)->splice_writes());
  auto [tx, rx] = TcpPair();
  SplicePipePool pool(1 << 20);
  const size_t n = 512 * 1024 + 4096;
  const uint64_t offset = 1 << 20;
  auto block = RandomBytes(n, 2);
  // A head that came with the frame header goes in by Put, the rest by splice.
  auto pipe = pool.Get();
  ASSERT_TRUE(pipe.ok()) << pipe.status().ToString();
  ASSERT_EQ((*pipe)->Put(std::span(block).first(100)), 100);
  std::vector<uint8_t> rest(block.begin() + 100, block.end());
  SendAll(tx.get(), rest);
  Fill(**pipe, rx.get(), rest.size());
  EXPECT_EQ((*pipe)->held(), n);
  int done = 0;
  IoResult result;
  (*dev)->WriteFromPipe(offset, n, **pipe, [&](IoResult r) {
    result = std::move(r);
    ++done;
  });
  while (done == 0) io_.run_one();
  ASSERT_TRUE(result.ok()) << result.status.ToString();
  EXPECT_EQ((*pipe)->held(), 0u);
  auto expect = original_;
  std::copy(block.begin(), block.end(), expect.begin() + offset);
  EXPECT_EQ(FileBytes(), expect);
  // An emptied pipe goes back to the pool.
  pipe->reset();
  EXPECT_EQ(pool.spare(), 1u);
}

TEST_F(SplicePipeTest, RefusedWithoutTheBytesOrOnODirect) {
  BackingOptions options;
  options.cache = CacheMode::kBuffered;
  auto dev = BackingDevice::Open(io_, path_, options);
  ASSERT_TRUE(dev.ok());
  SplicePipePool pool(1 << 20);
  auto pipe = pool.Get();
  ASSERT_TRUE(pipe.ok());
  ASSERT_EQ((*pipe)->Put(std::vector<uint8_t>(4096, 7)), 4096);
  int done = 0;
  IoResult result;
  // More bytes than the pipe holds: refused, the file unchanged.
  (*dev)->WriteFromPipe(0, 8192, **pipe, [&](IoResult r) {
    result = std::move(r);
    ++done;
  });
  while (done == 0) io_.run_one();
  EXPECT_EQ(result.err, EINVAL);
  // Beyond the end: refused.
  (*dev)->WriteFromPipe(kSize - 2048, 4096, **pipe, [&](IoResult r) {
    result = std::move(r);
    ++done;
  });
  while (done == 1) io_.run_one();
  EXPECT_EQ(result.err, EINVAL);
  EXPECT_EQ(FileBytes(), original_);
  // A pipe still holding bytes is not reused.
  pipe->reset();
  EXPECT_EQ(pool.spare(), 0u);
  // Drain empties it into memory.
  auto p2 = pool.Get();
  ASSERT_TRUE(p2.ok());
  ASSERT_EQ((*p2)->Put(std::vector<uint8_t>(3000, 9)), 3000);
  std::vector<uint8_t> out(3000);
  ASSERT_TRUE((*p2)->Drain(out).ok());
  EXPECT_EQ(out, std::vector<uint8_t>(3000, 9));
  EXPECT_EQ((*p2)->held(), 0u);

  BackingOptions direct;
  direct.cache = CacheMode::kDirect;
  asio::io_context io2;
  auto ddev = BackingDevice::Open(io2, path_, direct);
  ASSERT_TRUE(ddev.ok());
  if ((*ddev)->direct()) {
    EXPECT_FALSE((*ddev)->splice_writes());
  }
}

// The pool hands out at most max_out pipes at once; a returned one can be taken again.
TEST(SplicePipePoolTest, RefusesPastItsLimitUntilOneComesBack) {
  SplicePipePool pool(1 << 20, /*max_spare=*/4, /*max_out=*/2);
  auto a = pool.Get();
  auto b = pool.Get();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(pool.out(), 2u);
  auto c = pool.Get();
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Errc::kBusy);
  a->reset();
  EXPECT_EQ(pool.out(), 1u);
  EXPECT_EQ(pool.spare(), 1u);
  auto d = pool.Get();
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(pool.spare(), 0u);
  EXPECT_EQ(pool.out(), 2u);
}

}  // namespace
}  // namespace bsr::storage
