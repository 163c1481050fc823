// bsrd's control-socket server: accepts bsrsetup connections on a Unix socket
// (mode 0600), decodes request frames and hands each to the daemon's handler.
// Runs on the daemon's io_context thread; sessions are only touched there.
#pragma once

#include <asio.hpp>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "control/message.h"

namespace bsr::control {

// One client connection. A handler answers a request with exactly one Finish();
// a streaming command (events2) sends Event() lines first. Requests on one
// session are handled one after another.
class Session : public std::enable_shared_from_this<Session> {
 public:
  explicit Session(asio::local::stream_protocol::socket socket);

  void Finish(const Reply& reply);
  void Event(const std::string& line);
  bool closed() const { return closed_; }
  // Called once when the client goes away (streams unsubscribe here).
  void OnClose(std::function<void()> fn) { on_close_ = std::move(fn); }

  asio::awaitable<void> Run(std::function<void(std::shared_ptr<Session>, Request)> handler);

 private:
  void Write(const nlohmann::json& j);
  asio::awaitable<void> Writer();
  void Close();

  asio::local::stream_protocol::socket socket_;
  std::deque<std::vector<uint8_t>> out_;
  asio::steady_timer wake_;
  bool closed_ = false;
  bool awaiting_reply_ = false;
  std::function<void()> on_close_;
};

class Server {
 public:
  using Handler = std::function<void(std::shared_ptr<Session>, Request)>;

  Server(asio::io_context& io, std::string socket_path, Handler handler);
  ~Server();

  // Binds the socket (creating its directory; replacing a stale socket file that no
  // live daemon answers on, refusing when one does) and starts accepting.
  Status Start();
  void Stop();
  const std::string& path() const { return path_; }

 private:
  asio::awaitable<void> Accept();

  asio::io_context& io_;
  std::string path_;
  Handler handler_;
  std::unique_ptr<asio::local::stream_protocol::acceptor> acceptor_;
};

}  // namespace bsr::control
