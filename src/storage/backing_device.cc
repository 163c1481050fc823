#include "storage/backing_device.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <asio/post.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "storage/completion_scope.h"

namespace bsr::storage {
namespace {

constexpr size_t kZeroChunk = 1 << 20;
constexpr uint64_t kMaxSegment = 1u << 30;  // io_uring lengths are 32-bit
// Cached reads at least this large go to an io-wq worker (IOSQE_ASYNC) instead of being
// copied on the io thread; small ones (NBD QD1) stay on the fast path.
constexpr unsigned kAsyncReadMin = 256u << 10;

// File systems whose page-cache copy never waits for another process or host.
bool LocalFileSystem(int fd) {
  struct statfs fs {};
  if (::fstatfs(fd, &fs) != 0) return false;
  switch (static_cast<uint64_t>(fs.f_type)) {
    case EXT4_SUPER_MAGIC:  // ext2/3/4
    case XFS_SUPER_MAGIC:
    case BTRFS_SUPER_MAGIC:
    case F2FS_SUPER_MAGIC:
    case TMPFS_MAGIC:
    case RAMFS_MAGIC: return true;
    default: return false;
  }
}

}  // namespace

std::optional<CacheMode> ParseCacheMode(std::string_view text) {
  if (text == "auto") return CacheMode::kAuto;
  if (text == "direct") return CacheMode::kDirect;
  if (text == "buffered") return CacheMode::kBuffered;
  return std::nullopt;
}

const char* CacheModeName(CacheMode mode) {
  switch (mode) {
    case CacheMode::kAuto: return "auto";
    case CacheMode::kDirect: return "direct";
    case CacheMode::kBuffered: return "buffered";
  }
  return "?";
}

struct BackingDevice::Op {
  enum class Kind { kRead, kWrite, kFlush, kFallocate, kZeroWrite, kSplice };
  Kind kind = Kind::kRead;
  const char* name = "";
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t done = 0;  // bytes finished so far (short reads/writes continue)
  uint8_t* buffer = nullptr;
  bool fua = false;
  int mode = 0;                 // fallocate mode
  bool unsupported_ok = false;  // discard: EOPNOTSUPP counts as success
  bool zero_fallback = false;   // write zeroes: EOPNOTSUPP falls back to writing zeroes
  SplicePipe* pipe = nullptr;   // splice: where the bytes wait
  IoCallback done_cb;
  // Pending list (oldest first) for oldest_pending_since(): linked in Start, out in Finish.
  std::chrono::steady_clock::time_point started;
  Op* prev = nullptr;
  Op* next = nullptr;
};

BackingDevice::BackingDevice(asio::io_context& io, std::string path)
    : io_(io), path_(std::move(path)), event_stream_(io) {}

Result<std::unique_ptr<BackingDevice>> BackingDevice::Open(asio::io_context& io,
                                                           const std::string& path,
                                                           const BackingOptions& options) {
  std::unique_ptr<BackingDevice> dev(new BackingDevice(io, path));
  Status status = dev->Setup(options);
  if (!status.ok()) return status.WithContext(fmt::format("open backing device {}", path));
  return dev;
}

Status BackingDevice::Setup(const BackingOptions& options) {
  read_only_ = options.read_only;
  queue_depth_ = options.queue_depth == 0 ? 1 : options.queue_depth;
  inline_max_ = options.inline_max_bytes;
  if (const char* env = std::getenv("BSR_BACKING_INLINE"); env != nullptr && *env != 0) {
    char* end = nullptr;
    errno = 0;
    unsigned long bytes = std::strtoul(env, &end, 10);
    if (errno != 0 || *end != 0 || bytes > kMaxSegment) {
      return Error(Errc::kInvalidArgument,
                   "BSR_BACKING_INLINE={}: expected a byte count up to {} (0 turns it off)", env,
                   kMaxSegment);
    }
    inline_max_ = static_cast<uint32_t>(bytes);
  }
  inline_slow_ = options.inline_slow;
  inline_backoff_base_ = inline_backoff_ =
      std::max<std::chrono::nanoseconds>(options.inline_backoff, std::chrono::milliseconds(1));
  int access = read_only_ ? O_RDONLY : O_RDWR;
  fd_.Reset(::open(path_.c_str(), access | O_CLOEXEC));
  if (!fd_.valid()) return Error(Errc::kIo, "open: {} (errno {})", std::strerror(errno), errno);
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0) {
    return Error(Errc::kIo, "fstat: {} (errno {})", std::strerror(errno), errno);
  }
  if (S_ISBLK(st.st_mode)) {
    is_block_device_ = true;
    uint64_t bytes = 0;
    if (::ioctl(fd_.get(), BLKGETSIZE64, &bytes) != 0) {
      return Error(Errc::kIo, "BLKGETSIZE64: {} (errno {})", std::strerror(errno), errno);
    }
    int sector = 0;
    if (::ioctl(fd_.get(), BLKSSZGET, &sector) != 0 || sector <= 0) sector = 512;
    size_ = bytes;
    block_size_ = static_cast<uint32_t>(sector);
  } else if (S_ISREG(st.st_mode)) {
    size_ = static_cast<uint64_t>(st.st_size);
    // 4 KiB satisfies the direct-I/O alignment of every local file system.
    block_size_ = 4096;
  } else {
    return Error(Errc::kInvalidArgument, "not a regular file or block device");
  }

