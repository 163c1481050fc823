// PacketSocket: one TCP socket of a peer connection (the data or the meta socket):
// frame decoding on receive and a FIFO send queue with a single writer. Lives on the
// node's io_context thread; every method is called there.
#pragma once

#include <asio.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "protocol/dispatch.h"
#include "protocol/frame.h"
#include "storage/aligned_buffer.h"
#include "storage/page_cache_file.h"
#include "storage/splice_pipe.h"

namespace bsr::replication {

// Socket options of a peer connection (net options sndbuf-size, rcvbuf-size, tcp-cork).
struct SocketTuning {
  int sndbuf = 0;    // bytes; 0 = the kernel's automatic tuning
  int rcvbuf = 0;    // bytes; 0 = automatic
  bool cork = true;  // batch queued frames into one gathered write
};

// A received packet together with the bytes that back its views: Data's `data`
// points into frame.payload, or for a large Data/RsDataReply into `block`, which the
// payload was received into directly (its data starts 4 KiB aligned when the packet
// carries no digest). Both move with the Received.
struct Received {
  protocol::Frame frame;  // frame.payload is empty when the payload is in `block`
  protocol::Packet packet;
  storage::AlignedBuffer block;
  // With SetSpliceBlocks: the length of a Data/RsDataReply block the socket has not
  // received yet (0 when none). The packet's data view is empty until
  // PacketSocket::RecvBlock or RecvBlockToPipe took the block; one of them must run
  // before the next Recv().
  uint32_t block_pending = 0;
};

class PacketSocket : public std::enable_shared_from_this<PacketSocket> {
 public:
  PacketSocket(asio::ip::tcp::socket socket, protocol::SocketKind kind);

  protocol::SocketKind kind() const { return kind_; }
  asio::ip::tcp::socket& socket() { return socket_; }
  bool failed() const { return failed_; }
  size_t queued_bytes() const { return queued_bytes_; }
  std::string remote() const { return remote_; }
  // Bytes handed to the kernel and not yet acknowledged by the peer's TCP (SIOCOUTQ).
  size_t kernel_queued_bytes();

  // Applies sndbuf/rcvbuf (best before connect: the window scale is fixed then) and
  // the corking mode. Errors name the option.
  Status Tune(const SocketTuning& t);
  static Status TuneRaw(asio::ip::tcp::socket& sock, const SocketTuning& t);

  // After the feature handshake: both peers offered kFeatureBlockOutsideCrc, so data
  // blocks leave and may arrive outside the frame payload crc (protocol/frame.h).
  void SetBlockOutsideCrc(bool on);
  // Frame flags for EncodePacket/EncodeDataHead of frames queued on this socket.
  uint16_t frame_flags() const { return frame_flags_; }

  // Next packet; a kIo Status on a socket error or end of stream, kProtocol on a
  // malformed frame or a packet that belongs on the other socket.
  asio::awaitable<Result<std::unique_ptr<Received>>> Recv();

  // Large Data/RsDataReply blocks outside the frame crc and without a digest come back
  // from Recv() with the block still in the socket (Received::block_pending), so the
  // receiver can splice it into the backing file instead of copying it through memory.
  // Only for a receiver that handles block_pending on every such packet.
  void SetSpliceBlocks(bool on) { splice_blocks_ = on; }
  bool splice_blocks() const { return splice_blocks_; }
  // The pending block into r.block (as Recv does without SetSpliceBlocks); the packet's
  // data view then points at it. kIo on a socket error.
  asio::awaitable<Status> RecvBlock(Received& r);
  // The pending block into `pipe` without copying it (splice(2)). *in_pipe false: the
  // pipe could not hold it, and it was received into memory as RecvBlock does.
  asio::awaitable<Status> RecvBlockToPipe(Received& r, storage::SplicePipe& pipe, bool* in_pipe);
  // The data view of r's packet (Data or RsDataReply) now points at `block`.
  static void SetBlockView(Received& r, std::span<const uint8_t> block);
  // A block RecvBlockToPipe put in `pipe`, taken out into r.block (for a disk that can
  // no longer take a splice); the packet's data view then points at it.
  static Status TakeBlockFromPipe(Received& r, storage::SplicePipe& pipe);
  // An empty pipe for RecvBlockToPipe, from this socket's pool.
  Result<std::shared_ptr<storage::SplicePipe>> TakePipe() { return pipes_.Get(); }

