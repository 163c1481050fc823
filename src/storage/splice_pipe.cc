#include "storage/splice_pipe.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace bsr::storage {

Result<SplicePipe::Segment> SplicePipe::MakeSegment(size_t capacity, size_t* got) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    return Error(Errc::kIo, "pipe for a spliced block: {} (errno {})", std::strerror(errno), errno);
  }
  Segment seg{UniqueFd(fds[0]), UniqueFd(fds[1])};
  // Without CAP_SYS_RESOURCE the kernel caps this at /proc/sys/fs/pipe-max-size; take
  // what it allows.
  int size = -1;
  for (size_t want = capacity; want >= 64 * 1024 && size < 0; want /= 2) {
    size = ::fcntl(seg.write.get(), F_SETPIPE_SZ, static_cast<int>(want));
  }
  if (size < 0) size = ::fcntl(seg.write.get(), F_GETPIPE_SZ);
  if (size <= 0) {
    return Error(Errc::kIo, "sizing a pipe for a spliced block: {} (errno {})",
                 std::strerror(errno), errno);
  }
  *got = static_cast<size_t>(size);
  return seg;
}

Result<std::unique_ptr<SplicePipe>> SplicePipe::Make(size_t capacity) {
  size_t got = 0;
  BSR_ASSIGN_OR_RETURN(Segment seg, MakeSegment(capacity, &got));
  std::unique_ptr<SplicePipe> pipe(new SplicePipe(got));
  pipe->segments_.push_back(std::move(seg));
  return pipe;
}

ssize_t SplicePipe::FillFromSocket(int socket_fd, size_t length) {
  for (;;) {
    Segment& seg = segments_[fill_];
    ssize_t n = ::splice(socket_fd, nullptr, seg.write.get(), nullptr, length,
                         SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
      seg.held += static_cast<size_t>(n);
      held_ += static_cast<size_t>(n);
      return n;
    }
    if (n == 0) return 0;
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return -errno;
    // EAGAIN: nothing in the socket, or this pipe's slots are used up.
    int queued = 0;
    if (seg.held == 0 || ::ioctl(socket_fd, FIONREAD, &queued) != 0 || queued == 0) return -EAGAIN;
    if (fill_ + 1 == segments_.size()) {
      if (segments_.size() == kMaxPipes) return -ENOSPC;
      size_t got = 0;
      auto more = MakeSegment(pipe_size_, &got);
      if (!more.ok()) return -ENOSPC;
      segments_.push_back(std::move(*more));
    }
    ++fill_;
  }
}

ssize_t SplicePipe::Put(std::span<const uint8_t> bytes) {
  Segment& seg = segments_[fill_];
  size_t put = 0;
  while (put < bytes.size()) {
    ssize_t n = ::write(seg.write.get(), bytes.data() + put, bytes.size() - put);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;  // EAGAIN: the pipe is full
    put += static_cast<size_t>(n);
    seg.held += static_cast<size_t>(n);
    held_ += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(put);
}

Status SplicePipe::Drain(std::span<uint8_t> out) {
  if (out.size() < held_) {
    return Error(Errc::kInternal, "draining pipes of {} bytes into {} bytes", held_, out.size());
  }
  size_t got = 0;
  for (auto& seg : segments_) {
    while (seg.held > 0) {
      ssize_t n = ::read(seg.read.get(), out.data() + got, seg.held);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        return Error(Errc::kIo, "draining a pipe ({} bytes left): {}", seg.held,
                     n == 0 ? "end of file" : std::strerror(errno));
      }
      got += static_cast<size_t>(n);
      seg.held -= static_cast<size_t>(n);
      held_ -= static_cast<size_t>(n);
    }
  }
  front_ = fill_ = 0;
  return Status::Ok();
}

size_t SplicePipe::FirstHolding() const {
  size_t at = front_;
  while (at + 1 < segments_.size() && segments_[at].held == 0) ++at;
  return at;
}

int SplicePipe::front_fd() const {
  return segments_[FirstHolding()].read.get();
}

size_t SplicePipe::front_held() const {
  return segments_[FirstHolding()].held;
}

void SplicePipe::Consumed(size_t n) {
  while (n > 0) {
    front_ = FirstHolding();
    Segment& seg = segments_[front_];
    size_t take = n < seg.held ? n : seg.held;
    if (take == 0) break;
    seg.held -= take;
    held_ -= take;
    n -= take;
  }
  if (held_ == 0) front_ = fill_ = 0;
}

Result<std::shared_ptr<SplicePipe>> SplicePipePool::Get() {
  if (state_->out >= state_->max_out) {
    return Error(Errc::kBusy, "splice pipes: {} in use (the limit)", state_->out);
  }
  std::unique_ptr<SplicePipe> pipe;
  if (!state_->spare.empty()) {
    pipe = std::move(state_->spare.back());
    state_->spare.pop_back();
  } else {
    BSR_ASSIGN_OR_RETURN(pipe, SplicePipe::Make(state_->capacity));
  }
  std::weak_ptr<State> pool = state_;
  ++state_->out;
  return std::shared_ptr<SplicePipe>(pipe.release(), [pool](SplicePipe* p) {
    std::unique_ptr<SplicePipe> owned(p);
    auto st = pool.lock();
    if (!st) return;
    --st->out;
    // A pipe that still holds bytes (a failed write) is closed, not reused.
    if (p->held() == 0 && st->spare.size() < st->max_spare) {
      st->spare.push_back(std::move(owned));
    }
  });
}

}  // namespace bsr::storage