  if (inline_max_ > 0 && !is_block_device_ && !LocalFileSystem(fd_.get())) {
    // FUSE, NFS, CIFS and the like may hold a page-cache write until a remote side
    // answers: not bounded work, so everything goes through io_uring there.
    inline_max_ = 0;
  }

  CacheMode cache = options.cache;
  if (cache == CacheMode::kAuto) {
    // An operator's override for every auto-mode device of the process (bsrd).
    if (const char* env = std::getenv("BSR_BACKING_CACHE"); env != nullptr && *env != 0) {
      auto parsed = ParseCacheMode(env);
      if (!parsed) {
        return Error(Errc::kInvalidArgument,
                     "BSR_BACKING_CACHE={}: expected auto, direct or buffered", env);
      }
      cache = *parsed;
    }
  }
  bool want_direct = cache == CacheMode::kDirect || (cache == CacheMode::kAuto && is_block_device_);
  if (want_direct) {
    UniqueFd direct(::open(path_.c_str(), access | O_CLOEXEC | O_DIRECT));
    if (!direct.valid()) {
      spdlog::warn("{}: O_DIRECT refused ({}), using buffered I/O", path_, std::strerror(errno));
    } else if (size_ >= block_size_) {
      // Some file systems accept O_DIRECT at open and refuse it on the first I/O.
      AlignedBuffer probe(block_size_);
      if (::pread(direct.get(), probe.data(), block_size_, 0) < 0) {
        spdlog::warn("{}: O_DIRECT read failed ({}), using buffered I/O", path_,
                     std::strerror(errno));
      } else {
        direct_fd_ = std::move(direct);
      }
    } else {
      direct_fd_ = std::move(direct);
    }
  }

  int ret = io_uring_queue_init(queue_depth_, &ring_, 0);
  if (ret < 0) {
    return Error(Errc::kIo, "io_uring_queue_init({}): {} (errno {})", queue_depth_,
                 std::strerror(-ret), -ret);
  }
  ring_ready_ = true;
  // The ring's own descriptor polls readable while completions wait in it; asio
  // watches it (and must never close it: see the destructor).
  asio::error_code ec;
  event_stream_.assign(ring_.ring_fd, ec);
  if (ec) return Error(Errc::kIo, "watch io_uring descriptor: {}", ec.message());
  ArmCompletions();
  spdlog::info("{}: {} I/O ({} {}, {} bytes, block {}, inline page-cache I/O up to {} bytes)",
               path_, direct() ? "O_DIRECT" : "page-cache", CacheModeName(cache),
               is_block_device_ ? "block device" : "file", size_, block_size_, inline_max_);
  return Status::Ok();
}

