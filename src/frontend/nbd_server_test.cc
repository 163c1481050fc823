// NbdServer end to end over a real Unix socket, with a hand-written client so the
// test controls every byte (pipelining, out-of-order replies, protocol violations).
#include "frontend/nbd_server.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <asio/post.hpp>
#include <fstream>
#include <future>
#include <set>
#include <thread>

#include "common/bytes.h"
#include "common/temp_dir.h"
#include "frontend/file_export.h"
#include "frontend/nbd_proto.h"

namespace bsr::frontend {
namespace {

constexpr uint64_t kSize = 8 << 20;

class Client {
 public:
  explicit Client(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~Client() { ::close(fd_); }

  bool Send(const std::vector<uint8_t>& bytes) {
    size_t sent = 0;
    while (sent < bytes.size()) {
      ssize_t r = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      sent += size_t(r);
    }
    return true;
  }
  // Empty when the server closed the connection (or on timeout).
  std::vector<uint8_t> Recv(size_t n) {
    std::vector<uint8_t> out(n);
    size_t got = 0;
    while (got < n) {
      ssize_t r = ::recv(fd_, out.data() + got, n - got, 0);
      if (r < 0 && errno == EINTR) continue;  // io_uring task work can interrupt us
      if (r <= 0) return {};
      got += size_t(r);
    }
    return out;
  }
  bool Closed() {
    char c;
    ssize_t r;
    do r = ::recv(fd_, &c, 1, 0);
    while (r < 0 && errno == EINTR);
    return r == 0;
  }

  // Greeting, flags, then one option; returns (reply type, data) of the final reply.
  bool Greet() {
    auto g = Recv(nbd::kGreetingSize);
    if (g.size() != nbd::kGreetingSize || LoadBe64(g.data()) != nbd::kInitMagic) return false;
    std::vector<uint8_t> flags(4);
    StoreBe32(flags.data(), nbd::kClientFixedNewstyle | nbd::kClientNoZeroes);
    return Send(flags);
  }
  std::pair<uint32_t, std::string> Option(uint32_t option, const std::vector<uint8_t>& data) {
    std::vector<uint8_t> msg;
    ByteWriter w(&msg);
    w.U64(nbd::kOptionMagic);
    w.U32(option);
    w.U32(uint32_t(data.size()));
    w.Bytes(data);
    Send(msg);
    for (;;) {
      auto h = Recv(20);
      if (h.empty()) return {0, "closed"};
      uint32_t type = LoadBe32(h.data() + 12);
      auto body = Recv(LoadBe32(h.data() + 16));
      if (type == nbd::kRepInfo && LoadBe16(body.data()) == nbd::kInfoExport) {
        size_ = LoadBe64(body.data() + 2);
        flags_ = LoadBe16(body.data() + 10);
      }
      if (type != nbd::kRepInfo && type != nbd::kRepServer) {
        return {type, std::string(body.begin(), body.end())};
      }
    }
  }
  uint32_t Go(const std::string& name) {
    std::vector<uint8_t> data;
    ByteWriter w(&data);
    w.String(name);
    w.U16(0);
    return Option(nbd::kOptGo, data).first;
  }
  void Request(uint16_t type, uint64_t cookie, uint64_t offset, uint32_t length,
               const std::vector<uint8_t>& payload = {}, uint16_t flags = 0) {
    std::vector<uint8_t> msg;
    ByteWriter w(&msg);
    w.U32(nbd::kRequestMagic);
    w.U16(flags);
    w.U16(type);
    w.U64(cookie);
    w.U64(offset);
    w.U32(length);
    w.Bytes(payload);
    Send(msg);
  }
  // (error, cookie); error 0xffffffff when the connection ended.
  std::pair<uint32_t, uint64_t> Reply() {
    auto h = Recv(16);
    if (h.empty() || LoadBe32(h.data()) != nbd::kSimpleReplyMagic) return {~0u, 0};
    return {LoadBe32(h.data() + 4), LoadBe64(h.data() + 8)};
  }

  bool connected_ = false;
  uint64_t size_ = 0;
  uint16_t flags_ = 0;

 private:
  int fd_ = -1;
};

class NbdServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (dir_ / "disk.img").string();
    std::ofstream(path_).close();
    std::filesystem::resize_file(path_, kSize);
    auto dev = storage::BackingDevice::Open(io_, path_, {});
    ASSERT_TRUE(dev.ok()) << dev.status().ToString();
    export_ = std::make_shared<FileExport>(std::move(dev).value(), FileExportOptions{});
    NbdServerOptions options;
    options.unix_path = (dir_ / "nbd.sock").string();
    server_ = std::make_unique<NbdServer>(io_, options);
    server_->AddExport("disk", export_);
    ASSERT_TRUE(server_->Start().ok());
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    std::promise<void> stopped;
    asio::post(io_, [&] { server_->Stop([&] { stopped.set_value(); }); });
    ASSERT_EQ(stopped.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
    io_.stop();
    thread_.join();
    server_.reset();
    export_.reset();
  }
  std::string Socket() const { return (dir_ / "nbd.sock").string(); }
  template <typename F>
  auto OnLoop(F f) {
    std::promise<decltype(f())> p;
    asio::post(io_, [&] { p.set_value(f()); });
    return p.get_future().get();
  }

