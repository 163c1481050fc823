// Usermode helper calls (DRBD's "handlers"): on events such as a local I/O error or a
// split brain, bsrd runs `<helper> <handler> <resource>` (the helper is bsradm, which
// runs the command the configuration's handlers section names) with the BSR_*
// environment. Lives on the node's io_context thread; the child is watched through a
// pidfd, so no thread blocks on it.
#pragma once

#include <asio.hpp>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace bsr::replication {

struct HandlerCall {
  std::string handler{};  // "local-io-error", "split-brain", "before-resync-target", ...
  std::string resource{};
  int my_node_id = -1;
  int volume = -1;  // -1: not about one volume
  int minor = -1;
  int peer_node_id = -1;  // -1: not about one peer
  std::string peer_name{};
  std::string peer_address{};  // "10.1.1.32" without port, "" when unknown
  std::string peer_af{};       // "ipv4" / "ipv6"
  std::map<std::string, std::string> extra_env{};
};

// The environment a handler sees: BSR_RESOURCE, BSR_MY_NODE_ID, BSR_VOLUME, BSR_MINOR,
// BSR_PEER_NODE_ID, BSR_PEER, BSR_PEER_ADDRESS, BSR_PEER_AF (those that are known)
// plus extra_env, on top of bsrd's own environment.
std::vector<std::string> HandlerEnvironment(const HandlerCall& call);

class HandlerRunner {
 public:
  // `helper`: the program to run; empty disables handlers (every call completes at
  // once with -1 and a log line).
  HandlerRunner(asio::io_context& io, std::string helper);
  ~HandlerRunner();

  const std::string& helper() const { return helper_; }

  // Starts the helper; `done(exit_code)` runs on the io thread when it exits
  // (-1: it could not be started or was killed by a signal). Never blocks.
  void Run(const HandlerCall& call, std::function<void(int)> done = {});

  // Handler calls still running (tests wait for them).
  int running() const { return *running_; }

 private:
  asio::io_context& io_;
  std::string helper_;
  std::shared_ptr<int> running_ = std::make_shared<int>(0);
};

// The default helper: the bsradm beside `self_exe` (bsrd's own path), else "bsradm".
std::string DefaultUsermodeHelper(const std::string& self_exe);

}  // namespace bsr::replication
