// Connection setup before the handshake: the listeners this connection registers and
// the dialing of its paths (data and meta socket per path). io thread only.
#include <spdlog/spdlog.h>

#include <asio/experimental/as_tuple.hpp>
#include <random>

#include "replication/connection.h"
#include "replication/connection_internal.h"
#include "replication/listener.h"
#include "replication/resource.h"

namespace bsr::replication {

using asio::experimental::as_tuple;
using protocol::SocketKind;

namespace {

uint64_t RandomCookie() {
  static std::mt19937_64 rng(std::random_device{}());
  uint64_t c = 0;
  while (c == 0) c = rng();
  return c;
}

}  // namespace

// ---- Listening -------------------------------------------------------------------

void Connection::StopListening() {
  for (auto& [addr, l] : listeners_) l->Unregister(resource_->name(), peer_id_);
  listeners_.clear();
}

void Connection::RegisterListeners() {
  if (!running_ || stopped_) return;
  auto it = resource_->peers().find(peer_id_);
  if (it == resource_->peers().end()) return;
  std::weak_ptr<Connection> weak = weak_from_this();
  for (const auto& path : it->second.paths) {
    if (listeners_.count(path.local)) continue;
    auto local = ParseAddress(path.local);
    if (!local.ok()) continue;
    auto l = Listener::Register(io_, *local, resource_->name(), my_id_, peer_id_,
                                [weak](std::shared_ptr<PacketSocket> sock, protocol::Preamble pre) {
                                  if (auto c = weak.lock()) {
                                    c->OnIncoming(std::move(sock), pre);
                                  } else {
                                    sock->Close();
                                  }
                                });
    if (!l.ok() && l.status().code() == Errc::kExists) continue;  // same endpoint, other spelling
    if (!l.ok()) {
      // Logged once per address until it works (the address may come up later).
      if (listen_failed_.insert(path.local).second) {
        spdlog::warn("{}: cannot listen on {} yet ({}); retrying every {} s", Tag(), path.local,
                     l.status().message(), cfg_.connect_int.count() / 1000);
      }
      continue;
    }
    if (listen_failed_.erase(path.local)) {
      spdlog::info("{}: listening on {} now", Tag(), path.local);
    }
    listeners_[path.local] = *l;
  }
}

void Connection::OnIncoming(std::shared_ptr<PacketSocket> sock, const protocol::Preamble& pre) {
  if (!running_ || stopped_ || Held()) return sock->Close();
  if (pre.sender_node_id > my_id_) {
    // Only the lower node id's dial becomes the connection (both nodes decide alike);
    // a dial from the higher one tells us it is waiting: dial it now.
    sock->Close();
    if (!session_ && dial_timer_) dial_timer_->cancel();
    return;
  }
  auto typed = std::make_shared<PacketSocket>(std::move(sock->socket()), pre.socket);
  if (Status t = typed->Tune(cfg_.tuning); !t.ok()) spdlog::warn("{}: {}", Tag(), t.message());
  if (!pending_in_ || pending_in_->cookie != pre.cookie) {
    if (pending_in_) {
      if (pending_in_->data) pending_in_->data->Close();
      if (pending_in_->meta) pending_in_->meta->Close();
    }
    pending_in_ = std::make_unique<Attempt>();
    pending_in_->cookie = pre.cookie;
  }
  (pre.socket == SocketKind::kData ? pending_in_->data : pending_in_->meta) = typed;
  if (!pending_in_->data || !pending_in_->meta) return;
  auto attempt = std::move(pending_in_);
  if (session_) {
    // Same dialer with a new cookie: it gave up the old attempt (e.g. restarted).
    spdlog::info("{}: peer dialed again (new attempt); replacing the current connection", Tag());
    EndSession(session_, ConnState::kNetworkFailure, "peer reconnected", true);
  }
  for (auto& sk : {attempt->data, attempt->meta}) {
    protocol::Preamble reply;
    reply.socket = sk->kind();
    reply.flags = protocol::kPreambleReply;
    reply.sender_node_id = static_cast<uint16_t>(my_id_);
    reply.receiver_node_id = static_cast<uint16_t>(peer_id_);
    reply.cookie = attempt->cookie;
    reply.resource = resource_->name();
    sk->SendPacket(reply);
  }
  auto sess = std::make_shared<Session>(io_);
  sess->id = next_session_id_++;
  sess->cookie = attempt->cookie;
  sess->dialer = false;
  sess->data = attempt->data;
  sess->meta = attempt->meta;
  session_ = sess;
  asio::co_spawn(io_, RunSession(sess), asio::detached);
}

// ---- Dialing ---------------------------------------------------------------------

asio::awaitable<void> Connection::DialLoop() {
  auto self = shared_from_this();
  while (running_) {
    RegisterListeners();
    if (!session_ && !Held()) DialAll();
    if (!running_) co_return;
    dial_timer_->expires_after(cfg_.connect_int);
    co_await dial_timer_->async_wait(as_tuple(asio::use_awaitable));
  }
}

// One dial round: every path at once (DRBD 9: the first path that connects carries the
// connection). A path whose TCP connect completes first claims the round; the others
// hang up before sending anything, so the peer sees a single attempt.
struct Connection::DialRound {
  bool claimed = false;
};

void Connection::DialAll() {
  auto it = resource_->peers().find(peer_id_);
  if (it == resource_->peers().end()) return;
  auto round = std::make_shared<DialRound>();
  for (size_t i = 0; i < it->second.paths.size(); ++i) {
    asio::co_spawn(io_, DialPath(it->second.paths[i], round), asio::detached);
  }
}

asio::awaitable<std::shared_ptr<PacketSocket>> Connection::DialSocket(
    const PathSpec& path, SocketKind kind, std::shared_ptr<DialRound> round) {
  auto self = shared_from_this();
  auto remote = ParseAddress(path.remote);
  auto local = ParseAddress(path.local);
  if (!remote.ok() || !local.ok()) co_return nullptr;
  asio::ip::tcp::socket raw(io_);
  std::error_code ec;
  raw.open(remote->protocol(), ec);
  // Dial from the path's local address so the peer sees the configured address.
  if (!ec) raw.bind(asio::ip::tcp::endpoint(local->address(), 0), ec);
  if (ec) {
    spdlog::debug("{}: dial from {}: {}", Tag(), path.local, ec.message());
    co_return nullptr;
  }
  // Before connect: the TCP window scale is negotiated in the SYN.
  if (Status t = PacketSocket::TuneRaw(raw, cfg_.tuning); !t.ok()) {
    spdlog::warn("{}: {}", Tag(), t.message());
  }
  asio::steady_timer timer(io_);
  timer.expires_after(HandshakeTimeout());
  timer.async_wait([&raw](std::error_code e) {
    if (!e) {
      std::error_code ignore;
      raw.close(ignore);
    }
  });
  auto [cec] = co_await raw.async_connect(*remote, as_tuple(asio::use_awaitable));
  timer.cancel();
  if (cec) {
    spdlog::debug("{}: dial {} -> {}: {}", Tag(), path.local, path.remote, cec.message());
    co_return nullptr;
  }
  if (!running_ || (session_ && kind == SocketKind::kData) ||
      (kind == SocketKind::kData && round->claimed)) {
    std::error_code ignore;
    raw.close(ignore);
    co_return nullptr;
  }
  if (kind == SocketKind::kData) round->claimed = true;
  auto sock = std::make_shared<PacketSocket>(std::move(raw), kind);
  sock->Tune(cfg_.tuning).ok();  // corking mode; the buffers are set already
  co_return sock;
}

asio::awaitable<void> Connection::DialPath(PathSpec path, std::shared_ptr<DialRound> round) {
  auto self = shared_from_this();
  uint64_t cookie = RandomCookie();
  bool real = my_id_ < peer_id_;
  auto send_preamble = [&](PacketSocket& sock) {
    protocol::Preamble pre;
    pre.socket = sock.kind();
    pre.sender_node_id = static_cast<uint16_t>(my_id_);
    pre.receiver_node_id = static_cast<uint16_t>(peer_id_);
    pre.cookie = cookie;
    pre.resource = resource_->name();
    sock.SendPacket(pre);
  };
  if (!real) {
    // The higher node id only knocks: the peer (lower node id) dials back when it
    // sees this preamble; give it a moment to leave, then hang up. Every path knocks.
    auto sock = co_await DialSocket(path, SocketKind::kData, std::make_shared<DialRound>());
    if (!sock) co_return;
    send_preamble(*sock);
    auto t = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(200));
    t->async_wait([sock, t](std::error_code) { sock->Close(); });
    co_return;
  }
  auto data = co_await DialSocket(path, SocketKind::kData, round);
  if (!data) co_return;
  auto meta = co_await DialSocket(path, SocketKind::kMeta, round);
  if (!meta || !running_ || session_) {
    data->Close();
    if (meta) meta->Close();
    round->claimed = false;
    co_return;
  }
  send_preamble(*data);
  send_preamble(*meta);
  spdlog::debug("{}: dialed over path {} -> {}", Tag(), path.local, path.remote);
  auto sess = std::make_shared<Session>(io_);
  sess->id = next_session_id_++;
  sess->cookie = cookie;
  sess->dialer = true;
  sess->data = data;
  sess->meta = meta;
  session_ = sess;
  asio::co_spawn(io_, RunSession(sess), asio::detached);
}

}  // namespace bsr::replication
