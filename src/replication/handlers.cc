// Usermode helper calls: posix_spawn the helper, watch it through a pidfd on the io
// thread and report its exit code.
#include "replication/handlers.h"

#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

extern char** environ;

namespace bsr::replication {

std::vector<std::string> HandlerEnvironment(const HandlerCall& call) {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq == std::string::npos) continue;
    env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  env["BSR_RESOURCE"] = call.resource;
  if (call.my_node_id >= 0) env["BSR_MY_NODE_ID"] = std::to_string(call.my_node_id);
  if (call.volume >= 0) env["BSR_VOLUME"] = std::to_string(call.volume);
  if (call.minor >= 0) env["BSR_MINOR"] = std::to_string(call.minor);
  if (call.peer_node_id >= 0) env["BSR_PEER_NODE_ID"] = std::to_string(call.peer_node_id);
  if (!call.peer_name.empty()) env["BSR_PEER"] = call.peer_name;
  if (!call.peer_address.empty()) env["BSR_PEER_ADDRESS"] = call.peer_address;
  if (!call.peer_af.empty()) env["BSR_PEER_AF"] = call.peer_af;
  for (const auto& [k, v] : call.extra_env) env[k] = v;
  std::vector<std::string> out;
  out.reserve(env.size());
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

HandlerRunner::HandlerRunner(asio::io_context& io, std::string helper)
    : io_(io), helper_(std::move(helper)) {}

HandlerRunner::~HandlerRunner() = default;

void HandlerRunner::Run(const HandlerCall& call, std::function<void(int)> done) {
  auto finish = [this, done](int code) {
    if (done) asio::post(io_, [done, code] { done(code); });
  };
  std::string what = call.handler + " " + call.resource;
  if (helper_.empty()) {
    spdlog::warn("handler {}: no usermode helper configured, not run", what);
    finish(-1);
    return;
  }
  std::vector<std::string> args = {helper_, call.handler, call.resource};
  std::vector<std::string> env = HandlerEnvironment(call);
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, helper_.c_str(), nullptr, nullptr, argv.data(), envp.data());
  if (rc != 0) {
    spdlog::error("handler {}: cannot run {}: {}", what, helper_, std::strerror(rc));
    finish(-1);
    return;
  }
  spdlog::info("handler {}: running {} (pid {})", what, helper_, pid);
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  auto reap = [what, pid](bool block) -> int {
    int status = 0;
    pid_t r = waitpid(pid, &status, block ? 0 : WNOHANG);
    if (r != pid) return -2;  // still running
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    spdlog::info("handler {}: exit code {}", what, code);
    return code;
  };
  if (pidfd < 0) {
    // No pidfd (old kernel): a blocking wait on a thread of its own.
    ++*running_;
    std::thread([this, reap, finish, running = running_] {
      int code = reap(true);
      asio::post(io_, [running] { --*running; });
      finish(code);
    }).detach();
    return;
  }
  ++*running_;
  auto sd = std::make_shared<asio::posix::stream_descriptor>(io_, pidfd);
  sd->async_wait(asio::posix::stream_descriptor::wait_read,
                 [sd, reap, finish, running = running_](const std::error_code&) {
                   int code = reap(false);
                   if (code == -2) code = reap(true);  // readable means exited
                   --*running;
                   finish(code);
                 });
}

std::string DefaultUsermodeHelper(const std::string& self_exe) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::path(self_exe).parent_path() / "bsradm";
  if (!self_exe.empty() && std::filesystem::exists(p, ec)) return p.string();
  return "bsradm";
}

}  // namespace bsr::replication