std::shared_ptr<PageCacheFile> BackingDevice::page_cache_file() {
  if (direct_fd_.valid() || !fd_.valid()) return nullptr;
  if (!page_cache_) {
    auto file = PageCacheFile::Dup(fd_.get());
    if (!file.ok()) {
      spdlog::warn("{}: {}; resync blocks are read and sent", path_, file.status().message());
      return nullptr;
    }
    page_cache_ = std::move(*file);
  }
  if (page_cache_->failed()) return nullptr;
  return page_cache_;
}

BackingDevice::~BackingDevice() {
  *alive_ = false;
  spdlog::info("{}: closing: {} inline reads, {} inline writes ({} slow), {} ring submissions",
               path_, stats_.inline_reads, stats_.inline_writes, stats_.slow_inline_writes,
               stats_.ring_ops);
  // Cancels the wait and stops watching; io_uring_queue_exit closes the descriptor.
  if (event_stream_.is_open()) event_stream_.release();
  for (Op* op : waiting_) delete op;
  waiting_.clear();
  if (!ring_ready_) return;
  if (unsubmitted_ > 0) io_uring_submit(&ring_);
  while (inflight_ > 0) {
    io_uring_cqe* cqe = nullptr;
    int ret = io_uring_wait_cqe(&ring_, &cqe);
    if (ret == -EINTR) continue;
    if (ret < 0) break;  // the ring is broken; leaking beats freeing a live buffer
    delete static_cast<Op*>(io_uring_cqe_get_data(cqe));
    io_uring_cqe_seen(&ring_, cqe);
    --inflight_;
  }
  if (inflight_ == 0) io_uring_queue_exit(&ring_);
}

IoResult BackingDevice::ErrnoResult(const Op& op, int err) const {
  return ErrnoResult(op.name, op.offset, op.length, err);
}

IoResult BackingDevice::ErrnoResult(const char* what, uint64_t offset, uint64_t length,
                                    int err) const {
  IoResult r;
  r.err = err;
  r.status = Error(Errc::kIo, "{} {} offset {} length {}: {} (errno {})", what, path_, offset,
                   length, std::strerror(err), err);
  return r;
}

void BackingDevice::CompleteSoon(IoCallback done, IoResult result) {
  if (CompletionScope::Defer(io_, alive_, done, result)) return;
  asio::post(io_, [alive = alive_, done = std::move(done), result = std::move(result)]() mutable {
    if (*alive) done(std::move(result));
  });
}

bool BackingDevice::CheckRange(const char* what, uint64_t offset, uint64_t length,
                               const IoCallback& done) {
  if (offset <= size_ && length <= size_ - offset) return true;
  IoResult r;
  r.err = EINVAL;
  r.status = Error(Errc::kInvalidArgument, "{} {} offset {} length {}: beyond the end ({} bytes)",
                   what, path_, offset, length, size_);
  CompleteSoon(done, std::move(r));
  return false;
}

bool BackingDevice::UsesDirect(uint64_t offset, uint64_t length, const void* buffer) const {
  return direct_fd_.valid() && offset % block_size_ == 0 && length % block_size_ == 0 &&
         reinterpret_cast<uintptr_t>(buffer) % block_size_ == 0;
}

bool BackingDevice::InlineAllowed(uint64_t offset, uint64_t length, const void* buffer) const {
  return length <= inline_max_ && !UsesDirect(offset, length, buffer);
}

