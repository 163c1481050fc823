#include "control/server.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <filesystem>

namespace bsr::control {

using asio::awaitable;
using asio::use_awaitable;
using asio::local::stream_protocol;

Session::Session(stream_protocol::socket socket)
    : socket_(std::move(socket)), wake_(socket_.get_executor()) {
  wake_.expires_at(asio::steady_timer::time_point::max());
}

void Session::Finish(const Reply& reply) {
  awaiting_reply_ = false;
  Write(ToJson(reply));
}

void Session::Event(const std::string& line) {
  Write({{"event", line}});
}

void Session::Write(const nlohmann::json& j) {
  if (closed_) return;
  out_.push_back(EncodeFrame(j));
  wake_.cancel_one();
}

awaitable<void> Session::Writer() {
  auto self = shared_from_this();
  while (!closed_) {
    if (out_.empty()) {
      asio::error_code ec;
      co_await wake_.async_wait(asio::redirect_error(use_awaitable, ec));
      continue;
    }
    asio::error_code ec;
    co_await asio::async_write(socket_, asio::buffer(out_.front()),
                               asio::redirect_error(use_awaitable, ec));
    if (ec) {
      Close();
      co_return;
    }
    out_.pop_front();
  }
}

void Session::Close() {
  if (closed_) return;
  closed_ = true;
  asio::error_code ec;
  socket_.close(ec);
  wake_.cancel();
  if (on_close_) std::exchange(on_close_, nullptr)();
}

awaitable<void> Session::Run(std::function<void(std::shared_ptr<Session>, Request)> handler) {
  auto self = shared_from_this();
  asio::co_spawn(socket_.get_executor(), Writer(), asio::detached);
  FrameDecoder decoder;
  std::array<uint8_t, 65536> buf;
  while (!closed_) {
    asio::error_code ec;
    size_t n = co_await socket_.async_read_some(asio::buffer(buf),
                                                asio::redirect_error(use_awaitable, ec));
    if (ec) break;
    decoder.Feed({buf.data(), n});
    for (;;) {
      auto frame = decoder.Next();
      if (!frame.ok()) {
        spdlog::warn("control: dropping client: {}", frame.status().message());
        Close();
        co_return;
      }
      if (!*frame) break;
      auto req = RequestFromJson(**frame);
      if (!req.ok()) {
        Finish(Reply::Fail(req.status()));
        continue;
      }
      if (awaiting_reply_) {
        Finish(Reply::Fail(Error(Errc::kBusy, "one request at a time per connection")));
        continue;
      }
      awaiting_reply_ = true;
      handler(self, std::move(*req));
    }
  }
  // The client half-closed: let a pending reply and queued frames drain first,
  // unless this is an event stream, which ends with its reader.
  while (!closed_ && !on_close_ && (awaiting_reply_ || !out_.empty())) {
    asio::steady_timer t(socket_.get_executor(), std::chrono::milliseconds(5));
    co_await t.async_wait(use_awaitable);
  }
  Close();
}

Server::Server(asio::io_context& io, std::string socket_path, Handler handler)
    : io_(io), path_(std::move(socket_path)), handler_(std::move(handler)) {}

Server::~Server() {
  Stop();
}

Status Server::Start() {
  namespace fs = std::filesystem;
  std::error_code fec;
  fs::path dir = fs::path(path_).parent_path();
  if (!dir.empty()) fs::create_directories(dir, fec);
  if (fs::exists(path_)) {
    // A live daemon answers; a stale socket from a crashed one does not.
    stream_protocol::socket probe(io_);
    asio::error_code ec;
    probe.connect(stream_protocol::endpoint(path_), ec);
    if (!ec) return Error(Errc::kExists, "another bsrd is already listening on {}", path_);
    fs::remove(path_, fec);
  }
  try {
    acceptor_ = std::make_unique<stream_protocol::acceptor>(io_, stream_protocol::endpoint(path_));
  } catch (const std::system_error& e) {
    return Error(Errc::kIo, "cannot listen on {}: {}", path_, e.what());
  }
  ::chmod(path_.c_str(), 0600);
  asio::co_spawn(io_, Accept(), asio::detached);
  return Status::Ok();
}

void Server::Stop() {
  if (!acceptor_) return;
  asio::error_code ec;
  acceptor_->close(ec);
  acceptor_.reset();
  std::error_code fec;
  std::filesystem::remove(path_, fec);
}

awaitable<void> Server::Accept() {
  while (acceptor_ && acceptor_->is_open()) {
    asio::error_code ec;
    auto sock = co_await acceptor_->async_accept(asio::redirect_error(use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      spdlog::warn("control: accept failed: {}", ec.message());
      continue;
    }
    auto session = std::make_shared<Session>(std::move(sock));
    asio::co_spawn(io_, session->Run(handler_), asio::detached);
  }
}

}  // namespace bsr::control
