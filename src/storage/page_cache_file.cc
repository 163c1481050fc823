#include "storage/page_cache_file.h"

#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace bsr::storage {
namespace {

// cachestat(2) (Linux 6.5); the C library and older kernel headers may not name it.
#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif
struct CachestatRange {
  uint64_t off;
  uint64_t len;
};
struct Cachestat {
  uint64_t nr_cache;
  uint64_t nr_dirty;
  uint64_t nr_writeback;
  uint64_t nr_evicted;
  uint64_t nr_recently_evicted;
};

// Set once a call says the kernel has no cachestat: no syscall per send after that.
std::atomic<bool> g_no_cachestat{false};

}  // namespace

Result<std::shared_ptr<PageCacheFile>> PageCacheFile::Dup(int fd) {
  UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!copy.valid()) {
    return Error(Errc::kIo, "duplicating descriptor {} for zero-copy sends: {} (errno {})", fd,
                 std::strerror(errno), errno);
  }
  return std::make_shared<PageCacheFile>(std::move(copy));
}

bool PageCacheFile::Cached(uint64_t offset, uint64_t length) const {
  if (length == 0) return true;
  if (g_no_cachestat.load(std::memory_order_relaxed)) return false;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t first = offset / page;
  const uint64_t last = (offset + length - 1) / page;
  CachestatRange range{first * page, (last - first + 1) * page};
  Cachestat cs{};
  if (::syscall(__NR_cachestat, fd_.get(), &range, &cs, 0) != 0) {
    if (errno == ENOSYS) g_no_cachestat.store(true, std::memory_order_relaxed);
    return false;
  }
  return cs.nr_cache >= last - first + 1;
}

bool PageCacheFile::KernelHasCachestat() {
  // An invalid descriptor: EBADF where the call exists, ENOSYS where it does not.
  CachestatRange range{0, 0};
  Cachestat cs{};
  return ::syscall(__NR_cachestat, -1, &range, &cs, 0) == 0 || errno != ENOSYS;
}

ssize_t PageCacheFile::SendTo(int socket_fd, uint64_t offset, size_t length) const {
  off_t off = static_cast<off_t>(offset);
  for (;;) {
    ssize_t n = ::sendfile(socket_fd, fd_.get(), &off, length);
    if (n >= 0) return n;
    if (errno != EINTR) return -errno;
  }
}

}  // namespace bsr::storage
