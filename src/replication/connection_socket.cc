#include "replication/connection_socket.h"

#include <asio/experimental/as_tuple.hpp>

namespace bsr::replication {

using asio::experimental::as_tuple;

PacketSocket::PacketSocket(asio::ip::tcp::socket socket, protocol::SocketKind kind)
    : socket_(std::move(socket)), kind_(kind) {
  std::error_code ec;
  auto ep = socket_.remote_endpoint(ec);
  remote_ = ec ? std::string("?") : fmt::format("{}:{}", ep.address().to_string(), ep.port());
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
}

asio::awaitable<Result<std::unique_ptr<Received>>> PacketSocket::Recv() {
  for (;;) {
    auto f = decoder_.Next();
    if (!f.ok()) co_return f.status();
    if (*f) {
      auto r = std::make_unique<Received>();
      r->frame = std::move(**f);
      auto p = protocol::DecodePacket(r->frame, kind_);
      if (!p.ok()) co_return p.status();
      r->packet = std::move(*p);
      co_return r;
    }
    if (failed_)
      co_return Error(Errc::kIo, "{} socket to {} closed", SocketKindName(kind_), remote_);
    size_t want = std::max<size_t>(decoder_.BytesWanted(), 256 * 1024);
    auto buf = decoder_.PrepareWrite(want);
    auto [ec, n] = co_await socket_.async_read_some(asio::buffer(buf.data(), buf.size()),
                                                    as_tuple(asio::use_awaitable));
    decoder_.Commit(ec ? 0 : n);
    if (ec) {
      failed_ = true;
      if (ec == asio::error::eof) {
        co_return Error(Errc::kIo, "{} socket: peer {} closed the connection",
                        SocketKindName(kind_), remote_);
      }
      co_return Error(Errc::kIo, "{} socket to {}: {}", SocketKindName(kind_), remote_,
                      ec.message());
    }
  }
}

void PacketSocket::Send(std::vector<uint8_t> frame) {
  if (failed_) return;
  queued_bytes_ += frame.size();
  queue_.push_back(std::move(frame));
  if (!writing_) StartWrite();
}

void PacketSocket::StartWrite() {
  writing_ = true;
  auto self = shared_from_this();
  asio::async_write(socket_, asio::buffer(queue_.front()), [self](std::error_code ec, size_t) {
    self->queued_bytes_ -= self->queue_.front().size();
    self->queue_.pop_front();
    if (ec) {
      self->Close();
      return;
    }
    if (self->queue_.empty()) {
      self->writing_ = false;
    } else {
      self->StartWrite();
    }
  });
}

void PacketSocket::Close() {
  if (failed_ && !socket_.is_open()) return;
  failed_ = true;
  std::error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  if (!writing_) {
    queue_.clear();
    queued_bytes_ = 0;
  }
}

Result<asio::ip::tcp::endpoint> ParseAddress(const std::string& addr) {
  std::string rest;
  bool v6 = false;
  if (addr.rfind("ipv4:", 0) == 0) {
    rest = addr.substr(5);
  } else if (addr.rfind("ipv6:", 0) == 0) {
    rest = addr.substr(5);
    v6 = true;
  } else {
    rest = addr;
  }
  auto colon = rest.rfind(':');
  if (colon == std::string::npos) {
    return Error(Errc::kInvalidArgument, "address '{}' has no port (ipv4:IP:PORT)", addr);
  }
  std::string host = rest.substr(0, colon);
  if (!host.empty() && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    v6 = true;
  }
  int port = 0;
  try {
    port = std::stoi(rest.substr(colon + 1));
  } catch (...) {
    port = -1;
  }
  if (port <= 0 || port > 65535) {
    return Error(Errc::kInvalidArgument, "address '{}': bad port", addr);
  }
  std::error_code ec;
  auto ip = asio::ip::make_address(host, ec);
  if (ec || ip.is_v6() != v6) {
    return Error(Errc::kInvalidArgument, "address '{}': '{}' is not an {} address", addr, host,
                 v6 ? "IPv6" : "IPv4");
  }
  return asio::ip::tcp::endpoint(ip, static_cast<uint16_t>(port));
}

}  // namespace bsr::replication