// RWF_NOWAIT: only what the page cache holds is copied, so this never waits for the
// device; the rest (a partial or EAGAIN result) goes through io_uring.
bool BackingDevice::TryInlineRead(uint64_t offset, std::span<uint8_t> buffer, IoCallback& done,
                                  uint64_t* done_bytes) {
  *done_bytes = 0;
  if (!inline_reads_ || !InlineAllowed(offset, buffer.size(), buffer.data())) return false;
  uint64_t got = 0;
  while (got < buffer.size()) {
    iovec iov{buffer.data() + got, buffer.size() - got};
    ssize_t n = ::preadv2(fd_.get(), &iov, 1, static_cast<off_t>(offset + got), RWF_NOWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EOPNOTSUPP || errno == EINVAL)) inline_reads_ = false;
    if (n <= 0) break;  // not cached, or an error io_uring will report with context
    got += static_cast<uint64_t>(n);
  }
  *done_bytes = got;
  if (got < buffer.size()) return false;
  ++stats_.inline_reads;
  CompleteSoon(std::move(done), IoResult::Ok());
  return true;
}

// A page-cache write is a bounded copy unless the kernel throttles the writer (dirty
// pages over the limit) or it waits in the file system; the time check catches both
// after the fact and sends the following writes to io-wq workers for a while.
bool BackingDevice::TryInlineWrite(uint64_t offset, std::span<const uint8_t> data,
                                   IoCallback& done) {
  // Concurrent writes (QD32) go inline too: io_uring runs buffered writes to one file
  // one at a time in a single io-wq worker anyway (hashed by inode), and the hand-off
  // there and back (submission, worker wake-up, completion wake-up of this thread)
  // cost more CPU per write than the page-cache copy itself (measured: docs/benchmarks.md,
  // session 4). A write that overlaps a ring write still in flight goes behind it in
  // the ring instead, so that writes to one block land in the order they came (a
  // peer's protocol A stream sends the next write before the previous one is on disk).
  if (!InlineAllowed(offset, data.size(), data.data())) return false;
  auto start = std::chrono::steady_clock::now();
  if (start < inline_resume_) return false;
  if (pending_head_ != nullptr && OverlapsPending(offset, data.size())) return false;
  uint64_t put = 0;
  int err = 0;
  while (put < data.size()) {
    ssize_t n =
        ::pwrite(fd_.get(), data.data() + put, data.size() - put, static_cast<off_t>(offset + put));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) err = errno;
    if (n == 0) err = EIO;  // nothing moved: the device refuses more
    if (err != 0) break;
    put += static_cast<uint64_t>(n);
  }
  auto end = std::chrono::steady_clock::now();
  ++stats_.inline_writes;
  if (end - start > inline_slow_) {
    ++stats_.slow_inline_writes;
    inline_resume_ = end + inline_backoff_;
    spdlog::debug("{}: inline write of {} bytes took {} us; io_uring for the next {} ms", path_,
                  data.size(),
                  std::chrono::duration_cast<std::chrono::microseconds>(end - start).count(),
                  std::chrono::duration_cast<std::chrono::milliseconds>(inline_backoff_).count());
    inline_backoff_ = std::min<std::chrono::nanoseconds>(inline_backoff_ * 2, kMaxInlineBackoff);
  } else {
    inline_backoff_ = inline_backoff_base_;
  }
  CompleteSoon(std::move(done),
               err == 0 ? IoResult::Ok() : ErrnoResult("write", offset, data.size(), err));
  return true;
}

bool BackingDevice::OverlapsPending(uint64_t offset, uint64_t length) const {
  for (const Op* op = pending_head_; op != nullptr; op = op->next) {
    if (op->kind == Op::Kind::kRead || op->kind == Op::Kind::kFlush) continue;
    if (op->offset < offset + length && offset < op->offset + op->length) return true;
  }
  return false;
}

void BackingDevice::Read(uint64_t offset, std::span<uint8_t> buffer, IoCallback done) {
  if (!CheckRange("read", offset, buffer.size(), done)) return;
  if (buffer.empty()) return CompleteSoon(std::move(done), IoResult::Ok());
  uint64_t got = 0;
  if (TryInlineRead(offset, buffer, done, &got)) return;
  auto op = std::make_unique<Op>();
  op->kind = Op::Kind::kRead;
  op->name = "read";
  op->offset = offset;
  op->length = buffer.size();
  op->done = got;
  op->buffer = buffer.data();
  op->done_cb = std::move(done);
  Start(std::move(op));
}

