// SplicePipe: kernel pipes that carry one received data block from a socket to the
// backing file without a user-space copy (splice(2) socket -> pipe on the io thread, then
// pipe -> file as an io_uring splice in BackingDevice::WriteFromPipe). Pipes come from a
// SplicePipePool and go back to it when their block is written. io thread only.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"

namespace bsr::storage {

class SplicePipe {
 public:
  // One pipe can hold at most this many: each socket buffer a splice takes fills one of
  // its slots, and without CAP_SYS_RESOURCE a pipe has 256 slots (1 MiB of pages), so a
  // 1 MiB block that arrived in partial pages needs a second pipe.
  static constexpr size_t kMaxPipes = 4;

  // A first non-blocking pipe sized for `capacity` bytes (F_SETPIPE_SZ; smaller when
  // the kernel refuses).
  static Result<std::unique_ptr<SplicePipe>> Make(size_t capacity);

  // Bytes the pipes can hold at most (fewer when socket buffers are partial pages).
  size_t capacity() const { return pipe_size_ * kMaxPipes; }
  // Bytes in the pipes (put in and not yet taken out).
  size_t held() const { return held_; }

  // Moves up to `length` bytes from the socket into the pipes without copying them: the
  // bytes moved (> 0), 0 at the end of the stream, or -errno: -EAGAIN when the socket
  // has nothing now, -ENOSPC when the pipes are full.
  ssize_t FillFromSocket(int socket_fd, size_t length);
  // Copies bytes already in memory into the pipes (a block's head that arrived with its
  // header): all of `bytes`, or -errno.
  ssize_t Put(std::span<const uint8_t> bytes);
  // Reads everything held into `out` (at least held() bytes), in order; empty afterwards.
  Status Drain(std::span<uint8_t> out);

  // For the writer (BackingDevice::WriteFromPipe): the pipe the next bytes come from and
  // how many it holds; Consumed(n) after n of them left it by other means.
  int front_fd() const;
  size_t front_held() const;
  void Consumed(size_t n);

 private:
  struct Segment {
    UniqueFd read, write;
    size_t held = 0;
  };
  static Result<Segment> MakeSegment(size_t capacity, size_t* got);
  // The first segment from front_ that holds bytes (the last one when none does).
  size_t FirstHolding() const;
  explicit SplicePipe(size_t pipe_size) : pipe_size_(pipe_size) {}

  size_t pipe_size_;
  std::vector<Segment> segments_;  // filled in order; the writer takes from the front
  size_t front_ = 0;               // first segment that may still hold bytes
  size_t fill_ = 0;                // the segment new bytes go into
  size_t held_ = 0;
};

// Spare pipes, so a resync does not make new ones per block. Get() hands out a pipe
// whose owner returns it here when done (if empty and the pool still exists). At most
// `max_out` pipes are out at once (each holds up to 2 * kMaxPipes descriptors): past
// that Get() refuses and the caller receives into memory, so a deep queue of large
// blocks cannot use up the process's file descriptors (sockets, accepts, disk opens).
class SplicePipePool {
 public:
  explicit SplicePipePool(size_t capacity, size_t max_spare = 16, size_t max_out = 32)
      : state_(std::make_shared<State>(State{capacity, max_spare, max_out, 0, {}})) {}
  Result<std::shared_ptr<SplicePipe>> Get();
  size_t spare() const { return state_->spare.size(); }
  size_t out() const { return state_->out; }

 private:
  struct State {
    size_t capacity;
    size_t max_spare;
    size_t max_out;
    size_t out;  // handed out and not yet returned
    std::vector<std::unique_ptr<SplicePipe>> spare;
  };
  std::shared_ptr<State> state_;
};

}  // namespace bsr::storage
