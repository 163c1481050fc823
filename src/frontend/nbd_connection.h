// One NBD client connection: handshake, then pipelined requests with replies possibly
// out of order through a single writer. Lives on the NbdServer's io_context thread.
#pragma once

#include <array>
#include <asio/awaitable.hpp>
#include <asio/buffer.hpp>
#include <asio/generic/stream_protocol.hpp>
#include <asio/steady_timer.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "frontend/export.h"
#include "frontend/nbd_parse.h"
#include "frontend/nbd_proto.h"
#include "storage/aligned_buffer.h"
#include "storage/buffer_pool.h"

namespace bsr::frontend {

class NbdServer;

class NbdConnection : public std::enable_shared_from_this<NbdConnection>,
                      public nbd::OptionCatalog {
 public:
  NbdConnection(NbdServer* server, uint64_t id, asio::generic::stream_protocol::socket socket,
                std::string peer);

  // Runs the connection until it ends; then tells the server.
  void Start();
  // Stop reading requests; in-flight ones complete and are answered, then it closes.
  void Shutdown();

  // OptionCatalog.
  std::vector<std::pair<std::string, std::string>> ListExports() const override;
  std::optional<ExportInfo> Lookup(std::string_view name) const override;
  Status OpenExport(std::string_view name) override;

 private:
  struct Pending {
    nbd::Request request;
    storage::AlignedBuffer buffer;
  };
  struct OutMessage {
    uint8_t header[nbd::kSimpleReplySize];
    std::unique_ptr<Pending> data;  // READ payload follows the header when set
  };

  asio::awaitable<void> Run();
  asio::awaitable<bool> Handshake();
  asio::awaitable<void> Transmission();
  asio::awaitable<void> ReadExact(uint8_t* dst, size_t n);
  asio::awaitable<void> Drain(uint64_t n);
  asio::awaitable<void> WaitForWake();
  void Wake();
  // Request objects are recycled: no allocation per request once the connection runs.
  std::unique_ptr<Pending> NewPending();
  void Recycle(std::unique_ptr<Pending> pending);
  void Dispatch(std::unique_ptr<Pending> pending);
  void OnDone(Pending* pending, IoResult result);
  void QueueReply(uint32_t error, uint64_t cookie, std::unique_ptr<Pending> data);
  void FlushReplies();
  void ScheduleFlush();
  void StartWrite();
  void OnWritten(const asio::error_code& ec);

  NbdServer* server_;
  uint64_t id_;
  asio::generic::stream_protocol::socket socket_;
  std::string peer_;
  asio::steady_timer wake_;

  // Read buffer: requests arrive in batches; parse them without a syscall each.
  std::vector<uint8_t> rbuf_;
  size_t rbegin_ = 0;
  size_t rend_ = 0;

  nbd::ClientFlags client_flags_;
  std::shared_ptr<Export> export_;
  ExportInfo info_;
  OpenContext open_context_;
  bool opened_ = false;

  storage::BufferPool pool_;  // request buffers, recycled
  std::vector<std::unique_ptr<Pending>> free_pending_;
  size_t inflight_ = 0;
  size_t inflight_bytes_ = 0;
  std::deque<OutMessage> out_;
  // Buffers per socket write (what one sendmsg of asio takes); a READ reply uses two.
  static constexpr size_t kMaxGather = 64;
  std::array<asio::const_buffer, kMaxGather> gather_;
  size_t writing_count_ = 0;  // messages at the front of out_ being written
  bool flush_scheduled_ = false;
  // Set while Dispatch runs a request and the completions it finished at once: their
  // replies wait in out_ and go out in one write when this thread next needs the
  // socket (FlushReplies), so a batch of pipelined requests gets one sendmsg.
  bool defer_replies_ = false;
  bool wake_waiting_ = false;  // the coroutine waits in WaitForWake
  bool write_failed_ = false;
  bool shutting_down_ = false;
};

}  // namespace bsr::frontend
