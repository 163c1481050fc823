// FuseImage: a FUSE filesystem (libfuse3 low-level API) holding exactly one regular file,
// the image of an Export. Its own worker threads serve the kernel; each request is posted
// to the Export's io_context thread and the worker blocks until the completion comes back.
#pragma once

#include <asio/io_context.hpp>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/status.h"
#include "frontend/export.h"

struct fuse_session;

namespace bsr::frontend {

struct FuseImageOptions {
  // An existing, empty directory the filesystem is mounted on.
  std::filesystem::path mount_dir;
  // Name of the single file inside it.
  std::string file_name = "disk";
  // Shown as the mount's source in /proc/self/mountinfo ("bsr3").
  std::string fs_name = "bsr";
  // Worker threads serving /dev/fuse (each may block on one request).
  unsigned max_threads = 8;
  // Largest READ/WRITE the kernel sends (libfuse caps it at 1 MiB).
  uint32_t max_io = 1024 * 1024;
};

// Requests served, for tests and statistics. Updated by the FUSE worker threads.
struct FuseImageStats {
  std::atomic<uint64_t> reads{0};
  std::atomic<uint64_t> writes{0};
  std::atomic<uint64_t> fsyncs{0};
  std::atomic<uint64_t> zeroes{0};
  std::atomic<uint64_t> errors{0};
};

class FuseImage {
 public:
  // Mounts the filesystem and starts its workers. Blocks (mount, thread start): call it
  // from a thread other than io's. `info` is the Export's Info(), fetched on io's thread.
  static Result<std::unique_ptr<FuseImage>> Mount(asio::io_context& io, std::shared_ptr<Export> exp,
                                                  const ExportInfo& info, FuseImageOptions options);

  // Unmount() if still mounted.
  ~FuseImage();
  FuseImage(const FuseImage&) = delete;
  FuseImage& operator=(const FuseImage&) = delete;

  // Lazily unmounts, then waits for the workers to exit. Blocks; never call it on io's
  // thread, and only once nothing (a loop device) holds the image open, or the
  // workers stay until the kernel releases the connection (aborted after a timeout).
  void Unmount();

  std::filesystem::path image_path() const { return options_.mount_dir / options_.file_name; }
  const std::filesystem::path& mount_dir() const { return options_.mount_dir; }
  const ExportInfo& info() const { return info_; }
  const FuseImageStats& stats() const { return stats_; }
  // Minor of the mount's st_dev: names /sys/fs/fuse/connections/<id>.
  unsigned connection_id() const { return connection_id_; }

  // Runs one Export operation on io's thread and waits for its completion. Called by
  // the FUSE workers (and by tests); never from io's own thread.
  storage::IoResult Call(std::function<void(Export&, storage::IoCallback)> start);

 private:
  FuseImage(asio::io_context& io, std::shared_ptr<Export> exp, const ExportInfo& info,
            FuseImageOptions options);
  friend struct FuseOps;

  asio::io_context& io_;
  std::shared_ptr<Export> export_;
  ExportInfo info_;
  FuseImageOptions options_;
  fuse_session* session_ = nullptr;
  bool mounted_ = false;
  unsigned connection_id_ = 0;
  std::thread loop_thread_;
  std::atomic<bool> loop_done_{false};
  FuseImageStats stats_;
};

}  // namespace bsr::frontend
