#include "frontend/nbd_connection.h"

#include <spdlog/spdlog.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/redirect_error.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <cstring>
#include <utility>

#include "frontend/nbd_proto.h"
#include "frontend/nbd_server.h"
#include "storage/completion_scope.h"

namespace bsr::frontend {
namespace {

constexpr size_t kReadBufferSize = 256 * 1024;
// Reads at least this large bypass the read buffer and land in their destination.
constexpr size_t kDirectReadThreshold = 64 * 1024;

// asio's default completion condition (transfer_all) reads at most 64 KiB per system
// call, with a handler dispatch (and, when the client is slower, an epoll_wait) between
// calls: a 1 MiB write payload took 16 recv. This one lets each recv take all the
// socket holds (the peer sockets do the same, replication/connection_socket.cc).
struct TransferAllInLargeSteps {
  size_t operator()(const asio::error_code& ec, size_t) const { return ec ? 0 : (16u << 20); }
};

// A closed connection, told apart from I/O errors for the log.
struct ConnectionEnd {
  std::string why;
};

}  // namespace

NbdConnection::NbdConnection(NbdServer* server, uint64_t id,
                             asio::generic::stream_protocol::socket socket, std::string peer)
    : server_(server),
      id_(id),
      socket_(std::move(socket)),
      peer_(std::move(peer)),
      wake_(socket_.get_executor()),
      rbuf_(kReadBufferSize) {}

void NbdConnection::Start() {
  asio::co_spawn(socket_.get_executor(), Run(), asio::detached);
}

void NbdConnection::Shutdown() {
  shutting_down_ = true;
  asio::error_code ec;
  // Ends the pending read; replies still go out.
  socket_.shutdown(asio::socket_base::shutdown_receive, ec);
  Wake();
}

asio::awaitable<void> NbdConnection::Run() {
  auto self = shared_from_this();
  std::string why = "client disconnected";
  try {
    if (co_await Handshake()) co_await Transmission();
  } catch (const ConnectionEnd& end) {
    why = end.why;
  } catch (const std::system_error& e) {
    if (e.code() != asio::error::eof) why = e.code().message();
  } catch (const std::bad_alloc&) {
    why = "out of memory";
  }
  spdlog::debug("nbd connection {} ({}): closing: {}", id_, peer_, why);
  defer_replies_ = false;
  FlushReplies();
  // Buffers of requests still in the kernel must live until they complete, and their
  // replies still go out when the socket allows.
  while (inflight_ > 0 || writing_count_ > 0) co_await WaitForWake();
  asio::error_code ec;
  socket_.shutdown(asio::socket_base::shutdown_both, ec);
  socket_.close(ec);
  if (opened_) {
    opened_ = false;
    export_->Close(open_context_);
  }
  server_->OnConnectionDone(id_);
}

asio::awaitable<void> NbdConnection::WaitForWake() {
  wake_.expires_at(asio::steady_timer::time_point::max());
  asio::error_code ec;
  wake_waiting_ = true;
  co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  wake_waiting_ = false;
}

void NbdConnection::Wake() {
  // Nothing to cancel (and no timer-queue lock to take) unless the coroutine waits.
  if (wake_waiting_) wake_.cancel();
}

asio::awaitable<void> NbdConnection::ReadExact(uint8_t* dst, size_t n) {
  if (n == 0) co_return;
  size_t have = rend_ - rbegin_;
  size_t take = std::min(have, n);
  std::memcpy(dst, rbuf_.data() + rbegin_, take);
  rbegin_ += take;
  dst += take;
  n -= take;
  if (n == 0) co_return;
  rbegin_ = rend_ = 0;
  // The requests read so far are dispatched: their replies go out before this thread
  // waits for more (the client may be waiting for them before it sends more).
  FlushReplies();
  if (inflight_ > 0) {
    // Completions already posted send their replies before this thread tries the
    // socket again: the client waits for them, and the read below is likely to find
    // nothing yet.
    co_await asio::post(socket_.get_executor(), asio::use_awaitable);
  }
  if (n >= kDirectReadThreshold) {
    co_await asio::async_read(socket_, asio::buffer(dst, n), TransferAllInLargeSteps{},
                              asio::use_awaitable);
    co_return;
  }
  while (rend_ < n) {
    rend_ += co_await socket_.async_read_some(
        asio::buffer(rbuf_.data() + rend_, rbuf_.size() - rend_), asio::use_awaitable);
  }
  std::memcpy(dst, rbuf_.data(), n);
  rbegin_ = n;
}

asio::awaitable<void> NbdConnection::Drain(uint64_t n) {
  std::vector<uint8_t> sink(std::min<uint64_t>(n, 1 << 20));
  while (n > 0) {
    size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, sink.size()));
    co_await ReadExact(sink.data(), chunk);
    n -= chunk;
  }
}

