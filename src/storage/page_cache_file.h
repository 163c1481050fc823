// PageCacheFile: a read-only descriptor of a backing file whose I/O all goes through the
// page cache, for zero-copy sends of its blocks (sendfile(2) from the page cache to a
// socket). Shared by the BackingDevice that made it and the send queues holding a range
// of it; its methods are safe on any thread.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>

#include "common/status.h"
#include "common/unique_fd.h"

namespace bsr::storage {

class PageCacheFile {
 public:
  // A duplicate of `fd` (the buffered descriptor of a regular file or block device),
  // so the range stays readable after the device closes its own descriptors.
  static Result<std::shared_ptr<PageCacheFile>> Dup(int fd);

  int fd() const { return fd_.get(); }

  // True when every page of [offset, offset+length) is in the page cache now
  // (cachestat(2), Linux 6.5): sending it does not wait for the disk, so the calling
  // I/O thread does not block. False when some page is not, and on kernels without
  // cachestat (callers then read through io_uring instead).
  bool Cached(uint64_t offset, uint64_t length) const;
  // Whether this kernel has cachestat(2) at all (Debian 12's own 6.1 kernel does not:
  // there every resync block is read and sent).
  static bool KernelHasCachestat();

  // sendfile(2) of up to `length` bytes at `offset` to `socket_fd`: the bytes sent
  // (> 0), 0 at the end of the file, or -errno (-EAGAIN: the socket is full).
  ssize_t SendTo(int socket_fd, uint64_t offset, size_t length) const;

  // A send found the file unreadable (an I/O error, or the file ended early): later
  // sends take the read path, whose errors reach the on-io-error policy.
  void MarkFailed() { failed_.store(true, std::memory_order_relaxed); }
  bool failed() const { return failed_.load(std::memory_order_relaxed); }

  explicit PageCacheFile(UniqueFd fd) : fd_(std::move(fd)) {}

 private:
  UniqueFd fd_;
  std::atomic<bool> failed_{false};
};

}  // namespace bsr::storage
