// bsrd: the node daemon. Owns every resource on this host (or network namespace),
// serves the control socket, the NBD exports and /dev/bsr<minor>.
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <asio.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "common/log.h"
#include "control/client.h"
#include "control/io_loop.h"
#include "control/server.h"
#include "control/service.h"
#include "replication/node.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

namespace {

std::string EnvOr(const char* name, std::string def) {
  const char* v = std::getenv(name);
  return v && *v ? v : def;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bsrd: bsr node daemon (block replication in user space)"};
  std::string socket_flag, run_dir_flag, log_level = "info";
  bsr::replication::NodeOptions node_opts;
  node_opts.state_dir = EnvOr("BSR_STATE_DIR", "/var/lib/bsr");
  node_opts.dev_dir = EnvOr("BSR_DEV_DIR", "/dev");
  bool daemonize = false, no_kdev = false;
  app.add_option("--socket", socket_flag, "control socket (default <run-dir>/bsrd.sock)");
  app.add_option("--run-dir", run_dir_flag, "sockets directory (default $BSR_RUN_DIR or /run/bsr)");
  app.add_option("--state-dir", node_opts.state_dir,
                 "state directory: FUSE mounts for /dev/bsrN ($BSR_STATE_DIR, /var/lib/bsr)");
  app.add_option("--dev-dir", node_opts.dev_dir,
                 "where bsr<minor> and bsr/by-res links go ($BSR_DEV_DIR, /dev)");
  app.add_flag("--no-kernel-device", no_kdev, "serve volumes over NBD only, no /dev/bsrN");
  std::string helper_flag = EnvOr("BSR_USERMODE_HELPER", "");
  app.add_option("--usermode-helper", helper_flag,
                 "program run for handlers as `PROG HANDLER RESOURCE` ($BSR_USERMODE_HELPER; "
                 "default: the bsradm beside bsrd; \"none\" disables handlers)");
  uint32_t busy_poll_us = bsr::control::kDefaultBusyPollUs;
  if (const char* env = std::getenv("BSR_BUSY_POLL_US"); env && *env) {
    auto parsed = bsr::control::ParseBusyPollUs(env);
    if (!parsed.ok()) {
      std::fprintf(stderr, "bsrd: BSR_BUSY_POLL_US: %s\n", parsed.status().message().c_str());
      return 2;
    }
    busy_poll_us = *parsed;
  }
  app.add_option("--busy-poll-us", busy_poll_us,
                 "after work, poll for up to this many microseconds before sleeping; the "
                 "window adapts to the traffic, 0 disables ($BSR_BUSY_POLL_US)")
      ->check(CLI::Range(0u, bsr::control::kMaxBusyPollUs));
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error");
  app.add_flag("-d,--daemon", daemonize, "detach from the terminal (default: foreground)");
  CLI11_PARSE(app, argc, argv);
  node_opts.kernel_devices = !no_kdev;
  if (helper_flag.empty()) {
    std::error_code ec;
    helper_flag = bsr::replication::DefaultUsermodeHelper(
        std::filesystem::read_symlink("/proc/self/exe", ec).string());
  }
  node_opts.usermode_helper = helper_flag == "none" ? "" : helper_flag;

  if (bsr::Status s = bsr::InitLogging("bsrd", log_level); !s.ok()) {
    std::fprintf(stderr, "bsrd: %s\n", s.message().c_str());
    return 2;
  }
  node_opts.run_dir = bsr::control::ResolveRunDir(run_dir_flag);
  std::string socket_path = bsr::control::ResolveSocketPath(socket_flag, run_dir_flag);

  if (daemonize && ::daemon(0, 1) != 0) {
    spdlog::critical("daemon(): {}", std::strerror(errno));
    return 1;
  }
  // Lets our writes make progress when the kernel is short of memory (we may be
  // below a filesystem that is writing back through /dev/bsrN).
  if (::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) != 0) {
    spdlog::warn("PR_SET_IO_FLUSHER: {} (continuing)", std::strerror(errno));
  }
  std::signal(SIGPIPE, SIG_IGN);

  // One thread runs the node (concurrency hint 1): handlers it posts to itself skip
  // the scheduler's lock. Other threads (metadata pool, FUSE) still post through the
  // locked queue, which this hint keeps.
  asio::io_context io(1);
  bsr::replication::Node node(io, node_opts);
  bsr::control::Service service(node);
  bsr::control::Server server(io, socket_path, [&](auto session, auto request) {
    service.Handle(std::move(session), std::move(request));
  });
  if (bsr::Status s = server.Start(); !s.ok()) {
    spdlog::critical("{}", s.message());
    return 1;
  }
  // A bsrd killed earlier may have left FUSE mounts, loop devices and links.
  node.CleanupStale();
  spdlog::info("bsrd listening on {} (run dir {})", socket_path, node_opts.run_dir);

  // First SIGTERM/SIGINT: clean shutdown, refused while /dev/bsrN is in use.
  // A second one forces it (metadata still written clean).
  asio::signal_set signals(io, SIGTERM, SIGINT);
  int signals_seen = 0;
  std::function<void()> wait_signal = [&] {
    signals.async_wait([&](const asio::error_code& ec, int sig) {
      if (ec) return;
      bool force = ++signals_seen > 1;
      spdlog::info("signal {}: shutting down{}", sig, force ? " (forced)" : "");
      node.Shutdown(force, [&](bsr::Status s) {
        if (!s.ok()) {
          spdlog::error("not stopping: {} (unmount it; a second signal forces)", s.message());
          return;
        }
        server.Stop();
        io.stop();
      });
      wait_signal();
    });
  };
  wait_signal();
  bsr::control::IoLoop loop(io, std::chrono::microseconds(busy_poll_us));
  loop.Run();
  const bsr::control::IoLoopStats& st = loop.stats();
  spdlog::info(
      "bsrd stopped (busy-poll {} us: {} sleeps, {} polls, {} windows hit, {} missed, {} "
      "stopped for a busy CPU)",
      busy_poll_us, st.sleeps, st.polls, st.poll_hits, st.poll_misses, st.contended);
  return 0;
}
