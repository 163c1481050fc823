// Pure NBD message handling: option haggling and request validation, with no sockets,
// so unit tests and the fuzzer drive it directly. Used by one connection's thread.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "frontend/export.h"

namespace bsr::frontend::nbd {

// The server's first 18 bytes: NBDMAGIC, IHAVEOPT, handshake flags.
std::vector<uint8_t> EncodeGreeting();

// Client flags: an unknown bit is a protocol error (the spec says to drop the client).
struct ClientFlags {
  bool fixed_newstyle = false;
  bool no_zeroes = false;
};
Result<ClientFlags> ParseClientFlags(std::span<const uint8_t> bytes);

struct OptionHeader {
  uint32_t option = 0;
  uint32_t length = 0;
};
// Bad magic or data longer than kMaxOptionLength is a protocol error.
Result<OptionHeader> ParseOptionHeader(std::span<const uint8_t> bytes);

// Transmission flags advertised for an export.
uint16_t TransmissionFlags(const ExportInfo& info);

// What the option haggling asks of the connection's side of the server.
class OptionCatalog {
 public:
  virtual ~OptionCatalog() = default;
  // (name, description) of every export, for NBD_OPT_LIST.
  virtual std::vector<std::pair<std::string, std::string>> ListExports() const = 0;
  virtual std::optional<ExportInfo> Lookup(std::string_view name) const = 0;
  // NBD_OPT_GO / NBD_OPT_EXPORT_NAME: runs the export's Open hook.
  virtual Status OpenExport(std::string_view name) = 0;
};

enum class OptionAction {
  kContinue,      // send `reply`, read the next option
  kAbort,         // send `reply`, then close (NBD_OPT_ABORT)
  kClose,         // close without replying (protocol violation, failed EXPORT_NAME)
  kTransmission,  // send `reply`, then enter transmission on `export_name`
};

struct OptionOutcome {
  OptionAction action = OptionAction::kContinue;
  std::vector<uint8_t> reply;
  std::string export_name;
  std::string log;  // why, for the server log, when something was refused
};

// Handles one option (header already parsed, `data` is its payload).
OptionOutcome HandleOption(uint32_t option, std::span<const uint8_t> data,
                           const ClientFlags& client, OptionCatalog& catalog);

// One option reply: magic, option, type, length, data.
void AppendOptionReply(std::vector<uint8_t>* out, uint32_t option, uint32_t type,
                       std::span<const uint8_t> data = {});

struct Request {
  uint16_t flags = 0;
  uint16_t type = 0;
  uint64_t cookie = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
};
// 28 bytes; bad magic is a protocol error.
Result<Request> ParseRequest(std::span<const uint8_t> bytes);

struct RequestCheck {
  uint32_t error = 0;    // NBD error to reply with, 0 when the request may run
  uint64_t payload = 0;  // bytes following the header (written data, or drained)
  bool close = false;    // protocol violation: drop the connection
  std::string why;       // for the log when error or close
};
// Validates a request against the export: flags, range, size limits, alignment.
// Read-only exports refuse writes with EPERM; past the end: EINVAL for READ/TRIM,
// ENOSPC for WRITE/WRITE_ZEROES; a payload above max_block: EOVERFLOW (the payload is
// drained) or, beyond kMaxDrainPayload, a protocol violation.
RequestCheck CheckRequest(const Request& request, const ExportInfo& info);

// Simple reply header (16 bytes).
void EncodeSimpleReply(uint8_t* out, uint32_t error, uint64_t cookie);

// Maps a host errno from the export to the protocol's error value.
uint32_t ErrnoToNbd(int err);

const char* CommandName(uint16_t type);

}  // namespace bsr::frontend::nbd