void BackingDevice::Write(uint64_t offset, std::span<const uint8_t> data, bool fua,
                          IoCallback done) {
  if (read_only_) {
    IoResult r;
    r.err = EROFS;
    r.status = Error(Errc::kPermission, "write {} offset {}: device is read-only", path_, offset);
    return CompleteSoon(std::move(done), std::move(r));
  }
  if (!CheckRange("write", offset, data.size(), done)) return;
  if (data.empty() && !fua) return CompleteSoon(std::move(done), IoResult::Ok());
  if (data.empty()) return Flush(std::move(done));
  if (!fua && TryInlineWrite(offset, data, done)) return;
  auto op = std::make_unique<Op>();
  op->kind = Op::Kind::kWrite;
  op->name = "write";
  op->offset = offset;
  op->length = data.size();
  // io_uring only reads from this buffer for a write.
  op->buffer = const_cast<uint8_t*>(data.data());
  op->fua = fua;
  op->done_cb = std::move(done);
  Start(std::move(op));
}

void BackingDevice::WriteFromPipe(uint64_t offset, uint64_t length, SplicePipe& pipe,
                                  IoCallback done) {
  if (!splice_writes() || pipe.held() < length) {
    IoResult r;
    r.err = EINVAL;
    r.status = Error(Errc::kInvalidArgument, "spliced write {} offset {} length {}: {}", path_,
                     offset, length,
                     splice_writes() ? "the pipe holds fewer bytes"
                                     : "the device does not write through the page cache only");
    return CompleteSoon(std::move(done), std::move(r));
  }
  if (!CheckRange("spliced write", offset, length, done)) return;
  if (length == 0) return CompleteSoon(std::move(done), IoResult::Ok());
  auto op = std::make_unique<Op>();
  op->kind = Op::Kind::kSplice;
  op->name = "spliced write";
  op->offset = offset;
  op->length = length;
  op->pipe = &pipe;
  op->done_cb = std::move(done);
  Start(std::move(op));
}

void BackingDevice::Flush(IoCallback done) {
  auto op = std::make_unique<Op>();
  op->kind = Op::Kind::kFlush;
  op->name = "flush";
  op->done_cb = std::move(done);
  Start(std::move(op));
}

void BackingDevice::Discard(uint64_t offset, uint64_t length, IoCallback done) {
  if (read_only_) {
    IoResult r;
    r.err = EROFS;
    r.status = Error(Errc::kPermission, "discard {} offset {}: device is read-only", path_, offset);
    return CompleteSoon(std::move(done), std::move(r));
  }
  if (!CheckRange("discard", offset, length, done)) return;
  if (length == 0) return CompleteSoon(std::move(done), IoResult::Ok());
  auto op = std::make_unique<Op>();
  op->kind = Op::Kind::kFallocate;
  op->name = "discard";
  op->offset = offset;
  op->length = length;
  // On a block device PUNCH_HOLE discards and guarantees zeroes; on a file it
  // deallocates. BLKDISCARD would block this thread, fallocate runs in io_uring.
  op->mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
  op->unsupported_ok = true;
  op->done_cb = std::move(done);
  Start(std::move(op));
}

void BackingDevice::WriteZeroes(uint64_t offset, uint64_t length, bool may_unmap, IoCallback done) {
  if (read_only_) {
    IoResult r;
    r.err = EROFS;
    r.status =
        Error(Errc::kPermission, "write-zeroes {} offset {}: device is read-only", path_, offset);
    return CompleteSoon(std::move(done), std::move(r));
  }
  if (!CheckRange("write-zeroes", offset, length, done)) return;
  if (length == 0) return CompleteSoon(std::move(done), IoResult::Ok());
  auto op = std::make_unique<Op>();
  op->kind = Op::Kind::kFallocate;
  op->name = "write-zeroes";
  op->offset = offset;
  op->length = length;
  op->mode = may_unmap ? (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)
                       : (FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE);
  op->zero_fallback = true;
  op->done_cb = std::move(done);
  Start(std::move(op));
}

