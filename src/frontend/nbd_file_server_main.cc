// nbd_file_server: serves one file or block device over NBD with bsr's server, for
// tests and benchmarks. Runs until SIGTERM/SIGINT; single-threaded (one io_context).
#include <CLI/CLI.hpp>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <cstdio>
#include <optional>

#include "common/log.h"
#include "frontend/file_export.h"
#include "frontend/nbd_server.h"
#include "storage/backing_device.h"

int main(int argc, char** argv) {
  CLI::App app("Serve one file over NBD (bsr's NBD server)");
  std::string file;
  std::string socket_path;
  std::optional<uint16_t> port;
  std::string export_name = "bsr";
  std::string description;
  std::string refuse;
  std::string log_level = "info";
  bool read_only = false;
  bool no_direct = false;
  std::string cache = "auto";
  uint32_t min_block = 1;
  unsigned queue_depth = 128;
  app.add_option("--file", file, "backing file or block device")->required();
  app.add_option("--socket", socket_path, "Unix socket path to listen on");
  app.add_option("--port", port, "TCP port on 127.0.0.1 (0 = any free port)");
  app.add_option("--export", export_name, "export name (the empty name also selects it)");
  app.add_option("--description", description, "export description");
  app.add_flag("--read-only", read_only, "refuse writes");
  app.add_flag("--no-direct", no_direct, "do not use O_DIRECT (same as --cache buffered)");
  app.add_option("--cache", cache,
                 "backing I/O: auto (O_DIRECT on block devices, page cache on files), "
                 "direct, buffered")
      ->check(CLI::IsMember({"auto", "direct", "buffered"}));
  app.add_option("--min-block", min_block, "minimum block size clients must align to")
      ->check(CLI::IsMember({1u, 512u, 1024u, 2048u, 4096u, 65536u}));
  app.add_option("--queue-depth", queue_depth, "io_uring queue depth")
      ->check(CLI::Range(1u, 4096u));
  app.add_option("--refuse", refuse, "refuse every open with this message (like a Secondary)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error");
  CLI11_PARSE(app, argc, argv);
  if (socket_path.empty() && !port) {
    std::fprintf(stderr, "nbd_file_server: need --socket and/or --port\n");
    return 2;
  }
  if (auto s = bsr::InitLogging("nbd_file_server", log_level); !s.ok()) {
    std::fprintf(stderr, "nbd_file_server: %s\n", s.ToString().c_str());
    return 2;
  }

  asio::io_context io(1);
  bsr::storage::BackingOptions backing;
  backing.read_only = read_only;
  backing.cache =
      no_direct ? bsr::storage::CacheMode::kBuffered : *bsr::storage::ParseCacheMode(cache);
  backing.queue_depth = queue_depth;
  auto device = bsr::storage::BackingDevice::Open(io, file, backing);
  if (!device.ok()) {
    std::fprintf(stderr, "nbd_file_server: %s\n", device.status().ToString().c_str());
    return 1;
  }
  bsr::frontend::FileExportOptions export_options;
  export_options.min_block = min_block;
  export_options.description = description;
  export_options.refuse_open = refuse;
  auto exp = std::make_shared<bsr::frontend::FileExport>(std::move(device).value(), export_options);

  bsr::frontend::NbdServerOptions options;
  options.unix_path = socket_path;
  options.tcp_port = port;
  auto server = std::make_unique<bsr::frontend::NbdServer>(io, options);
  server->AddExport(export_name, exp);
  if (auto s = server->Start(); !s.ok()) {
    std::fprintf(stderr, "nbd_file_server: %s\n", s.ToString().c_str());
    return 1;
  }
  if (port) {
    // Tests that asked for port 0 read the chosen port from here.
    std::printf("port %u\n", server->tcp_port());
    std::fflush(stdout);
  }
  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const asio::error_code& ec, int signo) {
    if (ec) return;
    spdlog::info("signal {}: stopping", signo);
    server->Stop([&] { io.stop(); });
  });
  io.run();
  server.reset();
  spdlog::info("stopped");
  return 0;
}
