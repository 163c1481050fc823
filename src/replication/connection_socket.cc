#include "replication/connection_socket.h"

#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <asio/experimental/as_tuple.hpp>
#include <cstring>
#include <optional>

namespace bsr::replication {

using asio::experimental::as_tuple;

PacketSocket::PacketSocket(asio::ip::tcp::socket socket, protocol::SocketKind kind)
    : socket_(std::move(socket)), kind_(kind) {
  std::error_code ec;
  auto ep = socket_.remote_endpoint(ec);
  remote_ = ec ? std::string("?") : fmt::format("{}:{}", ep.address().to_string(), ep.port());
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
}

namespace {

// Payloads at least this large bypass the decoder's buffer (one copy less, and the
// block lands aligned for the disk write).
constexpr uint32_t kLargePayload = 32 * 1024;
// Blocks at least this large are left in the socket for a splice (SetSpliceBlocks):
// below it the pipe and ring round trip cost more than the copy they save.
constexpr uint32_t kSplicePayload = 128 * 1024;

// asio's default completion condition (transfer_all) moves at most 64 KiB per system
// call, with a handler dispatch and an epoll_wait in between: a 1 MiB block took 16
// sendmsg on the sender and 16 recv on the receiver. This one lets the kernel take or
// give as much as it can in each call.
struct TransferAllInLargeSteps {
  size_t operator()(const std::error_code& ec, size_t) const { return ec ? 0 : (16u << 20); }
};

}  // namespace

asio::awaitable<Result<std::unique_ptr<Received>>> PacketSocket::Recv() {
  if (block_pending_) {
    // The receiver skipped a deferred block: the stream cannot be read on from here.
    failed_ = true;
    co_return Error(Errc::kInternal, "{} socket to {}: a {}-byte block was left unread",
                    SocketKindName(kind_), remote_, block_head_.size() + block_left_);
  }
  for (;;) {
    auto f = decoder_.NextView();
    if (!f.ok()) co_return f.status();
    if (*f) {
      auto r = std::make_unique<Received>();
      r->frame.header = (*f)->header;
      r->frame.payload.assign((*f)->payload.begin(), (*f)->payload.end());
      auto p = protocol::DecodePacket(r->frame, kind_);
      if (!p.ok()) co_return p.status();
      r->packet = std::move(*p);
      exact_reads_ = false;
      co_return r;
    }
    if (failed_)
      co_return Error(Errc::kIo, "{} socket to {} closed", SocketKindName(kind_), remote_);
    // Large blocks usually follow each other (a resync, sequential writes): then
    // read just the next header, so the block after it is not copied out of the
    // decoder's buffer.
    size_t want = exact_reads_ ? decoder_.BytesWanted()
                               : std::max<size_t>(decoder_.BytesWanted(), 256 * 1024);
    if (const auto* h = decoder_.pending_header(); h != nullptr &&
                                                   protocol::BlockDigestAt(h->type) != 0 &&
                                                   h->payload_length >= kLargePayload) {
      const size_t fixed = protocol::BlockDigestAt(h->type) + 2u;
      if (!splice_blocks_ || !(h->flags & protocol::kFrameFlagBlockOutsideCrc) ||
          h->payload_length < kSplicePayload) {
        co_return co_await RecvLargePayload();
      }
      if (decoder_.buffered() >= fixed) co_return co_await DeferBlock();
      want = fixed - decoder_.buffered();  // just the fixed fields: the block stays put
    }
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

asio::awaitable<Result<std::unique_ptr<Received>>> PacketSocket::RecvLargePayload(
    std::span<const uint8_t> taken) {
  const protocol::FrameHeader& h = *decoder_.pending_header();
  const uint32_t length = h.payload_length;
  auto r = std::make_unique<Received>();
  // Placed so that a digest-less packet's block starts on a 4 KiB boundary: its fixed
  // fields end with the u16 digest length at BlockDigestAt.
  const size_t lead = storage::AlignedBuffer::kAlignment - (protocol::BlockDigestAt(h.type) + 2);
  r->block = storage::AlignedBuffer(lead + length);
  auto payload = r->block.span().subspan(lead);
  if (!taken.empty()) std::memcpy(payload.data(), taken.data(), taken.size());
  size_t have = taken.size() + decoder_.TakePendingPayload(payload.subspan(taken.size()));
  if (have < payload.size()) {
    auto [ec, n] =
        co_await asio::async_read(socket_, asio::buffer(payload.data() + have, length - have),
                                  TransferAllInLargeSteps{}, as_tuple(asio::use_awaitable));
    if (ec) {
      failed_ = true;
      co_return Error(Errc::kIo, "{} socket to {}: {} inside a {}-byte payload",
                      SocketKindName(kind_), remote_,
                      ec == asio::error::eof ? "peer closed the connection" : ec.message(), length);
    }
  }
  auto header = decoder_.FinishExternal(payload);
  if (!header.ok()) co_return header.status();
  r->frame.header = *header;
  auto p = protocol::DecodePacket(protocol::FrameView{*header, payload}, kind_);
  if (!p.ok()) co_return p.status();
  r->packet = std::move(*p);
  exact_reads_ = true;
  co_return r;
}

asio::awaitable<Result<std::unique_ptr<Received>>> PacketSocket::DeferBlock() {
  const protocol::FrameHeader h = *decoder_.pending_header();
  const size_t length = h.payload_length;
  const size_t at = protocol::BlockDigestAt(h.type);
  if (scratch_size_ < length) {
    scratch_.reset(new uint8_t[length]);  // not zero-filled: only the head is written
    scratch_size_ = length;
  }
  std::span<uint8_t> payload(scratch_.get(), length);
  const size_t have = decoder_.TakePendingPayload(payload);
  const uint16_t digest_length = static_cast<uint16_t>(payload[at] << 8 | payload[at + 1]);
  // data-integrity-alg: the digest is checked over the block, so it comes into memory.
  if (digest_length != 0) co_return co_await RecvLargePayload(payload.first(have));
  const size_t fixed = at + 2;
  // With the block outside the crc, the crc covers payload[0, fixed) only: the rest
  // of the span is never read, by this check or by the decoder (its view is dropped).
  auto header = decoder_.FinishExternal(payload);
  if (!header.ok()) co_return header.status();
  auto r = std::make_unique<Received>();
  r->frame.header = *header;
  auto p = protocol::DecodePacket(protocol::FrameView{*header, payload}, kind_);
  if (!p.ok()) co_return p.status();
  r->packet = std::move(*p);
  SetBlockView(*r, {});
  r->block_pending = static_cast<uint32_t>(length - fixed);
  block_head_.assign(payload.begin() + static_cast<ptrdiff_t>(fixed),
                     payload.begin() + static_cast<ptrdiff_t>(have));
  block_left_ = static_cast<uint32_t>(length - have);
  block_pending_ = true;
  exact_reads_ = true;
  co_return r;
}

void PacketSocket::SetBlockView(Received& r, std::span<const uint8_t> block) {
  if (auto* d = std::get_if<protocol::DataPacket>(&r.packet)) d->data = block;
  if (auto* d = std::get_if<protocol::RsDataReply>(&r.packet)) d->data = block;
}

Status PacketSocket::TakeBlockFromPipe(Received& r, storage::SplicePipe& pipe) {
  const size_t length = pipe.held();
  r.block = storage::AlignedBuffer(length);
  auto block = r.block.span().first(length);
  BSR_RETURN_IF_ERROR(pipe.Drain(block));
  SetBlockView(r, block);
  return Status::Ok();
}

asio::awaitable<Status> PacketSocket::RecvBlock(Received& r) {
  return RecvBlockRest(r, nullptr);
}

asio::awaitable<Status> PacketSocket::RecvBlockRest(Received& r, storage::SplicePipe* pipe) {
  if (!block_pending_) {
    co_return Error(Errc::kInternal, "{} socket to {}: no block pending", SocketKindName(kind_),
                    remote_);
  }
  const size_t length = r.block_pending;
  r.block = storage::AlignedBuffer(length);
  auto block = r.block.span().first(length);
  size_t have = 0;
  if (pipe != nullptr && pipe->held() > 0) {
    have = pipe->held();
    Status st = pipe->Drain(block);
    if (!st.ok()) {
      failed_ = true;
      co_return st.WithContext(fmt::format("{} socket to {}", SocketKindName(kind_), remote_));
    }
  } else {
    std::memcpy(block.data(), block_head_.data(), block_head_.size());
    have = block_head_.size();
  }
  if (have + block_left_ != length) {
    failed_ = true;
    co_return Error(Errc::kInternal, "{} socket to {}: block of {} bytes, {} + {} received",
                    SocketKindName(kind_), remote_, length, have, block_left_);
  }
  if (block_left_ > 0) {
    auto [ec, n] =
        co_await asio::async_read(socket_, asio::buffer(block.data() + have, block_left_),
                                  TransferAllInLargeSteps{}, as_tuple(asio::use_awaitable));
    if (ec) {
      failed_ = true;
      co_return Error(Errc::kIo, "{} socket to {}: {} inside a {}-byte block",
                      SocketKindName(kind_), remote_,
                      ec == asio::error::eof ? "peer closed the connection" : ec.message(), length);
    }
  }
  block_pending_ = false;
  block_head_.clear();
  block_left_ = 0;
  r.block_pending = 0;
  SetBlockView(r, block);
  co_return Status::Ok();
}

asio::awaitable<Status> PacketSocket::RecvBlockToPipe(Received& r, storage::SplicePipe& pipe,
                                                      bool* in_pipe) {
  *in_pipe = false;
  if (!block_pending_ || pipe.held() != 0 || r.block_pending > pipe.capacity()) {
    co_return co_await RecvBlockRest(r, nullptr);
  }
  if (!block_head_.empty()) {
    ssize_t n = pipe.Put(block_head_);
    // The head may be partly in the pipe then: the block is received from block_head_
    // again, and the pool closes a pipe that is not empty instead of reusing it.
    if (n < 0) co_return co_await RecvBlockRest(r, nullptr);
    block_head_.clear();
  }
  std::error_code ec;
  if (!socket_.native_non_blocking()) socket_.native_non_blocking(true, ec);
  if (ec) {
    failed_ = true;
    co_return Error(Errc::kIo, "{} socket to {}: non-blocking mode: {}", SocketKindName(kind_),
                    remote_, ec.message());
  }
  const int sock = socket_.native_handle();
  while (block_left_ > 0) {
    ssize_t n = pipe.FillFromSocket(sock, block_left_);
    if (n > 0) {
      block_left_ -= static_cast<uint32_t>(n);
      continue;
    }
    if (n == -ENOSPC) {
      // The pipes' slots went to small socket buffers: the block goes through memory.
      co_return co_await RecvBlockRest(r, &pipe);
    }
    if (n == -EAGAIN) {
      auto [wec] =
          co_await socket_.async_wait(asio::socket_base::wait_read, as_tuple(asio::use_awaitable));
      // Closed while the wait's completion was queued: its fd may already belong to a
      // new connection's socket.
      if (!wec && (failed_ || !socket_.is_open())) wec = asio::error::operation_aborted;
      if (!wec) continue;
      n = -wec.value();
    }
    failed_ = true;
    co_return Error(Errc::kIo, "{} socket to {}: {} inside a {}-byte block", SocketKindName(kind_),
                    remote_,
                    n == 0 ? std::string("peer closed the connection")
                           : fmt::format("splice: {}", std::strerror(static_cast<int>(-n))),
                    r.block_pending);
  }
  block_pending_ = false;
  r.block_pending = 0;
  *in_pipe = true;
  co_return Status::Ok();
}

void PacketSocket::SetBlockOutsideCrc(bool on) {
  frame_flags_ = on ? protocol::kFrameFlagBlockOutsideCrc : 0;
  decoder_.set_allowed_flags(frame_flags_);
}

void PacketSocket::Send(std::vector<uint8_t> frame) {
  Enqueue(Outgoing{.head = std::move(frame)});
}

void PacketSocket::SendGather(std::vector<uint8_t> head, std::span<const uint8_t> tail,
                              std::shared_ptr<const void> keep) {
  Enqueue(Outgoing{.head = std::move(head), .tail = tail, .keep = std::move(keep)});
}

void PacketSocket::SendFile(std::vector<uint8_t> head, std::shared_ptr<storage::PageCacheFile> file,
                            uint64_t offset, uint32_t length) {
  Enqueue(Outgoing{.head = std::move(head),
                   .file = std::move(file),
                   .file_offset = offset,
                   .file_length = length});
}

void PacketSocket::Enqueue(Outgoing out) {
  if (failed_) return;
  queued_bytes_ += out.size();
  queue_.push_back(std::move(out));
  if (!writing_) StartWrite();
}

void PacketSocket::StartWrite() {
  writing_ = true;
  auto self = shared_from_this();
  // With tcp-cork, everything queued meanwhile goes out in one gathered write (up to
  // 64 frames / 4 MiB): the frames share segments and each batch costs one sendmsg.
  // No TCP_CORK around a batch: it held each batch's sub-MSS tail (the last segment
  // of a 4 KiB Data block, a batch of acks) until the write completed, and cost two
  // setsockopt calls; without it 4 KiB random writes at QD32 ran 1.09-1.42x faster
  // with less CPU per write (docs/benchmarks.md, issue 6 session 4).
  if (queue_.front().file) return WriteFileEntry();
  size_t n = 1;
  if (cork_) {
    size_t bytes = queue_.front().size();
    while (n < queue_.size() && n < 64 && !queue_[n].file &&
           bytes + queue_[n].size() <= (4u << 20)) {
      bytes += queue_[n].size();
      ++n;
    }
  }
  in_write_ = n;
  std::vector<asio::const_buffer> bufs;
  bufs.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    bufs.push_back(asio::buffer(queue_[i].head));
    if (!queue_[i].tail.empty()) bufs.emplace_back(queue_[i].tail.data(), queue_[i].tail.size());
  }
  asio::async_write(socket_, bufs, TransferAllInLargeSteps{}, [self](std::error_code ec, size_t) {
    for (size_t i = 0; i < self->in_write_ && !self->queue_.empty(); ++i) {
      self->queued_bytes_ -= self->queue_.front().size();
      self->queue_.pop_front();
    }
    self->in_write_ = 0;
    if (ec) {
      self->writing_ = false;
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

void PacketSocket::WriteFileEntry() {
  std::error_code ec;
  if (!socket_.native_non_blocking()) socket_.native_non_blocking(true, ec);
  if (ec) return FailWrite(fmt::format("non-blocking mode: {}", ec.message()));
  const int sock = socket_.native_handle();
  // Consecutive file entries (a resync's replies) in one loop, not by recursion.
  while (!queue_.empty() && queue_.front().file) {
    if (!WriteFileStep(sock)) return;
  }
  if (queue_.empty()) {
    writing_ = false;
  } else {
    StartWrite();
  }
}

bool PacketSocket::WriteFileStep(int sock) {
  Outgoing& out = queue_.front();
  const size_t total = out.head.size() + out.file_length;
  while (out.sent < total) {
    ssize_t n;
    bool in_file = out.sent >= out.head.size();
    if (!in_file) {
      // MSG_MORE: the header shares its segment with the block that follows.
      n = ::send(sock, out.head.data() + out.sent, out.head.size() - out.sent,
                 MSG_DONTWAIT | MSG_NOSIGNAL | MSG_MORE);
      if (n < 0) n = -errno;
    } else {
      size_t done = out.sent - out.head.size();
      n = out.file->SendTo(sock, out.file_offset + done, total - out.sent);
    }
    if (n > 0) {
      out.sent += static_cast<size_t>(n);
      continue;
    }
    if (n == -EINTR) continue;
    if (n == -EAGAIN || n == -EWOULDBLOCK) {
      auto self = shared_from_this();
      socket_.async_wait(asio::socket_base::wait_write, [self](std::error_code wec) {
        if (wec) return self->FailWrite(wec.message());
        self->WriteFileEntry();
      });
      return false;
    }
    // A socket error ends the connection as any send error does; a file that ended
    // early or could not be read is also marked, so the resync reads it next time.
    bool socket_side = n == -EPIPE || n == -ECONNRESET || n == -ENOTCONN || n == -ESHUTDOWN;
    if (in_file && !socket_side) out.file->MarkFailed();
    std::string why = n == 0 ? fmt::format("the backing file ended before offset {}",
                                           out.file_offset + out.file_length)
                             : fmt::format("{} {}", in_file ? "sendfile" : "send",
                                           std::strerror(static_cast<int>(-n)));
    if (in_file && !socket_side) {
      spdlog::error("{} socket to {}: sending {} bytes at offset {} from the page cache: {}",
                    SocketKindName(kind_), remote_, out.file_length, out.file_offset, why);
    }
    FailWrite(why);
    return false;
  }
  queued_bytes_ -= out.size();
  queue_.pop_front();
  return true;
}

void PacketSocket::FailWrite(const std::string& why) {
  spdlog::debug("{} socket to {}: write failed: {}", SocketKindName(kind_), remote_, why);
  writing_ = false;
  Close();
}

size_t PacketSocket::kernel_queued_bytes() {
  if (!socket_.is_open()) return 0;
  int n = 0;
  if (::ioctl(socket_.native_handle(), SIOCOUTQ, &n) != 0 || n < 0) return 0;
  return static_cast<size_t>(n);
}

Status PacketSocket::TuneRaw(asio::ip::tcp::socket& sock, const SocketTuning& t) {
  std::error_code ec;
  if (t.sndbuf > 0) {
    sock.set_option(asio::socket_base::send_buffer_size(t.sndbuf), ec);
    if (ec) return Error(Errc::kIo, "sndbuf-size {}: {}", t.sndbuf, ec.message());
  }
  if (t.rcvbuf > 0) {
    sock.set_option(asio::socket_base::receive_buffer_size(t.rcvbuf), ec);
    if (ec) return Error(Errc::kIo, "rcvbuf-size {}: {}", t.rcvbuf, ec.message());
  }
  return Status::Ok();
}

Status PacketSocket::Tune(const SocketTuning& t) {
  cork_ = t.cork;
  return TuneRaw(socket_, t);
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
  std::optional<bool> declared_v6;  // from the "ipv4:" / "ipv6:" prefix
  if (addr.rfind("ipv4:", 0) == 0) {
    rest = addr.substr(5);
    declared_v6 = false;
  } else if (addr.rfind("ipv6:", 0) == 0) {
    rest = addr.substr(5);
    v6 = true;
    declared_v6 = true;
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
    if (declared_v6 == false) {
      return Error(Errc::kInvalidArgument, "address '{}': [{}] is IPv6 but the family is ipv4",
                   addr, host);
    }
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
