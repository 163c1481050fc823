// Net options of a connection (ParseNetConfig), path addresses (ParseAddress) and the
// socket options applied to a real TCP socket (PacketSocket::Tune).
#include <gtest/gtest.h>

#include <asio.hpp>

#include "replication/connection.h"
#include "replication/connection_socket.h"

namespace bsr::replication {
namespace {

TEST(ParseNetConfig, DefaultsAreDrbds) {
  auto c = ParseNetConfig({});
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->ko_count, 7);
  EXPECT_EQ(c->max_buffers, 2048u);
  EXPECT_EQ(c->max_epoch_size, 2048u);
  EXPECT_EQ(c->tuning.sndbuf, 0);
  EXPECT_EQ(c->tuning.rcvbuf, 0);
  EXPECT_TRUE(c->tuning.cork);
  EXPECT_EQ(c->on_congestion, NetConfig::OnCongestion::kBlock);
  EXPECT_EQ(c->congestion_fill, 0u);
  EXPECT_EQ(c->timeout.count(), 6000);
}

TEST(ParseNetConfig, ParsesUnitsAndSuffixes) {
  auto c = ParseNetConfig({{"sndbuf-size", "512K"},
                           {"rcvbuf-size", "262144"},
                           {"tcp-cork", "no"},
                           {"ko-count", "3"},
                           {"timeout", "5"},
                           {"max-buffers", "64"},
                           {"max-epoch-size", "10"},
                           {"on-congestion", "pull-ahead"},
                           {"congestion-fill", "2048"},
                           {"congestion-extents", "100"}});
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->tuning.sndbuf, 512 * 1024);
  EXPECT_EQ(c->tuning.rcvbuf, 262144);
  EXPECT_FALSE(c->tuning.cork);
  EXPECT_EQ(c->ko_count, 3);
  EXPECT_EQ(c->timeout.count(), 500);
  EXPECT_EQ(c->max_buffers, 64u);
  EXPECT_EQ(c->max_epoch_size, 10u);
  EXPECT_EQ(c->on_congestion, NetConfig::OnCongestion::kPullAhead);
  EXPECT_EQ(c->congestion_fill, 2048u * 512);  // sectors
  EXPECT_EQ(c->congestion_extents, 100u);
  auto m = ParseNetConfig({{"congestion-fill", "1M"}});
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->congestion_fill, 1u << 20);
}

TEST(ParseNetConfig, RejectsBadValuesNamingTheOption) {
  for (auto [k, v] : std::vector<std::pair<std::string, std::string>>{{"sndbuf-size", "11M"},
                                                                      {"sndbuf-size", "-1"},
                                                                      {"rcvbuf-size", "12x"},
                                                                      {"ko-count", "201"},
                                                                      {"max-buffers", "16"},
                                                                      {"max-epoch-size", "0"},
                                                                      {"on-congestion", "panic"},
                                                                      {"congestion-fill", "20G"}}) {
    auto c = ParseNetConfig({{k, v}});
    ASSERT_FALSE(c.ok()) << k << "=" << v;
    EXPECT_NE(c.status().message().find(k), std::string::npos) << c.status().message();
  }
}

TEST(ParseAddress, Ipv4AndIpv6) {
  auto a = ParseAddress("ipv4:10.95.0.1:7789");
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->address().is_v4());
  EXPECT_EQ(a->port(), 7789);
  auto b = ParseAddress("ipv6:[fd95::1]:7790");
  ASSERT_TRUE(b.ok()) << b.status().message();
  EXPECT_TRUE(b->address().is_v6());
  EXPECT_EQ(b->address().to_string(), "fd95::1");
  EXPECT_EQ(b->port(), 7790);
  EXPECT_FALSE(ParseAddress("ipv6:10.0.0.1:1").ok());   // family mismatch
  EXPECT_FALSE(ParseAddress("ipv4:[fd95::1]:1").ok());  // family mismatch
  EXPECT_FALSE(ParseAddress("ipv6:[fd95::1]").ok());    // no port
  EXPECT_FALSE(ParseAddress("ipv4:10.0.0.1:70000").ok());
}

TEST(PacketSocket, TuneSetsBuffersOnARealSocket) {
  asio::io_context io;
  asio::ip::tcp::socket sock(io);
  sock.open(asio::ip::tcp::v4());
  SocketTuning t;
  t.sndbuf = 256 * 1024;
  t.rcvbuf = 128 * 1024;
  ASSERT_TRUE(PacketSocket::TuneRaw(sock, t).ok());
  asio::socket_base::send_buffer_size snd;
  asio::socket_base::receive_buffer_size rcv;
  sock.get_option(snd);
  sock.get_option(rcv);
  // Linux doubles the value for its bookkeeping; it is at least what was asked.
  EXPECT_GE(snd.value(), 256 * 1024);
  EXPECT_GE(rcv.value(), 128 * 1024);
}

TEST(PacketSocket, CorkedBatchArrivesIntactInOrder) {
  asio::io_context io;
  asio::ip::tcp::acceptor acc(io, asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  asio::ip::tcp::socket client(io), server(io);
  client.connect(acc.local_endpoint());
  acc.accept(server);
  auto tx = std::make_shared<PacketSocket>(std::move(client), protocol::SocketKind::kMeta);
  ASSERT_TRUE(tx->Tune(SocketTuning{}).ok());
  auto rx = std::make_shared<PacketSocket>(std::move(server), protocol::SocketKind::kMeta);
  for (uint32_t i = 1; i <= 200; ++i) {
    protocol::WriteAck a;
    a.block_id = i;
    tx->SendPacket(a);
  }
  uint32_t got = 0;
  bool in_order = true;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        while (got < 200) {
          auto r = co_await rx->Recv();
          if (!r.ok()) co_return;
          auto* a = std::get_if<protocol::WriteAck>(&(*r)->packet);
          if (!a || a->block_id != got + 1) in_order = false;
          ++got;
        }
      },
      asio::detached);
  io.run_for(std::chrono::seconds(5));
  EXPECT_EQ(got, 200u);
  EXPECT_TRUE(in_order);
  EXPECT_EQ(tx->queued_bytes(), 0u);
}

}  // namespace
}  // namespace bsr::replication
