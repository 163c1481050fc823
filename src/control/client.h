// Blocking control-socket client used by bsrsetup (and tests): one request, one
// reply; or, for events2, a stream of event lines. Owned by the calling thread.
#pragma once

#include <functional>
#include <string>

#include "common/unique_fd.h"
#include "control/message.h"

namespace bsr::control {

// Where bsrd listens: --socket, else $BSR_SOCKET, else <run dir>/bsrd.sock with the
// run dir from --run-dir, else $BSR_RUN_DIR, else /run/bsr.
std::string ResolveSocketPath(const std::string& socket_flag, const std::string& run_dir_flag);
std::string ResolveRunDir(const std::string& run_dir_flag);

class Client {
 public:
  static Result<Client> Connect(const std::string& socket_path);

  Result<Reply> Call(const Request& request);

  // Sends `request` and calls on_line for every event line until the server ends
  // the stream (returns its final reply) or on_line returns false.
  Result<Reply> Stream(const Request& request,
                       const std::function<bool(const std::string&)>& on_line);

 private:
  explicit Client(UniqueFd fd) : fd_(std::move(fd)) {}
  Status Send(const nlohmann::json& j);
  Result<nlohmann::json> Receive();

  UniqueFd fd_;
  FrameDecoder decoder_;
};

}  // namespace bsr::control