asio::awaitable<bool> NbdConnection::Handshake() {
  std::vector<uint8_t> greeting = nbd::EncodeGreeting();
  co_await asio::async_write(socket_, asio::buffer(greeting), asio::use_awaitable);
  uint8_t flags[4];
  co_await ReadExact(flags, sizeof(flags));
  auto client = nbd::ParseClientFlags(flags);
  if (!client.ok()) throw ConnectionEnd{client.status().message()};
  client_flags_ = *client;
  std::vector<uint8_t> data;
  for (;;) {
    uint8_t header[nbd::kOptionHeaderSize];
    co_await ReadExact(header, sizeof(header));
    auto option = nbd::ParseOptionHeader(header);
    if (!option.ok()) throw ConnectionEnd{option.status().message()};
    data.resize(option->length);
    co_await ReadExact(data.data(), data.size());
    nbd::OptionOutcome outcome;
    if (shutting_down_ && option->option != nbd::kOptAbort) {
      nbd::AppendOptionReply(&outcome.reply, option->option, nbd::kRepErrShutdown);
    } else {
      outcome = nbd::HandleOption(option->option, data, client_flags_, *this);
    }
    if (!outcome.log.empty()) spdlog::info("nbd connection {} ({}): {}", id_, peer_, outcome.log);
    if (outcome.action == nbd::OptionAction::kClose) throw ConnectionEnd{outcome.log};
    if (!outcome.reply.empty()) {
      co_await asio::async_write(socket_, asio::buffer(outcome.reply), asio::use_awaitable);
    }
    if (outcome.action == nbd::OptionAction::kAbort) co_return false;
    if (outcome.action == nbd::OptionAction::kTransmission) co_return true;
  }
}

std::vector<std::pair<std::string, std::string>> NbdConnection::ListExports() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [name, exp] : server_->exports())
    out.emplace_back(name, exp->Info().description);
  return out;
}

std::optional<ExportInfo> NbdConnection::Lookup(std::string_view name) const {
  std::string resolved;
  auto exp = server_->FindExport(std::string(name), &resolved);
  if (!exp) return std::nullopt;
  return exp->Info();
}

Status NbdConnection::OpenExport(std::string_view name) {
  std::string resolved;
  auto exp = server_->FindExport(std::string(name), &resolved);
  if (!exp) return Error(Errc::kNotFound, "no export named '{}'", name);
  if (opened_) return Error(Errc::kState, "an export is already open on this connection");
  OpenContext context{resolved, peer_, id_};
  BSR_RETURN_IF_ERROR(exp->Open(context));
  export_ = std::move(exp);
  info_ = export_->Info();
  open_context_ = std::move(context);
  opened_ = true;
  spdlog::debug("nbd connection {} ({}): export '{}' size {}", id_, peer_, resolved, info_.size);
  return Status::Ok();
}

