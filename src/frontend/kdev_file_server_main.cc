// kdev_file_server: serves one backing file as /dev/bsr<minor> (FileExport + KernelDevice,
// FUSE + loop) until SIGTERM, for tests; `--cleanup` runs the crash cleanup and exits.
// The io_context runs on the main thread; creation and teardown run on helper threads.
#include <sys/prctl.h>

#include <CLI/CLI.hpp>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <cstdio>
#include <functional>

#include "common/log.h"
#include "frontend/file_export.h"
#include "frontend/kernel_device.h"
#include "storage/backing_device.h"

namespace {

using bsr::frontend::KernelDevice;

int RunCleanup(const std::string& state_dir, const std::string& dev_dir) {
  auto report = bsr::frontend::CleanupStaleKernelDevices(state_dir, dev_dir);
  for (const auto& a : report.actions) std::printf("cleaned: %s\n", a.c_str());
  for (const auto& p : report.problems) std::printf("problem: %s\n", p.c_str());
  return report.problems.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Serve one file as /dev/bsr<minor> through FUSE + loop (bsr's KernelDevice)");
  std::string file;
  std::string state_dir;
  std::string dev_dir = "/dev";
  std::string resource;
  std::string log_level = "info";
  unsigned minor = 0;
  int volume = 0;
  uint32_t block_size = 0;
  bool cleanup = false;
  bool no_direct = false;
  app.add_option("--file", file, "backing file or block device");
  app.add_option("--minor", minor, "device minor: the link is <dev-dir>/bsr<minor>");
  app.add_option("--resource", resource, "resource name for <dev-dir>/bsr/by-res/<res>/<vol>");
  app.add_option("--volume", volume, "volume number for the by-res link");
  app.add_option("--state-dir", state_dir, "state dir (the image is mounted below it)")->required();
  app.add_option("--dev-dir", dev_dir, "where the links go");
  app.add_option("--block-size", block_size, "loop logical block size (0: 512)");
  app.add_flag("--no-direct", no_direct, "loop without direct I/O");
  app.add_flag("--cleanup", cleanup, "remove what a killed server left behind, then exit");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error");
  CLI11_PARSE(app, argc, argv);
  if (auto s = bsr::InitLogging("kdev_file_server", log_level); !s.ok()) {
    std::fprintf(stderr, "kdev_file_server: %s\n", s.ToString().c_str());
    return 2;
  }
  if (cleanup) return RunCleanup(state_dir, dev_dir);
  if (file.empty()) {
    std::fprintf(stderr, "kdev_file_server: --file is required\n");
    return 2;
  }
  // Threads created from here on serve a block device's writeback (as bsrd does).
  ::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0);

  asio::io_context io(1);
  auto device = bsr::storage::BackingDevice::Open(io, file, {});
  if (!device.ok()) {
    std::fprintf(stderr, "kdev_file_server: %s\n", device.status().ToString().c_str());
    return 1;
  }
  auto exp = std::make_shared<bsr::frontend::FileExport>(std::move(device).value(),
                                                         bsr::frontend::FileExportOptions{});
  bsr::frontend::KernelDeviceOptions options;
  options.minor = minor;
  options.resource = resource;
  options.volume = volume;
  options.state_dir = state_dir;
  options.dev_dir = dev_dir;
  options.block_size = block_size;
  options.direct_io = !no_direct;

  int exit_code = 0;
  std::unique_ptr<KernelDevice> kdev;
  bool stop_requested = false;
  auto stop = [&] {
    kdev->TeardownAsync([&](bsr::Status s) {
      if (s.ok()) {
        std::printf("stopped\n");
        std::fflush(stdout);
        io.stop();
        return;
      }
      std::printf("refused: %s\n", s.message().c_str());
      std::fflush(stdout);
      stop_requested = false;  // keep serving; the next SIGTERM tries again
    });
  };
  asio::signal_set signals(io, SIGTERM, SIGINT);
  std::function<void()> wait_signal = [&] {
    signals.async_wait([&](const asio::error_code& ec, int signo) {
      if (ec) return;
      wait_signal();
      if (stop_requested) return;  // a teardown is already under way
      spdlog::info("signal {}: tearing down", signo);
      stop_requested = true;
      if (kdev) stop();  // else: once creation is done
    });
  };
  wait_signal();
  KernelDevice::CreateAsync(
      io, exp, options, [&](bsr::Result<std::unique_ptr<KernelDevice>> result) {
        if (!result.ok()) {
          std::fprintf(stderr, "kdev_file_server: %s\n", result.status().ToString().c_str());
          exit_code = 1;
          io.stop();
          return;
        }
        kdev = std::move(result).value();
        std::printf("ready %s %s dio=%d\n", kdev->device_link().c_str(), kdev->loop_path().c_str(),
                    kdev->direct_io() ? 1 : 0);
        std::fflush(stdout);
        if (stop_requested) stop();
      });
  io.run();
  kdev.reset();
  return exit_code;
}
