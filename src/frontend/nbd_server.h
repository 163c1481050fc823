// NbdServer: serves Exports over NBD (fixed newstyle) on a Unix socket and optionally
// TCP, many connections at once. Owned by one io_context thread: construct, call and
// destroy it there (or before the loop runs); Export callbacks must arrive there too.
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "common/status.h"
#include "frontend/export.h"

namespace bsr::frontend {

struct NbdServerOptions {
  std::string unix_path;             // empty: no Unix socket
  std::optional<uint16_t> tcp_port;  // 0 picks a free port (see tcp_port())
  std::string tcp_address = "127.0.0.1";
  // Back-pressure: a connection stops reading requests while this many (or this many
  // bytes) are in flight.
  size_t max_inflight_requests = 256;
  size_t max_inflight_bytes = 128 * 1024 * 1024;
};

class NbdConnection;

class NbdServer {
 public:
  NbdServer(asio::io_context& io, NbdServerOptions options);
  // Stop() and its callback must have run first; the destructor only closes sockets.
  ~NbdServer();
  NbdServer(const NbdServer&) = delete;
  NbdServer& operator=(const NbdServer&) = delete;

  // The empty name "" (the NBD default export) maps to `name` when it is the only
  // export or the first one added.
  void AddExport(const std::string& name, std::shared_ptr<Export> exp);
  // New opens of `name` fail; connections already using it keep it until they close.
  void RemoveExport(const std::string& name);

  // Binds and listens (a stale Unix socket file at the path is replaced).
  Status Start();
  // Stops accepting, ends every connection after its in-flight requests complete, then
  // runs `done` on the io_context thread.
  void Stop(std::function<void()> done);

  uint16_t tcp_port() const { return bound_tcp_port_; }
  size_t connection_count() const { return connections_.size(); }
  const NbdServerOptions& options() const { return options_; }

  // For connections.
  asio::io_context& io() const { return io_; }
  std::shared_ptr<Export> FindExport(const std::string& name, std::string* resolved) const;
  std::map<std::string, std::shared_ptr<Export>> exports() const { return exports_; }
  void OnConnectionDone(uint64_t id);

 private:
  void AcceptUnix();
  void AcceptTcp();
  void StartConnection(int fd, int family, std::string peer);
  void MaybeFinishStop();

  asio::io_context& io_;
  NbdServerOptions options_;
  std::map<std::string, std::shared_ptr<Export>> exports_;
  std::string default_export_;
  std::unique_ptr<asio::local::stream_protocol::acceptor> unix_acceptor_;
  std::unique_ptr<asio::ip::tcp::acceptor> tcp_acceptor_;
  uint16_t bound_tcp_port_ = 0;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, std::shared_ptr<NbdConnection>> connections_;
  int accepts_pending_ = 0;
  bool stopping_ = false;
  std::function<void()> stop_done_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace bsr::frontend