std::optional<std::chrono::steady_clock::time_point> BackingDevice::oldest_pending_since() const {
  if (!pending_head_) return std::nullopt;
  return pending_head_->started;
}

void BackingDevice::Start(std::unique_ptr<Op> op) {
  op->started = std::chrono::steady_clock::now();
  op->prev = pending_tail_;
  (pending_tail_ ? pending_tail_->next : pending_head_) = op.get();
  pending_tail_ = op.get();
  if (inflight_ < queue_depth_ && waiting_.empty()) {
    Submit(op.release());
  } else {
    waiting_.push_back(op.release());  // back-pressure: wait for a free slot
  }
}

void BackingDevice::Prep(Op* op, io_uring_sqe* sqe) {
  uint64_t pos = op->offset + op->done;
  uint64_t remaining = op->length - op->done;
  switch (op->kind) {
    case Op::Kind::kRead:
    case Op::Kind::kWrite: {
      uint8_t* buf = op->buffer + op->done;
      unsigned len = static_cast<unsigned>(std::min(remaining, kMaxSegment));
      int fd = UsesDirect(pos, len, buf) ? direct_fd_.get() : fd_.get();
      if (op->kind == Op::Kind::kRead) {
        io_uring_prep_read(sqe, fd, buf, len, pos);
        // A large cached read is copied inside io_uring_enter, on the io thread; an
        // io-wq worker copies it beside the io thread instead (a SyncSource's reads:
        // -20% full-sync time, docs/benchmarks.md). O_DIRECT reads are async anyway.
        if (len >= kAsyncReadMin && fd == fd_.get()) io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
      } else {
        io_uring_prep_write(sqe, fd, buf, len, pos);
        if (op->fua) sqe->rw_flags = RWF_DSYNC;
      }
      break;
    }
    case Op::Kind::kZeroWrite: {
      unsigned len = static_cast<unsigned>(std::min<uint64_t>(remaining, kZeroChunk));
      bool aligned = direct_fd_.valid() && pos % block_size_ == 0 && len % block_size_ == 0;
      io_uring_prep_write(sqe, aligned ? direct_fd_.get() : fd_.get(), zeroes_.data(), len, pos);
      break;
    }
    case Op::Kind::kSplice: {
      // Always done by an io-wq worker (io_uring never splices inline); one pipe of the
      // block after the other, each resubmitted until it is empty.
      unsigned len = static_cast<unsigned>(
          std::min<uint64_t>({remaining, kMaxSegment, op->pipe->front_held()}));
      io_uring_prep_splice(sqe, op->pipe->front_fd(), -1, fd_.get(), static_cast<int64_t>(pos), len,
                           0);
      break;
    }
    case Op::Kind::kFlush: io_uring_prep_fsync(sqe, fd_.get(), IORING_FSYNC_DATASYNC); break;
    case Op::Kind::kFallocate:
      io_uring_prep_fallocate(sqe, fd_.get(), op->mode, op->offset, op->length);
      break;
  }
  io_uring_sqe_set_data(sqe, op);
}

void BackingDevice::Submit(Op* op) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    // The submission queue is full of prepared entries: hand them to the kernel.
    io_uring_submit(&ring_);
    unsubmitted_ = 0;
    sqe = io_uring_get_sqe(&ring_);
  }
  if (sqe == nullptr) {
    waiting_.push_front(op);
    return;
  }
  Prep(op, sqe);
  ++stats_.ring_ops;
  ++inflight_;
  ++unsubmitted_;
  if (inflight_ == 1) {
    // An idle device: nothing to batch with, so no reason to wait for the end of the
    // handler batch (at queue depth 1 that hop is a scheduler round per request).
    if (io_uring_submit(&ring_) >= 0) {
      unsubmitted_ = 0;
      return;
    }
  }
  ScheduleSubmit();
}

