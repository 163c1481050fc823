// Loop devices through /dev/loop-control and the LOOP_* ioctls, plus what sysfs says
// about them. Plain blocking functions: call them from a thread that is not serving the
// image's I/O (detaching waits for the loop queue to drain through that I/O).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace bsr::frontend {

struct LoopOptions {
  // Logical block size of the loop device (512..4096, a power of two).
  uint32_t block_size = 512;
  bool read_only = false;
  // Direct I/O on the backing file (no double caching).
  bool direct_io = true;
};

struct LoopDevice {
  int index = -1;
  std::string path;        // "/dev/loop7"
  bool direct_io = false;  // what the kernel reports in /sys/block/loopN/loop/dio
};

// Binds a free loop device to `file` with LOOP_CONFIGURE (retrying when another process
// takes the device it was offered). If the kernel refuses direct I/O for the file, the
// device is set up without it and direct_io says so.
Result<LoopDevice> AttachLoop(const std::string& file, const LoopOptions& options);

// Detaches loop `index` the polite way: refused (kBusy, nothing changed) while it is
// mounted, held by another device, or open elsewhere; otherwise it is cleared and this
// waits up to `wait` for the kernel to release the backing file.
Status DetachLoop(int index, std::chrono::milliseconds wait = std::chrono::seconds(10));

// Detaches regardless of users: clears it now, or marks it to detach on its last close
// when it is in use (returns kBusy saying so). For crash cleanup.
Status ForceDetachLoop(int index, std::chrono::milliseconds wait = std::chrono::seconds(5));

// The file loop `index` is bound to, or nullopt when it is not bound.
std::optional<std::string> LoopBackingFile(int index);

// Indices of the loop devices sysfs knows (bound or not).
std::vector<int> ListLoopDevices();

// The /dev path of loop `index`, created with mknod when devtmpfs did not make it.
Result<std::string> LoopDevicePath(int index);

}  // namespace bsr::frontend
