// Application writes that do not cover whole 512-byte sectors (NBD allows any byte range;
// the wire and the peers' bitmaps work in sectors): each becomes a read-modify-write of
// the sectors it touches, replicated like any other write. io thread only.
#include <spdlog/spdlog.h>

#include <cstring>

#include "replication/device.h"
#include "replication/resource.h"

namespace bsr::replication {

using storage::IoCallback;

namespace {

constexpr uint64_t kSector = 512;

storage::IoResult Failed(int err, std::string what) {
  storage::IoResult r;
  r.err = err;
  r.status = Status(Errc::kIo, std::move(what));
  return r;
}
// What an unaligned piece of a WRITE_ZEROES writes: always less than one sector.
constexpr uint8_t kZeroes[kSector] = {};

uint64_t Down(uint64_t v) {
  return v / kSector * kSector;
}
uint64_t Up(uint64_t v) {
  return (v + kSector - 1) / kSector * kSector;
}

}  // namespace

bool Device::IsUnaligned(uint64_t offset, uint64_t length) {
  return offset % kSector != 0 || length % kSector != 0;
}

bool Device::ShrinkToWholeSectors(uint64_t& offset, uint64_t& length) {
  uint64_t first = Up(offset), end = Down(offset + length);
  if (end <= first) return false;
  offset = first;
  length = end - first;
  return true;
}

void Device::HoldBehindRmw(std::function<void()> retry) {
  rmw_waiting_.push_back(std::move(retry));
}

void Device::MaybeStartRmw() {
  if (inflight_ > 0 || !rmw_start_) return;
  auto start = std::move(rmw_start_);
  rmw_start_ = nullptr;
  start();
}

void Device::EndRmw() {
  rmw_active_ = false;
  // In arrival order; one of them may start the next read-modify-write, and the rest
  // then queue behind it again, still in order.
  auto waiting = std::move(rmw_waiting_);
  rmw_waiting_.clear();
  for (auto& retry : waiting) retry();
}

// Why the whole device waits: the sectors read here must not change before the merged
// write lands, and two in-flight writes to one sector may land in either order (locally
// and on every peer). Unaligned writes are rare (a kernel block device never sends one),
// so holding every other write for one round trip costs nothing in practice.
void Device::WriteUnaligned(uint64_t offset, std::span<const uint8_t> data, bool fua,
                            IoCallback done) {
  rmw_active_ = true;
  rmw_start_ = [self = shared_from_this(), offset, data, fua, done = std::move(done)]() mutable {
    self->RmwRead(offset, data, fua, std::move(done));
  };
  MaybeStartRmw();  // at once when no write is in flight, else when the last one ends
}

void Device::RmwRead(uint64_t offset, std::span<const uint8_t> data, bool fua, IoCallback done) {
  uint64_t first = Down(offset), end = Up(offset + data.size());
  auto fail = [this, &done](storage::IoResult r) {
    done(std::move(r));
    EndRmw();
  };
  if (end > data_size_) {
    return fail(Failed(EINVAL, fmt::format("write of {} bytes at {} ends past the volume "
                                           "({} bytes)",
                                           data.size(), offset, data_size_)));
  }
  if (!disk_ || failing_) return fail(Failed(EIO, "no local disk attached"));
  auto buf = std::make_shared<storage::AlignedBuffer>(end - first);
  // The partial sectors at both ends (one read when both ends are in the same sector).
  std::vector<uint64_t> edges;
  if (offset != first) edges.push_back(first);
  if (offset + data.size() != end && (edges.empty() || end - kSector != first)) {
    edges.push_back(end - kSector);
  }
  struct Reads {
    size_t left = 0;
    storage::IoResult result = storage::IoResult::Ok();
  };
  auto reads = std::make_shared<Reads>();
  reads->left = edges.size();
  auto merge = [self = shared_from_this(), buf, reads, first, offset, data, fua,
                done = std::move(done)](storage::IoResult r) mutable {
    if (!r.ok() && reads->result.ok()) reads->result = std::move(r);
    if (--reads->left > 0) return;
    if (!reads->result.ok()) {
      self->OnLocalIoError("read", first, buf->size(), reads->result);
      done(std::move(reads->result));
      return self->EndRmw();
    }
    std::memcpy(buf->data() + (offset - first), data.data(), data.size());
    Device* d = self.get();
    self->SubmitWrite(
        first, buf->size(),
        [d](uint64_t off, uint64_t, const Replica& rep, IoCallback cb) {
          d->disk_->Write(off, rep.data, (rep.dp_flags & protocol::kDpFua) != 0, std::move(cb));
        },
        {fua ? protocol::kDpFua : 0u, buf->span()},
        [self, buf, done = std::move(done)](storage::IoResult r) mutable {
          done(std::move(r));
          self->EndRmw();
        });
  };
  // Each read's callback runs merge once; the last one goes on.
  auto shared_merge = std::make_shared<decltype(merge)>(std::move(merge));
  for (uint64_t pos : edges) {
    disk_->Read(pos, buf->span().subspan(pos - first, kSector),
                [shared_merge](storage::IoResult r) { (*shared_merge)(std::move(r)); });
  }
}

void Device::WriteZeroesUnaligned(uint64_t offset, uint64_t length, bool fua, bool no_hole,
                                  IoCallback done) {
  // Partial sectors at both ends as merged zero writes, the whole sectors between them as
  // an aligned WRITE_ZEROES; one after the other, each through the export (and its gate).
  uint64_t end = offset + length;
  uint64_t head_end = std::min(end, Up(offset));
  uint64_t tail = std::max(head_end, Down(end));
  auto ex = export_;
  auto tail_step = [ex, tail, end, fua, done = std::move(done)](storage::IoResult r) {
    if (!r.ok() || tail == end) return done(std::move(r));
    ex->Write(tail, {kZeroes, end - tail}, fua, done);
  };
  auto middle_step = [ex, head_end, tail, fua, no_hole,
                      tail_step = std::move(tail_step)](storage::IoResult r) mutable {
    if (!r.ok() || tail == head_end) return tail_step(std::move(r));
    ex->WriteZeroes(head_end, tail - head_end, fua, no_hole, std::move(tail_step));
  };
  if (head_end == offset) return middle_step(storage::IoResult::Ok());
  ex->Write(offset, {kZeroes, head_end - offset}, fua, std::move(middle_step));
}

}  // namespace bsr::replication