// Submission is deferred to the end of the current batch of handlers, so requests
// parsed from one socket read share one io_uring_enter.
void BackingDevice::ScheduleSubmit() {
  if (submit_scheduled_) return;
  submit_scheduled_ = true;
  asio::post(io_, [this, alive = alive_] {
    if (!*alive) return;
    submit_scheduled_ = false;
    if (unsubmitted_ == 0) return;
    int ret = io_uring_submit(&ring_);
    if (ret >= 0) {
      unsubmitted_ = 0;
    } else {
      // EAGAIN/EBUSY: the kernel is short of resources; completions will free them.
      spdlog::debug("{}: io_uring_submit: {}", path_, std::strerror(-ret));
      ScheduleSubmit();
    }
  });
}

// One wait per batch of completions: arming it is one epoll_ctl (asio re-checks the
// descriptor's readiness then, so completions that arrived meanwhile fire it at once);
// no read() per completion as an eventfd would need.
void BackingDevice::ArmCompletions() {
  event_stream_.async_wait(
      asio::posix::descriptor_base::wait_read, [this, alive = alive_](const asio::error_code& ec) {
        if (!*alive || ec == asio::error::operation_aborted) return;
        if (ec) {
          spdlog::error("{}: io_uring completion wait: {}", path_, ec.message());
        }
        ReapCompletions();
        if (*alive) ArmCompletions();
      });
}

void BackingDevice::ReapCompletions() {
  std::shared_ptr<bool> alive = alive_;
  io_uring_cqe* cqe = nullptr;
  while (*alive && io_uring_peek_cqe(&ring_, &cqe) == 0) {
    Op* op = static_cast<Op*>(io_uring_cqe_get_data(cqe));
    int res = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    --inflight_;
    Complete(op, res);
  }
  if (!*alive) return;
  while (!waiting_.empty() && inflight_ < queue_depth_) {
    Op* op = waiting_.front();
    waiting_.pop_front();
    Submit(op);
  }
}

void BackingDevice::Complete(Op* op, int res) {
  if (res == -EAGAIN || res == -EINTR) return Submit(op);
  if (res < 0) {
    if (op->kind == Op::Kind::kFallocate && (res == -EOPNOTSUPP || res == -ENODEV)) {
      if (op->unsupported_ok) return Finish(op, IoResult::Ok());
      if (op->zero_fallback) {
        if (zeroes_.empty()) {
          zeroes_ = AlignedBuffer(kZeroChunk);
          std::memset(zeroes_.data(), 0, kZeroChunk);
        }
        op->kind = Op::Kind::kZeroWrite;
        op->done = 0;
        return Submit(op);
      }
    }
    return Finish(op, ErrnoResult(*op, -res));
  }
  switch (op->kind) {
    case Op::Kind::kRead:
    case Op::Kind::kWrite:
    case Op::Kind::kZeroWrite:
    case Op::Kind::kSplice:
      if (res == 0) {
        // Nothing moved: the file shrank under us or the device refuses more.
        return Finish(op, ErrnoResult(*op, EIO));
      }
      op->done += static_cast<uint64_t>(res);
      if (op->pipe) op->pipe->Consumed(static_cast<size_t>(res));
      if (op->done < op->length) return Submit(op);
      return Finish(op, IoResult::Ok());
    case Op::Kind::kFlush:
    case Op::Kind::kFallocate: return Finish(op, IoResult::Ok());
  }
}

void BackingDevice::Finish(Op* op, IoResult result) {
  (op->prev ? op->prev->next : pending_head_) = op->next;
  (op->next ? op->next->prev : pending_tail_) = op->prev;
  std::unique_ptr<Op> owned(op);
  IoCallback done = std::move(owned->done_cb);
  owned.reset();
  done(std::move(result));
}

}  // namespace bsr::storage
