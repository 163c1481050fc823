// BackingDevice: asynchronous I/O on a backing file or block device through io_uring, with
// small page-cache reads and writes done inline under a time guard (see BackingOptions).
// Owned by one asio io_context thread: call every method on it; callbacks run on it.
#pragma once

#include <liburing.h>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/unique_fd.h"
#include "storage/aligned_buffer.h"
#include "storage/page_cache_file.h"
#include "storage/splice_pipe.h"

namespace bsr::storage {

// Outcome of one I/O. `err` is 0 or a positive errno; `status` carries what failed
// where ("write /path offset 4096 length 512: Input/output error (errno 5)").
struct IoResult {
  int err = 0;
  Status status;
  bool ok() const { return err == 0; }
  static IoResult Ok() { return {}; }
};
using IoCallback = std::function<void(IoResult)>;

// How data reaches the backing device. Either way an acknowledged write is in the
// lower device (the page cache counts, as a disk's volatile write cache does for
// DRBD), FUA writes use RWF_DSYNC and Flush() is fdatasync, so FLUSH/FUA reach
// stable storage in every mode.
enum class CacheMode {
  // O_DIRECT on block devices; the page cache on regular files (like DRBD on a loop
  // device, whose default is buffered I/O on its file).
  kAuto,
  // O_DIRECT where the device allows it; falls back to buffered I/O (with a logged
  // reason) when refused.
  kDirect,
  // Always through the page cache.
  kBuffered,
};

// "auto", "direct", "buffered" (for command lines); nullopt for anything else.
std::optional<CacheMode> ParseCacheMode(std::string_view text);
const char* CacheModeName(CacheMode mode);

struct BackingOptions {
  bool read_only = false;
  // kAuto follows $BSR_BACKING_CACHE (auto, direct, buffered) when it is set.
  CacheMode cache = CacheMode::kAuto;
  // Requests in the kernel at once; more wait in a FIFO inside the device. Callers
  // bound their own memory (the NBD server caps requests per connection).
  unsigned queue_depth = 128;
  // Page-cache reads and writes up to this many bytes run on the calling thread
  // (preadv2 with RWF_NOWAIT, pwrite) instead of going through io_uring, which hands
  // every buffered ext4 write to an io-wq worker and so costs two thread wake-ups
  // per request. A write goes inline only when it is alone (nothing in the ring, no
  // other write inline in the same handler batch); concurrent writes keep the ring,
  // where the worker's copy overlaps this thread's socket work. 0 turns it off;
  // $BSR_BACKING_INLINE (bytes) overrides it. FUA writes, O_DIRECT I/O, flushes and
  // discards always go through io_uring, and so does everything on a file outside the
  // local file systems (ext2/3/4, xfs, btrfs, f2fs, tmpfs, ramfs): on FUSE or NFS a
  // page-cache write may wait for another process or host.
  uint32_t inline_max_bytes = 64 * 1024;
  // The guard that keeps inline writes bounded work: one that took longer than this
  // (dirty-page throttling, a journal wait, a busy CPU) sends buffered writes through
  // io_uring for inline_backoff, doubled each time the next inline write is slow
  // again (up to kMaxInlineBackoff).
  std::chrono::nanoseconds inline_slow = std::chrono::microseconds(500);
  std::chrono::nanoseconds inline_backoff = std::chrono::milliseconds(50);
};

// Where a device's requests went (for tests and benchmarks).
struct BackingStats {
  uint64_t inline_reads = 0;        // whole read served from the page cache on the caller's thread
  uint64_t inline_writes = 0;       // written into the page cache on the caller's thread
  uint64_t slow_inline_writes = 0;  // inline writes that tripped the guard
  uint64_t ring_ops = 0;            // requests submitted to io_uring
};

class BackingDevice {
 public:
  static constexpr std::chrono::nanoseconds kMaxInlineBackoff = std::chrono::seconds(5);

  // Opens `path` (regular file or block device) and sets up its io_uring with its
  // completions delivered on `io`. Blocks briefly (open, ioctl, one probe read): call
  // it while setting up, not from a busy I/O loop.
  static Result<std::unique_ptr<BackingDevice>> Open(asio::io_context& io, const std::string& path,
                                                     const BackingOptions& options);

  // Waits (blocking) for requests still in the kernel so that no buffer is written
  // after it is freed; their callbacks are dropped, queued requests are never sent.
  ~BackingDevice();
  BackingDevice(const BackingDevice&) = delete;
  BackingDevice& operator=(const BackingDevice&) = delete;

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }
  // Logical block size: offsets, lengths and buffer addresses aligned to it take the
  // O_DIRECT path; anything else goes through the page cache (same file, coherent).
  uint32_t logical_block_size() const { return block_size_; }
  bool is_block_device() const { return is_block_device_; }
  bool direct() const { return direct_fd_.valid(); }
  bool read_only() const { return read_only_; }
  unsigned queue_depth() const { return queue_depth_; }
  size_t inflight() const { return inflight_; }
  size_t queued() const { return waiting_.size(); }
  const BackingStats& stats() const { return stats_; }
  // When the oldest request still pending (queued or in the kernel) was started;
  // nullopt when none is (the disk-timeout watchdog). Inline requests are not counted:
  // they finish before the call returns.
  std::optional<std::chrono::steady_clock::time_point> oldest_pending_since() const;
  // Inline writes are paused by the guard until this time (epoch when never).
  std::chrono::steady_clock::time_point inline_paused_until() const { return inline_resume_; }