  // Queues a complete frame; a send error closes the socket (the reader then fails).
  void Send(std::vector<uint8_t> frame);
  // Queues a frame whose last payload bytes are sent from `tail` without copying
  // them (one gathered write with `head`). `tail` must stay valid until the frame is
  // written or the socket is closed: `keep` holds it, or the caller guarantees it.
  void SendGather(std::vector<uint8_t> head, std::span<const uint8_t> tail,
                  std::shared_ptr<const void> keep);
  // Queues a frame whose last `length` payload bytes are sent straight from the page
  // cache of `file` at `offset` (sendfile: no copy in user space, none into the socket
  // buffer). The bytes are those in the page cache when the kernel takes them, not when
  // this is called: callers must accept that (resync.cc explains why a RsDataReply may).
  // A file that cannot be read there closes the socket (the header already left) and is
  // marked failed, so the next attempt reads through the backing device.
  void SendFile(std::vector<uint8_t> head, std::shared_ptr<storage::PageCacheFile> file,
                uint64_t offset, uint32_t length);
  template <typename T>
  void SendPacket(const T& packet, uint16_t volume = protocol::kNoVolume) {
    Send(protocol::EncodePacket(packet, volume, frame_flags_));
  }
  void Close();

 private:
  struct Outgoing {
    std::vector<uint8_t> head{};
    std::span<const uint8_t> tail{};
    std::shared_ptr<const void> keep{};
    // A file range instead of `tail` (SendFile), and how much of head + range left.
    std::shared_ptr<storage::PageCacheFile> file{};
    uint64_t file_offset = 0;
    uint32_t file_length = 0;
    size_t sent = 0;
    size_t size() const { return head.size() + tail.size() + file_length; }
  };

  void Enqueue(Outgoing out);
  void StartWrite();
  // Writes the front entry, a file range, with non-blocking send + sendfile calls;
  // waits for room in the socket buffer when they would block.
  void WriteFileEntry();
  // Sends what is left of the front entry: true when it is done (and popped), false
  // when it waits for room (a wait is armed) or failed (the socket is closed).
  bool WriteFileStep(int sock);
  void FailWrite(const std::string& why);
  // The pending Data/RsDataReply payload, received straight into an aligned buffer;
  // `taken` holds its first bytes when the caller already took them from the decoder.
  asio::awaitable<Result<std::unique_ptr<Received>>> RecvLargePayload(
      std::span<const uint8_t> taken = {});
  // SetSpliceBlocks: the pending frame's fixed fields are buffered; checks its crc and
  // returns the packet with the block left in the socket (or, with a digest, all of it).
  asio::awaitable<Result<std::unique_ptr<Received>>> DeferBlock();
  // Puts the pending block's bytes in pipe (if any) and the rest from the socket into
  // r.block; clears the pending state.
  asio::awaitable<Status> RecvBlockRest(Received& r, storage::SplicePipe* pipe);

  asio::ip::tcp::socket socket_;
  protocol::SocketKind kind_;
  protocol::StreamDecoder decoder_;
  std::deque<Outgoing> queue_;
  size_t queued_bytes_ = 0;
  bool writing_ = false;
  bool cork_ = false;    // tcp-cork: queued frames leave in one gathered write
  size_t in_write_ = 0;  // frames of the write in progress
  bool failed_ = false;
  bool exact_reads_ = false;  // after a large payload: read only what the next frame needs
  uint16_t frame_flags_ = 0;  // negotiated header flags (SetBlockOutsideCrc)
  bool splice_blocks_ = false;
  // A block left in the socket by DeferBlock: its bytes that came with the header, and
  // how many are still in the kernel.
  bool block_pending_ = false;
  std::vector<uint8_t> block_head_;
  uint32_t block_left_ = 0;
  // Room for a deferred frame's payload: only its fixed fields are ever written (the
  // crc check and the decoder need the whole length), so its pages stay untouched.
  std::unique_ptr<uint8_t[]> scratch_;
  size_t scratch_size_ = 0;
  storage::SplicePipePool pipes_{1u << 20};
  std::string remote_;
};

// "ipv4:10.1.1.31:7789" / "ipv6:[fd00::1]:7789" -> endpoint.
Result<asio::ip::tcp::endpoint> ParseAddress(const std::string& addr);

}  // namespace bsr::replication
