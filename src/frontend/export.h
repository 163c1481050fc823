// Export: the block device the NBD server serves, as an abstract interface, so the
// daemon can plug in its replicated volume. Every method is called on the server's
// io_context thread, and every callback must be invoked on that same thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "common/status.h"
#include "storage/backing_device.h"

namespace bsr::frontend {

using storage::IoCallback;
using storage::IoResult;

// What a client learns about an export (NBD_INFO_EXPORT and NBD_INFO_BLOCK_SIZE).
struct ExportInfo {
  uint64_t size = 0;
  // Requests must be aligned to min_block (1 = any alignment; a power of two up to
  // 64 KiB). preferred_block is a hint. max_block caps READ/WRITE payloads.
  uint32_t min_block = 1;
  uint32_t preferred_block = 4096;
  uint32_t max_block = 32 * 1024 * 1024;
  bool read_only = false;
  bool can_flush = true;
  bool can_fua = true;
  bool can_trim = true;
  bool can_write_zeroes = true;
  // Flush/FUA on one connection covers writes completed on every connection.
  bool can_multi_conn = true;
  bool rotational = false;
  std::string description;
};

// Who is opening an export (for logging and policy).
struct OpenContext {
  std::string export_name;
  std::string peer;  // "unix" or "tcp 127.0.0.1:4711"
  uint64_t connection_id = 0;
};

class Export {
 public:
  virtual ~Export() = default;

  virtual ExportInfo Info() const = 0;

  // A client selects the export (NBD_OPT_GO or NBD_OPT_EXPORT_NAME). A non-ok Status
  // refuses it; its message goes to the client (NBD_REP_ERR_POLICY). A Secondary
  // refuses here; with auto-promote the first writable open promotes instead.
  virtual Status Open(const OpenContext& context) = 0;
  // The connection that opened it is gone and has no request in flight. Called once
  // per successful Open (auto-promote: the last writable close demotes).
  virtual void Close(const OpenContext& context) = 0;

  // Ranges are validated by the server against Info() before these are called.
  // Buffers stay valid until the callback runs.
  virtual void Read(uint64_t offset, std::span<uint8_t> buffer, IoCallback done) = 0;
  virtual void Write(uint64_t offset, std::span<const uint8_t> data, bool fua, IoCallback done) = 0;
  virtual void Flush(IoCallback done) = 0;
  virtual void Trim(uint64_t offset, uint64_t length, bool fua, IoCallback done) = 0;
  // no_hole: the blocks must stay allocated (NBD_CMD_FLAG_NO_HOLE).
  virtual void WriteZeroes(uint64_t offset, uint64_t length, bool fua, bool no_hole,
                           IoCallback done) = 0;
};

}  // namespace bsr::frontend