  TempDir dir_;
  std::string path_;
  asio::io_context io_;
  std::shared_ptr<FileExport> export_;
  std::unique_ptr<NbdServer> server_;
  std::thread thread_;
};

TEST_F(NbdServerTest, PipelinedWritesThenReadsMatch) {
  Client c(Socket());
  ASSERT_TRUE(c.connected_ && c.Greet());
  ASSERT_EQ(c.Go(""), nbd::kRepAck);  // the default export
  EXPECT_EQ(c.size_, kSize);
  EXPECT_TRUE(c.flags_ & nbd::kCanMultiConn);
  constexpr int kN = 32;
  for (int i = 0; i < kN; ++i) {
    c.Request(nbd::kCmdWrite, 100 + i, uint64_t(i) * 65536, 65536,
              std::vector<uint8_t>(65536, uint8_t(i + 1)), i % 2 ? nbd::kCmdFlagFua : 0);
  }
  std::set<uint64_t> cookies;
  for (int i = 0; i < kN; ++i) {
    auto [err, cookie] = c.Reply();
    EXPECT_EQ(err, 0u);
    cookies.insert(cookie);
  }
  EXPECT_EQ(cookies.size(), size_t(kN));
  EXPECT_EQ(*cookies.begin(), 100u);
  c.Request(nbd::kCmdFlush, 1, 0, 0);
  EXPECT_EQ(c.Reply().first, 0u);
  c.Request(nbd::kCmdRead, 7, 5 * 65536 + 100, 1000);
  auto [err, cookie] = c.Reply();
  EXPECT_EQ(err, 0u);
  EXPECT_EQ(cookie, 7u);
  EXPECT_EQ(c.Recv(1000), std::vector<uint8_t>(1000, 6));
}

TEST_F(NbdServerTest, BadRequestsGetErrorsAndConnectionSurvives) {
  Client c(Socket());
  ASSERT_TRUE(c.Greet());
  ASSERT_EQ(c.Go("disk"), nbd::kRepAck);
  c.Request(nbd::kCmdRead, 1, kSize - 512, 4096);
  EXPECT_EQ(c.Reply(), std::make_pair(nbd::kEinval, uint64_t(1)));
  c.Request(nbd::kCmdWrite, 2, kSize, 512, std::vector<uint8_t>(512, 9));
  EXPECT_EQ(c.Reply(), std::make_pair(nbd::kEnospc, uint64_t(2)));
  // Oversized write: the payload is drained, the stream stays in sync.
  c.Request(nbd::kCmdWrite, 3, 0, nbd::kDefaultMaxBlock + 4096,
            std::vector<uint8_t>(nbd::kDefaultMaxBlock + 4096, 1));
  EXPECT_EQ(c.Reply(), std::make_pair(nbd::kEoverflow, uint64_t(3)));
  c.Request(77, 4, 0, 512);
  EXPECT_EQ(c.Reply(), std::make_pair(nbd::kEinval, uint64_t(4)));
  c.Request(nbd::kCmdWrite, 5, 0, 512, std::vector<uint8_t>(512, 5));
  EXPECT_EQ(c.Reply(), std::make_pair(0u, uint64_t(5)));
  // Nothing of the refused writes reached the file.
  std::ifstream f(path_, std::ios::binary);
  std::vector<char> head(1024);
  f.read(head.data(), 1024);
  EXPECT_EQ(head[511], 5);
  EXPECT_EQ(head[512], 0);
}

TEST_F(NbdServerTest, ProtocolViolationClosesOnlyThatConnection) {
  Client good(Socket());
  ASSERT_TRUE(good.Greet());
  ASSERT_EQ(good.Go("disk"), nbd::kRepAck);
  Client bad(Socket());
  ASSERT_TRUE(bad.Greet());
  ASSERT_EQ(bad.Go("disk"), nbd::kRepAck);
  EXPECT_EQ(OnLoop([&] { return export_->open_count(); }), 2);
  bad.Send(std::vector<uint8_t>(28, 0xee));  // bad magic
  EXPECT_TRUE(bad.Closed());
  good.Request(nbd::kCmdRead, 9, 0, 512);
  EXPECT_EQ(good.Reply(), std::make_pair(0u, uint64_t(9)));
  good.Recv(512);
  // The dead connection's Close hook ran.
  for (int i = 0; i < 100 && OnLoop([&] { return export_->open_count(); }) != 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(OnLoop([&] { return export_->open_count(); }), 1);
}

TEST_F(NbdServerTest, RefusedOpenCarriesMessageAndUnknownExport) {
  OnLoop([&] {
    export_->set_refuse_open("r0 is Secondary");
    return 0;
  });
  Client c(Socket());
  ASSERT_TRUE(c.Greet());
  std::vector<uint8_t> data;
  ByteWriter w(&data);
  w.String("disk");
  w.U16(0);
  auto [type, message] = c.Option(nbd::kOptGo, data);
  EXPECT_EQ(type, nbd::kRepErrPolicy);
  EXPECT_EQ(message, "r0 is Secondary");
  EXPECT_EQ(c.Go("nope"), nbd::kRepErrUnknown);
  EXPECT_EQ(c.Option(nbd::kOptStructuredReply, {}).first, nbd::kRepErrUnsup);
  EXPECT_EQ(c.Option(nbd::kOptAbort, {}).first, nbd::kRepAck);
  EXPECT_TRUE(c.Closed());
  EXPECT_EQ(OnLoop([&] { return export_->open_count(); }), 0);
}

TEST_F(NbdServerTest, StopAnswersInflightAndClosesConnections) {
  Client c(Socket());
  ASSERT_TRUE(c.Greet());
  ASSERT_EQ(c.Go("disk"), nbd::kRepAck);
  EXPECT_EQ(OnLoop([&] { return server_->connection_count(); }), 1u);
  c.Request(nbd::kCmdWrite, 1, 0, 4096, std::vector<uint8_t>(4096, 1));
  EXPECT_EQ(c.Reply().first, 0u);
  // TearDown stops the server; the connection must end.
  std::promise<void> stopped;
  asio::post(io_, [&] { server_->Stop([&] { stopped.set_value(); }); });
  EXPECT_EQ(stopped.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_TRUE(c.Closed());
  EXPECT_FALSE(std::filesystem::exists(Socket()));
}

}  // namespace
}  // namespace bsr::frontend