asio::awaitable<void> NbdConnection::Transmission() {
  const NbdServerOptions& limits = server_->options();
  // Replies are written directly when the socket takes them (StartWrite): that write
  // must never block this thread.
  asio::error_code nb_ec;
  socket_.non_blocking(true, nb_ec);
  if (nb_ec) throw ConnectionEnd{"cannot make the socket non-blocking: " + nb_ec.message()};
  for (;;) {
    while ((inflight_ >= limits.max_inflight_requests ||
            inflight_bytes_ >= limits.max_inflight_bytes) &&
           !shutting_down_) {
      FlushReplies();
      co_await WaitForWake();
    }
    if (shutting_down_) throw ConnectionEnd{"server shutting down"};
    uint8_t header[nbd::kRequestSize];
    co_await ReadExact(header, sizeof(header));
    auto request = nbd::ParseRequest(header);
    if (!request.ok()) throw ConnectionEnd{request.status().message()};
    if (request->type == nbd::kCmdDisc) throw ConnectionEnd{"client sent NBD_CMD_DISC"};
    nbd::RequestCheck check = nbd::CheckRequest(*request, info_);
    if (check.close) throw ConnectionEnd{check.why};
    if (check.error != 0) {
      spdlog::debug("nbd connection {}: {} refused: {}", id_, nbd::CommandName(request->type),
                    check.why);
      if (check.payload > 0) co_await Drain(check.payload);
      QueueReply(check.error, request->cookie, nullptr);
      continue;
    }
    auto pending = NewPending();
    pending->request = *request;
    if (request->type == nbd::kCmdRead || request->type == nbd::kCmdWrite) {
      pending->buffer = pool_.Get(request->length);
    }
    if (request->type == nbd::kCmdWrite) {
      co_await ReadExact(pending->buffer.data(), request->length);
    }
    Dispatch(std::move(pending));
  }
}

std::unique_ptr<NbdConnection::Pending> NbdConnection::NewPending() {
  if (free_pending_.empty()) return std::make_unique<Pending>();
  std::unique_ptr<Pending> p = std::move(free_pending_.back());
  free_pending_.pop_back();
  return p;
}

void NbdConnection::Recycle(std::unique_ptr<Pending> pending) {
  // Moving the buffer out leaves the request without one (an empty buffer, which the
  // pool ignores), so a reused request without payload has none.
  pool_.Put(std::move(pending->buffer));
  // At most one per request the client may have in flight.
  if (free_pending_.size() < server_->options().max_inflight_requests) {
    free_pending_.push_back(std::move(pending));
  }
}

void NbdConnection::Dispatch(std::unique_ptr<Pending> owned) {
  // A request served from the page cache completes at scope.RunQueued() below, not
  // from a handler posted behind the reactor's next poll; its reply waits in out_
  // for the next FlushReplies (before this thread reads the socket again).
  storage::CompletionScope scope(server_->io());
  defer_replies_ = true;
  Pending* pending = owned.release();  // back in OnDone
  const nbd::Request& req = pending->request;
  ++inflight_;
  inflight_bytes_ += pending->buffer.size();
  bool fua = (req.flags & nbd::kCmdFlagFua) != 0;
  // Two plain pointers: std::function keeps them inline (no allocation per request).
  // The connection outlives the callback: Run() waits for inflight_ to reach zero.
  IoCallback done = [this, pending](IoResult result) { OnDone(pending, std::move(result)); };
  switch (req.type) {
    case nbd::kCmdRead: export_->Read(req.offset, pending->buffer.span(), std::move(done)); break;
    case nbd::kCmdWrite:
      export_->Write(req.offset, pending->buffer.span(), fua, std::move(done));
      break;
    case nbd::kCmdFlush: export_->Flush(std::move(done)); break;
    case nbd::kCmdTrim: export_->Trim(req.offset, req.length, fua, std::move(done)); break;
    case nbd::kCmdWriteZeroes:
      export_->WriteZeroes(req.offset, req.length, fua, (req.flags & nbd::kCmdFlagNoHole) != 0,
                           std::move(done));
      break;
    default: done(IoResult{EINVAL, Error(Errc::kInvalidArgument, "unknown command")}); break;
  }
  scope.RunQueued();
  defer_replies_ = false;
}

