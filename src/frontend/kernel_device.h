// KernelDevice: /dev/bsr<minor> for a Primary's volume on hosts without the nbd driver:
// a FuseImage of the Export, a loop device (direct I/O) on the image, and the links
// <dev-dir>/bsr<minor> and <dev-dir>/bsr/by-res/<res>/<vol> to it. Create and Teardown
// block and must run off the Export's io_context thread (the I/O they trigger is served
// there); CreateAsync/TeardownAsync wrap them for callers on that thread.
#pragma once

#include <asio/io_context.hpp>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/status.h"
#include "frontend/export.h"
#include "frontend/fuse_image.h"
#include "frontend/kernel_device_loop.h"

namespace bsr::frontend {

struct KernelDeviceOptions {
  unsigned minor = 0;
  // For <dev-dir>/bsr/by-res/<resource>/<volume>; no such link when resource is empty.
  std::string resource;
  int volume = 0;
  // The daemon's state dir; the image is mounted on <state-dir>/kdev/bsr<minor>.
  std::filesystem::path state_dir;
  std::filesystem::path dev_dir = "/dev";
  // Loop logical block size; 0 = the Export's min_block, at least 512.
  uint32_t block_size = 0;
  unsigned fuse_threads = 8;
  bool direct_io = true;
  // How long Teardown waits for the kernel to release the loop device.
  std::chrono::milliseconds release_wait = std::chrono::seconds(5);
};

class KernelDevice {
 public:
  // Opens the Export (Export::Open on io's thread; a refusal is returned as is), mounts
  // the image, binds a loop device and makes the links. On failure nothing is left.
  // Blocking: call from any thread but io's, with io running.
  static Result<std::unique_ptr<KernelDevice>> Create(asio::io_context& io,
                                                      std::shared_ptr<Export> exp,
                                                      KernelDeviceOptions options);
  // Create on a helper thread; `done` runs on io's thread. io must keep running until then.
  static void CreateAsync(asio::io_context& io, std::shared_ptr<Export> exp,
                          KernelDeviceOptions options,
                          std::function<void(Result<std::unique_ptr<KernelDevice>>)> done);

  // A device not torn down is detached by force (best effort, blocking; off io's thread).
  ~KernelDevice();
  KernelDevice(const KernelDevice&) = delete;
  KernelDevice& operator=(const KernelDevice&) = delete;

  // Removes the links, detaches the loop device, unmounts the image and closes the
  // Export. Refused with kBusy, everything left as it was, while the device is mounted
  // or held open. Blocking: call from any thread but io's, with io running.
  Status Teardown();
  // Teardown on a helper thread; `done` runs on io's thread. Keep this object alive and
  // io running until then.
  void TeardownAsync(std::function<void(Status)> done);

  bool active() const { return active_; }
  const std::string& loop_path() const { return loop_.path; }
  int loop_index() const { return loop_.index; }
  bool direct_io() const { return loop_.direct_io; }
  // <dev-dir>/bsr<minor>
  std::filesystem::path device_link() const;
  // <dev-dir>/bsr/by-res/<res>/<vol>, empty without a resource name.
  std::filesystem::path by_res_link() const;
  std::filesystem::path image_path() const { return image_->image_path(); }
  const FuseImage& image() const { return *image_; }

 private:
  KernelDevice(asio::io_context& io, std::shared_ptr<Export> exp, KernelDeviceOptions options);

  Status MakeLinks();
  void RemoveLinks();
  // Runs fn on io's thread and waits for it.
  void OnIo(std::function<void()> fn);

  asio::io_context& io_;
  std::shared_ptr<Export> export_;
  KernelDeviceOptions options_;
  OpenContext open_context_;
  bool opened_ = false;
  bool active_ = false;
  std::unique_ptr<FuseImage> image_;
  LoopDevice loop_;
  std::thread worker_;
};

// What a dead bsrd left behind under `state_dir` and `dev_dir`, removed at daemon start:
// loop devices bound to files under state_dir (detached, or set to detach on last close
// when still mounted), FUSE mounts under state_dir (connection aborted, lazily
// unmounted), and bsr<N> / bsr/by-res links in dev_dir. Touches nothing else.
// Blocking; call before the daemon serves I/O (or off its io threads).
struct StaleCleanupReport {
  std::vector<std::string> actions;   // what was removed, one line each
  std::vector<std::string> problems;  // what could not be removed, and why
};
StaleCleanupReport CleanupStaleKernelDevices(const std::filesystem::path& state_dir,
                                             const std::filesystem::path& dev_dir);

}  // namespace bsr::frontend