  // All ranges must lie inside [0, size()); a range outside fails with EINVAL.
  // Buffers must stay valid until the callback runs. The callback never runs inside
  // the call: even a request done inline completes from a handler posted to the
  // io_context (or, inside a CompletionScope, when the scope's owner runs it after the
  // call returned), so callers need not expect re-entrance.
  void Read(uint64_t offset, std::span<uint8_t> buffer, IoCallback done);
  // fua: the data is on stable storage when `done` runs (RWF_DSYNC).
  void Write(uint64_t offset, std::span<const uint8_t> data, bool fua, IoCallback done);
  // fdatasync: everything completed before reaches stable storage.
  void Flush(IoCallback done);
  // Deallocates (punch hole; zeroing on block devices). Advisory: a device that
  // cannot discard reports success.
  void Discard(uint64_t offset, uint64_t length, IoCallback done);
  // Range reads back as zeroes afterwards. may_unmap lets it punch a hole; otherwise
  // the blocks stay allocated (ZERO_RANGE, or written zeroes when that is refused).
  void WriteZeroes(uint64_t offset, uint64_t length, bool may_unmap, IoCallback done);

  // The file for zero-copy sends of its blocks (a resync's RsDataReply): only when every
  // request goes through the page cache (no O_DIRECT descriptor), so what a send reads
  // there is what the last write left; nullptr otherwise, or once a send failed on it.
  std::shared_ptr<PageCacheFile> page_cache_file();

  // Whether WriteFromPipe may be used: a writable device whose I/O all goes through the
  // page cache (no O_DIRECT descriptor), so a spliced write is coherent with the rest.
  bool splice_writes() const { return fd_.valid() && !direct_fd_.valid() && !read_only_; }
  // Writes the `length` bytes waiting in `pipe` to [offset, offset+length) with an
  // io_uring splice: an io-wq worker moves them into the page cache (one segment per
  // submission). Like a ring Write(), it is not ordered against other ring writes to
  // the same range: callers keep overlapping writes apart (an inline write already
  // waits for an overlapping one pending here). `pipe` must stay alive until `done`
  // runs. EINVAL on a device without splice_writes().
  void WriteFromPipe(uint64_t offset, uint64_t length, SplicePipe& pipe, IoCallback done);

 private:
  struct Op;
  BackingDevice(asio::io_context& io, std::string path);

  Status Setup(const BackingOptions& options);
  void Start(std::unique_ptr<Op> op);
  void Submit(Op* op);
  void Prep(Op* op, io_uring_sqe* sqe);
  void ScheduleSubmit();
  void ArmCompletions();
  void ReapCompletions();
  void Complete(Op* op, int res);
  void Finish(Op* op, IoResult result);
  bool CheckRange(const char* what, uint64_t offset, uint64_t length, const IoCallback& done);
  void CompleteSoon(IoCallback done, IoResult result);
  IoResult ErrnoResult(const Op& op, int err) const;
  IoResult ErrnoResult(const char* what, uint64_t offset, uint64_t length, int err) const;
  // True when this range goes through the O_DIRECT descriptor.
  bool UsesDirect(uint64_t offset, uint64_t length, const void* buffer) const;
  bool InlineAllowed(uint64_t offset, uint64_t length, const void* buffer) const;
  // Inline attempts: true when the request was finished (its callback posted);
  // *done_bytes tells how much an unfinished read already got.
  bool TryInlineRead(uint64_t offset, std::span<uint8_t> buffer, IoCallback& done,
                     uint64_t* done_bytes);
  bool TryInlineWrite(uint64_t offset, std::span<const uint8_t> data, IoCallback& done);
  // A ring write, discard or zeroing in flight (or waiting) touches the range.
  bool OverlapsPending(uint64_t offset, uint64_t length) const;

  asio::io_context& io_;
  std::string path_;
  UniqueFd fd_;                                  // buffered (page cache) access
  UniqueFd direct_fd_;                           // O_DIRECT access when the device allows it
  asio::posix::stream_descriptor event_stream_;  // watches the ring's descriptor
  io_uring ring_{};
  bool ring_ready_ = false;
  uint64_t size_ = 0;
  uint32_t block_size_ = 512;
  bool is_block_device_ = false;
  bool read_only_ = false;
  unsigned queue_depth_ = 128;
  uint32_t inline_max_ = 0;
  bool inline_reads_ = true;  // off once the kernel refuses RWF_NOWAIT
  std::chrono::nanoseconds inline_slow_{};
  std::chrono::nanoseconds inline_backoff_base_{};
  std::chrono::nanoseconds inline_backoff_{};
  std::chrono::steady_clock::time_point inline_resume_{};
  BackingStats stats_;
  Op* pending_head_ = nullptr;  // every started, unfinished request, oldest first
  Op* pending_tail_ = nullptr;
  size_t inflight_ = 0;
  bool submit_scheduled_ = false;
  unsigned unsubmitted_ = 0;
  std::deque<Op*> waiting_;
  AlignedBuffer zeroes_;                       // source for written zeroes, allocated on first use
  std::shared_ptr<PageCacheFile> page_cache_;  // made on first use (page_cache_file)
  // Shared flag the posted handlers check, so none runs after destruction.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace bsr::storage