void NbdConnection::OnDone(Pending* raw, IoResult result) {
  std::unique_ptr<Pending> pending(raw);
  --inflight_;
  inflight_bytes_ -= pending->buffer.size();
  const nbd::Request& req = pending->request;
  if (!result.ok()) {
    spdlog::warn("nbd connection {}: {} offset {} length {} failed: {}", id_,
                 nbd::CommandName(req.type), req.offset, req.length, result.status.ToString());
  }
  uint32_t error = nbd::ErrnoToNbd(result.err);
  uint64_t cookie = req.cookie;
  if (result.ok() && req.type == nbd::kCmdRead) {
    QueueReply(error, cookie, std::move(pending));
  } else {
    Recycle(std::move(pending));
    QueueReply(error, cookie, nullptr);
  }
  Wake();
}

void NbdConnection::QueueReply(uint32_t error, uint64_t cookie, std::unique_ptr<Pending> data) {
  if (write_failed_) {
    if (data) Recycle(std::move(data));
    return;
  }
  OutMessage& msg = out_.emplace_back();
  nbd::EncodeSimpleReply(msg.header, error, cookie);
  msg.data = std::move(data);
  // Goes out when the current write ends, or with the batch Dispatch is running.
  if (writing_count_ > 0 || defer_replies_) return;
  if (inflight_ == 0) {
    // Nothing else can join this reply soon (QD1): send it now, before this thread
    // looks at the socket for the next request.
    StartWrite();
  } else {
    // More completions are likely in this batch of handlers (one io_uring reap
    // finishes many): one socket write for all of them at its end.
    ScheduleFlush();
  }
}

void NbdConnection::FlushReplies() {
  if (writing_count_ == 0 && !out_.empty() && !write_failed_) StartWrite();
}

void NbdConnection::ScheduleFlush() {
  if (flush_scheduled_) return;
  flush_scheduled_ = true;
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    self->flush_scheduled_ = false;
    self->FlushReplies();
  });
}

// The only writer of the socket in transmission: gathers queued replies into one
// write; replies queued meanwhile go in the next one. The write is tried at once
// (the socket is non-blocking); only what the socket does not take waits in asio,
// so a reply usually costs one sendmsg and no completion handler.
void NbdConnection::StartWrite() {
  while (!out_.empty() && writing_count_ == 0) {
    // The gather list lives in the connection (one write at a time), so queuing a
    // batch of replies allocates nothing.
    size_t count = 0;
    size_t n = 0;
    size_t total = 0;
    for (auto it = out_.begin(); it != out_.end(); ++it, ++count) {
      size_t need = it->data ? 2 : 1;
      if (n + need > gather_.size()) break;
      gather_[n++] = asio::const_buffer(it->header, sizeof(it->header));
      if (it->data)
        gather_[n++] = asio::const_buffer(it->data->buffer.data(), it->data->buffer.size());
      total += sizeof(it->header) + (it->data ? it->data->buffer.size() : 0);
    }
    writing_count_ = count;
    asio::error_code ec;
    size_t sent = socket_.write_some(std::span<const asio::const_buffer>(gather_.data(), n), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      ec = {};
      sent = 0;
    }
    if (ec || sent == total) {
      OnWritten(ec);
      continue;
    }
    // The socket took part of it: the rest goes out asynchronously.
    size_t first = 0;
    while (sent >= gather_[first].size()) sent -= gather_[first++].size();
    gather_[first] += sent;
    asio::async_write(socket_,
                      std::span<const asio::const_buffer>(gather_.data() + first, n - first),
                      [self = shared_from_this()](const asio::error_code& ec, size_t) {
                        self->OnWritten(ec);
                        if (!self->out_.empty()) self->StartWrite();
                      });
    return;
  }
}

// The messages of the finished write (writing_count_ of them) leave the queue.
void NbdConnection::OnWritten(const asio::error_code& ec) {
  for (size_t i = 0; i < writing_count_; ++i) {
    OutMessage& sent = out_.front();
    if (sent.data) Recycle(std::move(sent.data));
    out_.pop_front();
  }
  writing_count_ = 0;
  if (ec) {
    // The client is gone: stop reading too; pending replies are dropped.
    write_failed_ = true;
    for (OutMessage& m : out_) {
      if (m.data) Recycle(std::move(m.data));
    }
    out_.clear();
    asio::error_code ignored;
    socket_.shutdown(asio::socket_base::shutdown_both, ignored);
  }
  Wake();
}

}  // namespace bsr::frontend
