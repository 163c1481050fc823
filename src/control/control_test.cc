#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <thread>

#include "common/temp_dir.h"
#include "control/client.h"
#include "control/commands.h"
#include "control/server.h"

namespace bsr::control {
namespace {

TEST(Message, RequestRoundTrip) {
  Request r{"attach", {"2", "/dev/sdb1", "/dev/sdb1", "internal"}, {{"al-extents", "3389"}}};
  auto back = RequestFromJson(ToJson(r));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->cmd, "attach");
  EXPECT_EQ(back->args.size(), 4u);
  EXPECT_EQ(back->opts.at("al-extents"), "3389");
  EXPECT_FALSE(RequestFromJson(nlohmann::json{{"args", {1}}}).ok());
  EXPECT_FALSE(RequestFromJson(nlohmann::json{{"cmd", "x"}, {"args", {1}}}).ok());
}

TEST(Commands, ResizeIsRefusedAsNotBuiltNotUnknown) {
  Request r;
  r.cmd = "resize";
  r.args = {"0"};
  Status s = ValidateRequest(r);
  EXPECT_EQ(s.code(), Errc::kUnsupported);
  EXPECT_NE(s.message().find("online resize is not built"), std::string::npos) << s.message();
  r.cmd = "resizee";
  s = ValidateRequest(r);
  EXPECT_EQ(s.code(), Errc::kInvalidArgument);
  EXPECT_NE(s.message().find("unknown command 'resizee'"), std::string::npos) << s.message();
}

TEST(Message, FrameDecoderHandlesSplitsAndRejectsGarbage) {
  auto a = EncodeFrame({{"cmd", "status"}});
  auto b = EncodeFrame({{"cmd", "show"}});
  std::vector<uint8_t> all(a);
  all.insert(all.end(), b.begin(), b.end());
  FrameDecoder d;
  for (uint8_t byte : all) d.Feed({&byte, 1});
  auto f1 = d.Next();
  auto f2 = d.Next();
  auto f3 = d.Next();
  ASSERT_TRUE(f1.ok() && *f1 && f2.ok() && *f2 && f3.ok());
  EXPECT_EQ((**f1)["cmd"], "status");
  EXPECT_EQ((**f2)["cmd"], "show");
  EXPECT_FALSE(*f3);

  FrameDecoder big;
  uint8_t hdr[4] = {0xFF, 0xFF, 0xFF, 0xFF};
  big.Feed(hdr);
  EXPECT_FALSE(big.Next().ok());

  FrameDecoder bad;
  uint8_t junk[7] = {0, 0, 0, 3, '{', '{', '{'};
  bad.Feed(junk);
  EXPECT_FALSE(bad.Next().ok());
}

class ServerTest : public ::testing::Test {
 protected:
  void StartServer(Server::Handler h) {
    server_ = std::make_unique<Server>(io_, (dir_ / "bsrd.sock").string(), std::move(h));
    ASSERT_TRUE(server_->Start().ok());
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    asio::post(io_, [this] { server_->Stop(); });
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }
  TempDir dir_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
  std::unique_ptr<Server> server_;
  std::thread thread_;
};

TEST_F(ServerTest, CallsHandlerAndReturnsReply) {
  StartServer([](std::shared_ptr<Session> s, Request r) {
    Reply rep;
    if (r.cmd == "fail") {
      rep = Reply::Fail(Error(Errc::kState, "refused: {}", r.args.at(0)));
    } else {
      rep.output = r.cmd + ":" + std::to_string(r.args.size());
    }
    s->Finish(rep);
  });
  auto c = Client::Connect(server_->path());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto rep = c->Call({"status", {"r0"}, {}});
  ASSERT_TRUE(rep.ok());
  EXPECT_EQ(rep->output, "status:1");
  rep = c->Call({"fail", {"why"}, {}});
  ASSERT_TRUE(rep.ok());
  EXPECT_EQ(rep->exit_code, kExitStateRefused);
  EXPECT_EQ(rep->error, "refused: why");
}

TEST_F(ServerTest, StreamsEventsUntilFinish) {
  StartServer([](std::shared_ptr<Session> s, Request) {
    s->Event("exists resource name:r0 role:Secondary");
    s->Event("exists -");
    s->Finish(Reply{});
  });
  auto c = Client::Connect(server_->path());
  ASSERT_TRUE(c.ok());
  std::vector<std::string> lines;
  auto rep = c->Stream({"events2", {}, {}}, [&](const std::string& l) {
    lines.push_back(l);
    return true;
  });
  ASSERT_TRUE(rep.ok());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1], "exists -");
}

TEST_F(ServerTest, GarbageClosesOnlyThatConnection) {
  StartServer([](std::shared_ptr<Session> s, Request) { s->Finish(Reply{}); });
  {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, server_->path().c_str());
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    const char junk[] = "\xff\xff\xff\xffgarbage";
    ASSERT_GT(::send(fd, junk, sizeof(junk), MSG_NOSIGNAL), 0);
    char b;
    EXPECT_EQ(::recv(fd, &b, 1, 0), 0);  // the server closed it
    ::close(fd);
  }
  auto c = Client::Connect(server_->path());
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->Call({"status", {}, {}}).ok());
}

TEST(Server, RefusesSecondDaemonOnSameSocket) {
  TempDir dir;
  asio::io_context io;
  Server a(io, (dir / "s.sock").string(), [](auto, auto) {});
  ASSERT_TRUE(a.Start().ok());
  Server b(io, (dir / "s.sock").string(), [](auto, auto) {});
  Status s = b.Start();
  EXPECT_EQ(s.code(), Errc::kExists) << s.ToString();
}

TEST(Client, MissingDaemonIsAClearError) {
  auto c = Client::Connect("/nonexistent/bsrd.sock");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("is bsrd running?"), std::string::npos);
}

}  // namespace
}  // namespace bsr::control
