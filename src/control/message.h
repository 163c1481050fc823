// Control-socket messages between bsrsetup (client) and bsrd (server): a request
// names a command with drbdsetup's positional arguments and --options; a reply
// carries an exit code, an error reason and output. Framed as a 4-byte big-endian
// length followed by that many bytes of JSON (docs/control-protocol.md).
// Plain values; any thread.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace bsr::control {

inline constexpr uint32_t kMaxFrameBytes = 16u << 20;

struct Request {
  std::string cmd;
  std::vector<std::string> args;
  std::map<std::string, std::string> opts;  // "--al-extents=3389" -> {"al-extents","3389"}
  bool HasOpt(const std::string& name) const { return opts.count(name) != 0; }
};

// Exit codes follow drbdsetup where users script against them: 0 ok, 10 the
// state change was refused, 20 bad arguments or unknown object.
inline constexpr int kExitOk = 0;
inline constexpr int kExitStateRefused = 11;
inline constexpr int kExitInvalid = 20;

struct Reply {
  int exit_code = kExitOk;
  std::string error;    // reason shown to the user when exit_code != 0
  std::string output;   // text printed by the client on stdout
  nlohmann::json data;  // structured result (status --json, show, ...)
  bool ok() const { return exit_code == kExitOk; }

  static Reply Fail(const Status& s);
};

nlohmann::json ToJson(const Request& r);
Result<Request> RequestFromJson(const nlohmann::json& j);
nlohmann::json ToJson(const Reply& r);
Result<Reply> ReplyFromJson(const nlohmann::json& j);

// Frame = u32 BE length + JSON text.
std::vector<uint8_t> EncodeFrame(const nlohmann::json& j);

// Streaming frame decoder: Feed bytes as they arrive, then Next() until empty.
class FrameDecoder {
 public:
  void Feed(std::span<const uint8_t> bytes);
  // A complete frame's JSON, nothing if more bytes are needed, or an error
  // (oversized frame, invalid JSON) after which the connection must be closed.
  Result<std::optional<nlohmann::json>> Next();

 private:
  std::vector<uint8_t> buf_;
};

}  // namespace bsr::control
