#include "frontend/nbd_server.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <asio/post.hpp>
#include <filesystem>

#include "frontend/nbd_connection.h"

namespace bsr::frontend {

NbdServer::NbdServer(asio::io_context& io, NbdServerOptions options)
    : io_(io), options_(std::move(options)) {}

NbdServer::~NbdServer() {
  *alive_ = false;
  asio::error_code ec;
  if (unix_acceptor_) unix_acceptor_->close(ec);
  if (tcp_acceptor_) tcp_acceptor_->close(ec);
  if (!options_.unix_path.empty() && unix_acceptor_) {
    std::filesystem::remove(options_.unix_path, ec);
  }
}

void NbdServer::AddExport(const std::string& name, std::shared_ptr<Export> exp) {
  if (exports_.empty() || default_export_.empty()) default_export_ = name;
  exports_[name] = std::move(exp);
}

void NbdServer::RemoveExport(const std::string& name) {
  exports_.erase(name);
  if (default_export_ == name) default_export_ = exports_.empty() ? "" : exports_.begin()->first;
}

std::shared_ptr<Export> NbdServer::FindExport(const std::string& name,
                                              std::string* resolved) const {
  const std::string& key = name.empty() ? default_export_ : name;
  auto it = exports_.find(key);
  if (it == exports_.end()) return nullptr;
  *resolved = key;
  return it->second;
}

Status NbdServer::Start() {
  asio::error_code ec;
  if (!options_.unix_path.empty()) {
    struct stat st {};
    if (::lstat(options_.unix_path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        return Error(Errc::kExists, "nbd socket {}: exists and is not a socket",
                     options_.unix_path);
      }
      ::unlink(options_.unix_path.c_str());  // left by a process that died
    }
    auto acceptor = std::make_unique<asio::local::stream_protocol::acceptor>(io_);
    asio::local::stream_protocol::endpoint endpoint(options_.unix_path);
    acceptor->open(endpoint.protocol(), ec);
    if (!ec) acceptor->bind(endpoint, ec);
    if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return Error(Errc::kIo, "nbd socket {}: {}", options_.unix_path, ec.message());
    unix_acceptor_ = std::move(acceptor);
    AcceptUnix();
    spdlog::info("nbd: listening on unix:{}", options_.unix_path);
  }
  if (options_.tcp_port) {
    auto address = asio::ip::make_address(options_.tcp_address, ec);
    if (ec)
      return Error(Errc::kInvalidArgument, "nbd tcp address '{}': {}", options_.tcp_address,
                   ec.message());
    asio::ip::tcp::endpoint endpoint(address, *options_.tcp_port);
    auto acceptor = std::make_unique<asio::ip::tcp::acceptor>(io_);
    acceptor->open(endpoint.protocol(), ec);
    if (!ec) acceptor->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor->bind(endpoint, ec);
    if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return Error(Errc::kIo, "nbd tcp {}:{}: {}", options_.tcp_address, *options_.tcp_port,
                   ec.message());
    }
    bound_tcp_port_ = acceptor->local_endpoint().port();
    tcp_acceptor_ = std::move(acceptor);
    AcceptTcp();
    spdlog::info("nbd: listening on tcp {}:{}", options_.tcp_address, bound_tcp_port_);
  }
  return Status::Ok();
}

void NbdServer::AcceptUnix() {
  ++accepts_pending_;
  unix_acceptor_->async_accept(
      [this, alive = alive_](const asio::error_code& ec, asio::local::stream_protocol::socket s) {
        if (!*alive) return;
        --accepts_pending_;
        if (stopping_) return MaybeFinishStop();
        if (!ec) {
          StartConnection(s.release(), AF_UNIX, "unix");
        } else {
          spdlog::warn("nbd: accept on {}: {}", options_.unix_path, ec.message());
        }
        AcceptUnix();
      });
}

void NbdServer::AcceptTcp() {
  ++accepts_pending_;
  tcp_acceptor_->async_accept(
      [this, alive = alive_](const asio::error_code& ec, asio::ip::tcp::socket s) {
        if (!*alive) return;
        --accepts_pending_;
        if (stopping_) return MaybeFinishStop();
        if (!ec) {
          asio::error_code ignored;
          s.set_option(asio::ip::tcp::no_delay(true), ignored);
          auto remote = s.remote_endpoint(ignored);
          std::string peer = fmt::format("tcp {}:{}", remote.address().to_string(), remote.port());
          int family = remote.address().is_v6() ? AF_INET6 : AF_INET;
          StartConnection(s.release(), family, std::move(peer));
        } else {
          spdlog::warn("nbd: accept on tcp: {}", ec.message());
        }
        AcceptTcp();
      });
}

void NbdServer::StartConnection(int fd, int family, std::string peer) {
  int protocol = family == AF_UNIX ? 0 : IPPROTO_TCP;
  asio::error_code ec;
  asio::generic::stream_protocol::socket socket(io_);
  socket.assign(asio::generic::stream_protocol(family, protocol), fd, ec);
  if (ec) {
    ::close(fd);
    spdlog::warn("nbd: adopt connection: {}", ec.message());
    return;
  }
  uint64_t id = next_id_++;
  auto conn = std::make_shared<NbdConnection>(this, id, std::move(socket), peer);
  connections_[id] = conn;
  spdlog::debug("nbd: connection {} from {}", id, peer);
  conn->Start();
}

void NbdServer::OnConnectionDone(uint64_t id) {
  // Keep the connection alive until its coroutine has fully returned.
  asio::post(io_, [this, alive = alive_, id] {
    if (!*alive) return;
    connections_.erase(id);
    MaybeFinishStop();
  });
}

void NbdServer::Stop(std::function<void()> done) {
  stopping_ = true;
  stop_done_ = std::move(done);
  asio::error_code ec;
  if (unix_acceptor_) unix_acceptor_->close(ec);
  if (tcp_acceptor_) tcp_acceptor_->close(ec);
  if (!options_.unix_path.empty() && unix_acceptor_) {
    std::filesystem::remove(options_.unix_path, ec);
  }
  for (auto& [id, conn] : connections_) conn->Shutdown();
  asio::post(io_, [this, alive = alive_] {
    if (*alive) MaybeFinishStop();
  });
}

void NbdServer::MaybeFinishStop() {
  if (!stopping_ || accepts_pending_ > 0 || !connections_.empty() || !stop_done_) return;
  auto done = std::move(stop_done_);
  stop_done_ = nullptr;
  done();
}

}  // namespace bsr::frontend
