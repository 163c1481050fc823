#include "replication/listener.h"

#include <spdlog/spdlog.h>

#include <asio/experimental/as_tuple.hpp>

namespace bsr::replication {

using asio::experimental::as_tuple;

namespace {

// Live listeners by local address; entries expire with their last registration.
std::map<std::string, std::weak_ptr<Listener>>& Registry() {
  static std::map<std::string, std::weak_ptr<Listener>> registry;
  return registry;
}

std::string Key(const asio::ip::tcp::endpoint& ep) {
  return fmt::format("{}:{}", ep.address().to_string(), ep.port());
}

}  // namespace

Listener::Listener(asio::io_context& io, asio::ip::tcp::endpoint local)
    : io_(io), local_(local), acceptor_(io) {}

Listener::~Listener() {
  std::error_code ec;
  acceptor_.close(ec);
  auto it = Registry().find(Key(local_));
  if (it != Registry().end() && it->second.expired()) Registry().erase(it);
}

Result<std::shared_ptr<Listener>> Listener::Register(asio::io_context& io,
                                                     const asio::ip::tcp::endpoint& local,
                                                     const std::string& resource, int my_node_id,
                                                     int peer_node_id, Handler handler) {
  std::shared_ptr<Listener> l;
  auto it = Registry().find(Key(local));
  if (it != Registry().end()) l = it->second.lock();
  if (!l) {
    l.reset(new Listener(io, local));
    std::error_code ec;
    l->acceptor_.open(local.protocol(), ec);
    if (!ec) l->acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true), ec);
    if (!ec) l->acceptor_.bind(local, ec);
    if (!ec) l->acceptor_.listen(16, ec);
    if (ec) return Error(Errc::kIo, "listen on {}: {}", Key(local), ec.message());
    Registry()[Key(local)] = l;
    asio::co_spawn(io, l->AcceptLoop(), asio::detached);
  }
  auto key = std::make_pair(resource, peer_node_id);
  if (l->handlers_.count(key)) {
    return Error(Errc::kExists, "{} already listens for {} node-id {}", Key(local), resource,
                 peer_node_id);
  }
  l->handlers_[key] = Entry{my_node_id, std::move(handler)};
  return l;
}

void Listener::Unregister(const std::string& resource, int peer_node_id) {
  handlers_.erase({resource, peer_node_id});
  if (handlers_.empty()) {
    std::error_code ec;
    acceptor_.close(ec);
    Registry().erase(Key(local_));
  }
}

asio::awaitable<void> Listener::AcceptLoop() {
  auto self = shared_from_this();
  for (;;) {
    auto [ec, sock] = co_await acceptor_.async_accept(as_tuple(asio::use_awaitable));
    if (!acceptor_.is_open()) co_return;
    if (ec) {
      spdlog::warn("listener {}: accept: {}", Key(local_), ec.message());
      continue;
    }
    auto ps = std::make_shared<PacketSocket>(std::move(sock), protocol::SocketKind::kAny);
    asio::co_spawn(io_, ReadPreamble(ps), asio::detached);
  }
}

asio::awaitable<void> Listener::ReadPreamble(std::shared_ptr<PacketSocket> sock) {
  auto self = shared_from_this();
  asio::steady_timer timer(io_);
  timer.expires_after(std::chrono::seconds(10));
  timer.async_wait([sock](std::error_code ec) {
    if (!ec) sock->Close();
  });
  auto r = co_await sock->Recv();
  timer.cancel();
  if (!r.ok()) {
    spdlog::warn("listener {}: incoming connection from {}: {}", Key(local_), sock->remote(),
                 r.status().message());
    co_return sock->Close();
  }
  auto* pre = std::get_if<protocol::Preamble>(&(*r)->packet);
  if (!pre) {
    spdlog::warn("listener {}: {} sent {} instead of a preamble", Key(local_), sock->remote(),
                 protocol::PacketTypeName(protocol::TypeOf((*r)->packet)));
    co_return sock->Close();
  }
  auto it = handlers_.find({pre->resource, pre->sender_node_id});
  if (it == handlers_.end()) {
    spdlog::warn(
        "listener {}: connection from {} for resource '{}' node-id {}: no such "
        "connection is configured here (or it is StandAlone)",
        Key(local_), sock->remote(), pre->resource, pre->sender_node_id);
    co_return sock->Close();
  }
  Status s = protocol::CheckPreamble(*pre, pre->resource, it->second.my_node_id,
                                     pre->sender_node_id, std::nullopt);
  if (!s.ok()) {
    spdlog::warn("listener {}: connection from {} refused: {}", Key(local_), sock->remote(),
                 s.message());
    co_return sock->Close();
  }
  it->second.handler(sock, *pre);
}

}  // namespace bsr::replication
