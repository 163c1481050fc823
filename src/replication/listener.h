// Listener: one TCP listening socket per local address, shared by every Connection
// whose path uses that address (a node's connections to several peers usually share
// one port). It reads each incoming socket's Preamble and hands the socket to the
// Connection registered for (resource, sender node id). io_context thread only.
#pragma once

#include <asio.hpp>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "common/status.h"
#include "protocol/handshake_packets.h"
#include "replication/connection_socket.h"

namespace bsr::replication {

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  using Handler = std::function<void(std::shared_ptr<PacketSocket>, protocol::Preamble)>;

  // The listener of `local` (created and bound on first use) with `handler`
  // registered for (resource, peer_node_id) and local node id `my_node_id`.
  static Result<std::shared_ptr<Listener>> Register(asio::io_context& io,
                                                    const asio::ip::tcp::endpoint& local,
                                                    const std::string& resource, int my_node_id,
                                                    int peer_node_id, Handler handler);
  // Removes the registration; the socket closes with the last one.
  void Unregister(const std::string& resource, int peer_node_id);

  ~Listener();

 private:
  Listener(asio::io_context& io, asio::ip::tcp::endpoint local);
  asio::awaitable<void> AcceptLoop();
  asio::awaitable<void> ReadPreamble(std::shared_ptr<PacketSocket> sock);

  asio::io_context& io_;
  asio::ip::tcp::endpoint local_;
  asio::ip::tcp::acceptor acceptor_;
  struct Entry {
    int my_node_id;
    Handler handler;
  };
  std::map<std::pair<std::string, int>, Entry> handlers_;  // (resource, peer id)
};

}  // namespace bsr::replication
