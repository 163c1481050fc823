#include "replication/device.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include "common/unique_fd.h"
#include "protocol/io_packets.h"
#include "replication/connection.h"
#include "replication/resource.h"

namespace bsr::replication {

using frontend::ExportInfo;
using frontend::OpenContext;
using storage::IoCallback;
using storage::IoResult;

namespace {

IoResult Failed(int err, std::string what) {
  IoResult r;
  r.err = err;
  r.status = Status(Errc::kIo, std::move(what));
  return r;
}

bool OptYes(const std::map<std::string, std::string>& opts, const std::string& name, bool def) {
  auto it = opts.find(name);
  if (it == opts.end()) return def;
  return it->second == "yes" || it->second == "on" || it->second == "true" || it->second.empty();
}

uint64_t NewUuid() {
  static std::mt19937_64 rng(std::random_device{}());
  return rng() & ~uint64_t{1};  // the lowest bit is DRBD's "primary" marker in history
}

bool IsKernelOpen(const OpenContext& ctx) {
  return ctx.peer.rfind("kernel ", 0) == 0;
}

}  // namespace

// The replicated volume as the NBD server (and /dev/bsrN) see it.
class Device::VolumeExport : public frontend::Export {
 public:
  explicit VolumeExport(Device* d) : d_(d) {}

  ExportInfo Info() const override {
    ExportInfo info;
    info.size = d_->data_size_;
    info.min_block = 1;
    info.description =
        fmt::format("bsr {}/{} (minor {})", d_->resource_->name(), d_->volume_, d_->minor_);
    info.can_flush = true;
    return info;
  }
  Status Open(const OpenContext& ctx) override { return d_->OnOpen(ctx); }
  void Close(const OpenContext& ctx) override { d_->OnClose(ctx); }

  void Read(uint64_t offset, std::span<uint8_t> buf, IoCallback done) override {
    auto self = d_->shared_from_this();
    auto retry = [self, offset, buf, done](bool run) {
      if (!run) return done(Failed(EIO, "export stopped while I/O was suspended"));
      self->export_->Read(offset, buf, done);
    };
    if (d_->HoldIfSuspended(retry)) return;
    if (!d_->disk_ || d_->failing_) {
      if (d_->HoldIfNoData(retry)) return;
      return done(Failed(EIO, "no local disk attached"));
    }
    d_->UpdateIoStats(0, 0, +1);
    d_->DiskOpStart();
    d_->disk_->Read(offset, buf,
                    [self, offset, n = buf.size(), done = std::move(done)](IoResult r) {
                      self->UpdateIoStats(r.ok() ? n : 0, 0, -1);
                      if (!r.ok()) self->OnLocalIoError("read", offset, n, r);
                      self->DiskOpDone();
                      done(std::move(r));
                    });
  }

  void Write(uint64_t offset, std::span<const uint8_t> data, bool fua, IoCallback done) override {
    Device* d = d_;
    if (d->rmw_active_) {
      return d->HoldBehindRmw([self = d->shared_from_this(), offset, data, fua, done] {
        self->export_->Write(offset, data, fua, done);
      });
    }
    if (IsUnaligned(offset, data.size()))
      return d->WriteUnaligned(offset, data, fua, std::move(done));
    d_->SubmitWrite(
        offset, data.size(),
        [d](uint64_t off, uint64_t, const Replica& r, IoCallback cb) {
          d->disk_->Write(off, r.data, (r.dp_flags & protocol::kDpFua) != 0, std::move(cb));
        },
        {fua ? protocol::kDpFua : 0u, data}, std::move(done));
  }

  void Flush(IoCallback done) override {
    auto self = d_->shared_from_this();
    auto retry = [self, done](bool run) {
      if (!run) return done(Failed(EIO, "export stopped while I/O was suspended"));
      self->export_->Flush(done);
    };
    if (d_->HoldIfSuspended(retry)) return;
    if (!d_->disk_ || d_->failing_) {
      if (d_->HoldIfNoData(retry)) return;
      return done(Failed(EIO, "no local disk attached"));
    }
    d_->FlushAll(std::move(done));
  }

  void Trim(uint64_t offset, uint64_t length, bool fua, IoCallback done) override {
    Device* d = d_;
    if (d->rmw_active_) {
      return d->HoldBehindRmw([self = d->shared_from_this(), offset, length, fua, done] {
        self->export_->Trim(offset, length, fua, done);
      });
    }
    // A hint: only the whole sectors inside the range are discarded, here and on peers.
    if (IsUnaligned(offset, length) && !ShrinkToWholeSectors(offset, length))
      return done(IoResult::Ok());
    d_->SubmitWrite(
        offset, length,
        [d](uint64_t off, uint64_t len, const Replica& r, IoCallback cb) {
          auto* disk = d->disk_.get();
          bool fua = (r.dp_flags & protocol::kDpFua) != 0;
          disk->Discard(off, len, [disk, fua, cb = std::move(cb)](IoResult r) {
            if (!r.ok() || !fua) return cb(std::move(r));
            disk->Flush(std::move(cb));
          });
        },
        {protocol::kDpDiscard | (fua ? protocol::kDpFua : 0u), {}}, std::move(done));
  }

  void WriteZeroes(uint64_t offset, uint64_t length, bool fua, bool no_hole,
                   IoCallback done) override {
    Device* d = d_;
    if (d->rmw_active_) {
      return d->HoldBehindRmw([self = d->shared_from_this(), offset, length, fua, no_hole, done] {
        self->export_->WriteZeroes(offset, length, fua, no_hole, done);
      });
    }
    if (IsUnaligned(offset, length)) {
      return d->WriteZeroesUnaligned(offset, length, fua, no_hole, std::move(done));
    }
    d_->SubmitWrite(
        offset, length,
        [d, no_hole](uint64_t off, uint64_t len, const Replica& r, IoCallback cb) {
          auto* disk = d->disk_.get();
          bool fua = (r.dp_flags & protocol::kDpFua) != 0;
          disk->WriteZeroes(off, len, !no_hole, [disk, fua, cb = std::move(cb)](IoResult r) {
            if (!r.ok() || !fua) return cb(std::move(r));
            disk->Flush(std::move(cb));
          });
        },
        {protocol::kDpZeroes | (fua ? protocol::kDpFua : 0u), {}}, std::move(done));
  }

 private:
  Device* d_;
};

Device::Device(Resource* resource, DeviceEnv env, int volume, int minor)
    : resource_(resource), env_(env), volume_(volume), minor_(minor) {
  meta_strand_ = std::make_unique<asio::strand<asio::thread_pool::executor_type>>(
      asio::make_strand(env_.meta_pool->get_executor()));
  export_ = std::make_shared<VolumeExport>(this);
}

Device::~Device() = default;

std::string Device::nbd_socket_path() const {
  return fmt::format("{}/{}/{}.sock", env_.run_dir, resource_->name(), volume_);
}

uint64_t Device::size_bytes() const {
  return data_size_;
}

Status Device::StartExport() {
  frontend::NbdServerOptions o;
  o.unix_path = nbd_socket_path();
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(o.unix_path).parent_path(), ec);
  nbd_ = std::make_unique<frontend::NbdServer>(*env_.io, o);
  nbd_->AddExport(fmt::format("{}/{}", resource_->name(), volume_), export_);
  return nbd_->Start().WithContext(fmt::format("NBD export of {}/{}", resource_->name(), volume_));
}

void Device::StopExport(std::function<void()> done) {
  // Held requests keep their connections open: fail them so the server can stop.
  export_stopping_ = true;
  auto held = std::move(held_);
  held_.clear();
  for (auto& h : held) h(false);
  if (!nbd_) return done();
  // The resource may be gone by the time the server has stopped: take the path now.
  nbd_->Stop([path = nbd_socket_path(), done = std::move(done)] {
    std::error_code ec;
    std::filesystem::remove(path, ec);
    done();
  });
}

Result<DiskState> Device::Attach(const AttachSpec& spec, const std::vector<int>& peer_node_ids) {
  if (md_) return Error(Errc::kState, "minor {} already has a disk ({})", minor_, spec_.disk);
  BSR_ASSIGN_OR_RETURN(auto placement, meta::Placement::Parse(spec.meta_index));
  storage::BackingOptions bo;
  BSR_ASSIGN_OR_RETURN(auto disk, storage::BackingDevice::Open(*env_.io, spec.disk, bo));
  BSR_ASSIGN_OR_RETURN(auto mio, meta::FileIo::Open(spec.meta_disk));

  meta::OpenOptions oo;
  oo.placement = placement;
  if (placement.kind != meta::PlacementKind::kInternal) oo.backing_size = disk->size();
  if (auto it = spec.opts.find("al-extents"); it != spec.opts.end()) {
    oo.al_extents = static_cast<uint32_t>(std::stoul(it->second));
  }
  oo.al_updates = OptYes(spec.opts, "al-updates", true);
  oo.md_flushes = OptYes(spec.opts, "md-flushes", true);
  if (placement.kind != meta::PlacementKind::kInternal && OptYes(spec.opts, "disk-flushes", true)) {
    // The AL lives on another device: an evicted extent's data must be stable first.
    oo.data_flush = [path = spec.disk]() -> Status {
      UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd.valid() || ::fdatasync(fd.get()) != 0) {
        return Error(Errc::kIo, "flush {}: {}", path, std::strerror(errno));
      }
      return Status::Ok();
    };
  }
  meta::OpenReport report;
  auto md = meta::Metadata::Open(std::move(mio), oo, &report);
  if (!md.ok()) return md.status().WithContext(fmt::format("attach minor {}", minor_));
  spdlog::info("{}/{}: attached {} (meta {} {}): {}", resource_->name(), volume_, spec.disk,
               spec.meta_disk, spec.meta_index, report.Summary());

  uint64_t size = (*md)->data_size();
  if (placement.kind != meta::PlacementKind::kInternal) size = std::min(size, disk->size());
  for (int id : peer_node_ids) {
    auto slot = (*md)->AssignPeerSlot(id, false);
    if (!slot.ok()) return slot.status().WithContext(fmt::format("attach minor {}", minor_));
  }
  uint32_t flags = (*md)->superblock().flags;
  DiskState ds = DiskState::kInconsistent;
  if (flags & meta::kFlagConsistent) {
    // Consistent without was-up-to-date: outdated (`outdate`, or a detach after an
    // I/O error), as DRBD's MDF_CONSISTENT without MDF_WAS_UP_TO_DATE.
    ds = (flags & meta::kFlagWasUpToDate) ? DiskState::kUpToDate : DiskState::kOutdated;
  }
  spec_ = spec;
  disk_ = std::move(disk);
  md_ = std::move(*md);
  data_size_ = size;
  disk_flushes_ = OptYes(spec.opts, "disk-flushes", true);
  no_data_eio_ = false;
  // Runs after the resource recorded the new disk state (this is a control request).
  asio::post(*env_.io, [self = shared_from_this()] { self->OnAttached(); });
  return ds;
}

Status Device::Detach() {
  if (!md_) return Error(Errc::kState, "minor {} has no disk attached", minor_);
  if (inflight_ > 0) {
    return Error(Errc::kBusy, "minor {} has {} requests in flight", minor_, inflight_);
  }
  if (failing_) return Error(Errc::kBusy, "minor {} is detaching after an I/O error", minor_);
  Status s;
  {
    std::lock_guard lk(meta_mu_);
    s = md_->Close();
  }
  if (!s.ok()) return s.WithContext(fmt::format("detach minor {}", minor_));
  md_.reset();
  // Peer requests still at the disk (a resync read after the disconnect) are dropped
  // with it (BackingDevice's destructor), and with them their completions.
  disk_.reset();
  disk_ops_ = 0;
  data_size_ = 0;
  return Status::Ok();
}

Status Device::SetDiskOptions(const std::map<std::string, std::string>& opts) {
  for (const auto& [k, v] : opts) spec_.opts[k] = v;
  disk_flushes_ = OptYes(spec_.opts, "disk-flushes", true);
  WatchDiskTimeout();  // a disk-timeout set (or raised from 0) at runtime
  return Status::Ok();
}

Status Device::EnsurePeerSlot(int node_id) {
  if (!md_) return Status::Ok();
  std::lock_guard lk(meta_mu_);
  return md_->AssignPeerSlot(node_id, false).status();
}

Status Device::OnPromote(bool forced) {
  if (!md_) return Status::Ok();
  std::lock_guard lk(meta_mu_);
  uint32_t set = meta::kFlagPrimaryInd;
  if (forced) set |= meta::kFlagConsistent | meta::kFlagWasUpToDate;
  BSR_RETURN_IF_ERROR(md_->SetFlags(set, 0));
  // New data generation: every peer that is not connected now misses what follows.
  std::vector<int> slots;
  for (int id : resource_->peer_node_ids()) {
    auto c = resource_->state().connections.find(id);
    if (c != resource_->state().connections.end() && c->second.conn == ConnState::kConnected) {
      continue;
    }
    if (int slot = md_->FindPeerSlot(id); slot >= 0) slots.push_back(slot);
  }
  return md_->NewCurrentUuid(NewUuid(), slots);
}

Status Device::OnDemote() {
  if (!md_) return Status::Ok();
  std::lock_guard lk(meta_mu_);
  BSR_RETURN_IF_ERROR(md_->WriteDirtyBitmap());
  return md_->SetFlags(0, meta::kFlagPrimaryInd);
}

void Device::OnPeerLost(int peer_node_id) {
  if (!md_) return;
  uint64_t uuid = NewUuid();
  std::string tag = fmt::format("{}/{}", resource_->name(), volume_);
  auto changed = std::make_shared<bool>(false);
  RunMeta(
      [peer_node_id, uuid, changed](meta::Metadata& m) -> Status {
        int slot = m.FindPeerSlot(peer_node_id);
        if (slot < 0 || m.peer(slot).bitmap_uuid != 0) return Status::Ok();
        std::vector<int> slots{slot};
        *changed = true;
        return m.NewCurrentUuid(uuid | 1, slots);
      },
      [self = shared_from_this(), tag, changed](Status s) {
        if (!s.ok()) {
          spdlog::error("{}: new current UUID after losing a peer: {}", tag, s.message());
        } else if (*changed && self->attached()) {  // after `down`, resource_ may be gone
          // The peers still connected take part in the new generation (they get every
          // write from now on): they adopt it (Connection::OnPeerUuids), so that a later
          // disconnect from them gives a bitmap-based resync, not a split brain.
          self->resource_->SendUuidsToPeers(self->volume_);
        }
      });
}

void Device::MarkInconsistent() {
  if (!md_) return;
  std::string tag = fmt::format("{}/{}", resource_->name(), volume_);
  RunMeta(
      [](meta::Metadata& m) {
        return m.SetFlags(0, meta::kFlagConsistent | meta::kFlagWasUpToDate);
      },
      [tag](Status s) {
        if (!s.ok()) spdlog::error("{}: marking the disk inconsistent: {}", tag, s.message());
      });
}

uint64_t Device::OutOfSyncSectors(int peer_node_id) const {
  if (!md_) return 0;
  std::lock_guard lk(meta_mu_);
  int slot = md_->FindPeerSlot(peer_node_id);
  return slot < 0 ? 0 : md_->OutOfSyncBits(slot) * 8;
}

std::vector<int> Device::DisconnectedPeerSlots() const {
  std::vector<int> slots;
  const auto& st = resource_->state();
  for (int id : resource_->peer_node_ids()) {
    auto c = st.connections.find(id);
    bool connected = c != st.connections.end() && c->second.conn == ConnState::kConnected;
    if (connected) continue;
    if (int slot = md_->FindPeerSlot(id); slot >= 0) slots.push_back(slot);
  }
  return slots;
}

void Device::RunMeta(std::function<Status(meta::Metadata&)> fn, std::function<void(Status)> then) {
  auto self = shared_from_this();
  asio::post(*meta_strand_, [self, fn = std::move(fn), then = std::move(then)]() mutable {
    Status s;
    {
      std::lock_guard lk(self->meta_mu_);
      s = self->md_ ? fn(*self->md_) : Error(Errc::kState, "no metadata attached");
    }
    asio::post(*self->env_.io, [s, then = std::move(then)] { then(s); });
  });
}

// A cheap test before HoldIfSuspended: only a suspended resource may hold a request,
// and building the retry (copies of the request and its callbacks) costs allocations
// that every write would otherwise pay.
bool Device::MayHold() const {
  return resource_->state().suspended();
}

void Device::SubmitWrite(uint64_t offset, uint64_t length, LocalIo io, Replica replica,
                         IoCallback done) {
  auto make_retry = [&] {
    return [self = shared_from_this(), offset, length, io, replica, done](bool run) {
      if (!run) return done(Failed(EIO, "export stopped while I/O was suspended"));
      self->SubmitWrite(offset, length, io, replica, done);
    };
  };
  if (MayHold() && HoldIfSuspended(make_retry())) return;
  if (!md_ || !disk_ || failing_) {
    if (HoldIfNoData(make_retry())) return;
    return done(Failed(EIO, "no local disk attached"));
  }
  UpdateIoStats(0, 0, +1);
  ++inflight_;
  // Peers that take this write get it now; the others get its bits in their slot.
  // The wire carries whole sectors only. Unaligned writes reach this point widened to
  // whole sectors by the read-modify-write (device_unaligned.cc); should one still be
  // unaligned, its bits are marked for the peers instead of sending it.
  bool aligned = offset % 512 == 0 && length % 512 == 0;
  // Walks the resource's peer map in place: a copy of the ids cost a heap allocation
  // per write (docs/benchmarks.md, issue 6 session 5).
  std::vector<int> slots;
  std::vector<std::shared_ptr<Connection>> peers;
  peers.reserve(resource_->peers().size());
  for (const auto& [id, spec] : resource_->peers()) {
    auto c = resource_->connection(id);
    if (c && aligned && c->CanReplicate(volume_)) {
      peers.push_back(c);
    } else if (int slot = md_->FindPeerSlot(id); slot >= 0) {
      slots.push_back(slot);
    }
  }
  bool fast = false;
  if (slots.empty()) {
    std::unique_lock lk(meta_mu_, std::try_to_lock);
    if (lk.owns_lock()) fast = md_->TryBeginIoFast(offset, length);
  }
  auto self = shared_from_this();
  if (fast) {
    return StartWrite(offset, length, std::move(io), replica, std::move(peers), std::move(done));
  }
  // Cold extent, or peers that miss this write: the AL transaction (and the bits)
  // must be on disk before the data write may start. The caller's buffer stays valid
  // until `done` runs, so the replica's span is still good after this hop.
  RunMeta(
      [offset, length, slots](meta::Metadata& m) -> Status {
        for (int attempt = 0;; ++attempt) {
          auto r = m.BeginIo(offset, length);
          if (r.ok()) break;
          if (r.status().code() != Errc::kBusy || attempt > 1000) return r.status();
          // Every AL extent is in use: completions free one soon (CompleteIo takes the
          // lock only briefly); wait and retry.
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        for (int slot : slots) BSR_RETURN_IF_ERROR(m.SetOutOfSync(slot, offset, length));
        return Status::Ok();
      },
      [self, offset, length, io = std::move(io), replica, peers = std::move(peers),
       done = std::move(done)](Status s) mutable {
        if (!s.ok()) {
          spdlog::error("{}/{}: activity log: {}", self->resource_->name(), self->volume_,
                        s.message());
          --self->inflight_;
          self->MaybeStartRmw();
          self->UpdateIoStats(0, 0, -1);
          // The data write never started; the caller sees the failure.
          return done(Failed(EIO, s.message()));
        }
        self->StartWrite(offset, length, std::move(io), replica, std::move(peers), std::move(done));
      });
}

// One application write in flight: the local write and each peer's acknowledgement.
// Its callbacks hold a plain pointer (std::function keeps it inline); the last of
// them to run finishes the write and frees it.
struct Device::WriteOp {
  std::shared_ptr<Device> self;
  uint64_t offset = 0;
  uint64_t length = 0;
  int waiting = 0;
  bool peer_took_it = false;  // an UpToDate peer acknowledged the write
  IoResult local;
  IoCallback done;

  void OneDone() {
    if (--waiting > 0) return;
    std::unique_ptr<WriteOp> owned(this);
    std::shared_ptr<Device> d = std::move(self);
    d->AfterWrite(offset, length, std::move(local), peer_took_it, std::move(done));
  }
};

void Device::StartWrite(uint64_t offset, uint64_t length, LocalIo io, Replica replica,
                        std::vector<std::shared_ptr<Connection>> peers, IoCallback done) {
  auto* op = new WriteOp;
  op->self = shared_from_this();
  op->offset = offset;
  op->length = length;
  op->waiting = 1 + static_cast<int>(peers.size());
  op->done = std::move(done);
  uint64_t pa_mark = peers.empty() ? 0 : resource_->BeginReplicatedWrite();  // peer_ack.cc
  for (auto& c : peers) {
    int peer = c->peer_node_id();
    // A peer that can no longer take the write (disconnect before the ack): its bits
    // are set while the extent is still in the activity log, then the write completes.
    c->SendWrite(volume_, offset, replica.data, length, replica.dp_flags, [op, peer](bool ok) {
      if (!ok) op->self->SetPeerOutOfSync(peer, op->offset, op->length);
      if (ok && op->self->PeerUpToDate(peer)) op->peer_took_it = true;
      op->OneDone();
    });
  }
  if (!peers.empty()) resource_->EndReplicatedWrite(pa_mark);
  io(offset, length, replica, [op](IoResult r) {
    op->local = std::move(r);
    op->OneDone();
  });
}

namespace {
// A flush in flight: the local flush and each peer's barrier acknowledgement.
struct FlushOp {
  int waiting = 0;
  bool peer_took_it = false;  // an UpToDate peer acknowledged the barrier
  IoResult local;
  IoCallback done;
};
}  // namespace

void Device::FlushAll(IoCallback done) {
  std::vector<std::shared_ptr<Connection>> peers;
  for (const auto& [id, spec] : resource_->peers()) {
    auto c = resource_->connection(id);
    if (c && c->CanReplicate(volume_)) peers.push_back(c);
  }
  auto op = std::make_shared<FlushOp>();
  op->waiting = 1 + static_cast<int>(peers.size());
  op->done = std::move(done);
  auto one_done = [op] {
    if (--op->waiting == 0) op->done(std::move(op->local));
  };
  auto self = shared_from_this();
  for (auto& c : peers) {
    // A peer that drops out before its barrier ack no longer needs the flush.
    int peer = c->peer_node_id();
    c->SendFlush(volume_, [self, op, peer, one_done](bool ok) {
      if (ok && self->PeerUpToDate(peer)) op->peer_took_it = true;
      one_done();
    });
  }
  if (!disk_flushes_) {
    op->local = IoResult::Ok();
    return one_done();
  }
  DiskOpStart();
  disk_->Flush([self, op, one_done](IoResult r) {
    if (!r.ok()) {
      self->OnLocalIoError("flush", 0, 0, r);
      // The data is on an UpToDate peer: the flush succeeded where it matters.
      if (self->io_error_policy() != IoErrorPolicy::kPassthrough && op->peer_took_it) {
        r = IoResult::Ok();
      }
    }
    op->local = std::move(r);
    self->DiskOpDone();
    one_done();
  });
}

void Device::AfterWrite(uint64_t offset, uint64_t length, IoResult r, bool peer_took_it,
                        IoCallback done) {
  if (!r.ok()) {
    spdlog::error("{}/{}: local write failed: {}", resource_->name(), volume_, r.status.message());
    OnLocalIoError("write", offset, length, r);
    // detach / call-local-io-error: a connected UpToDate peer holds the data, so the
    // write completes (DRBD); without one the caller gets the error.
    if (io_error_policy() != IoErrorPolicy::kPassthrough && peer_took_it) r = IoResult::Ok();
  }
  auto finish = [self = shared_from_this(), length, r, done = std::move(done)](Status s) mutable {
    if (!s.ok()) {
      spdlog::error("{}/{}: activity log completion: {}", self->resource_->name(), self->volume_,
                    s.message());
    }
    --self->inflight_;
    self->UpdateIoStats(0, r.ok() ? length : 0, -1);
    self->UpdatePeerOosStats();
    if (self->failing_) {
      asio::post(*self->env_.io, [self] { self->MaybeFinishFailure(); });
    }
    done(std::move(r));
    self->MaybeStartRmw();
  };
  {
    std::unique_lock lk(meta_mu_, std::try_to_lock);
    if (lk.owns_lock()) {
      Status s = md_->CompleteIo(offset, length);
      lk.unlock();
      return finish(s);
    }
  }
  RunMeta([offset, length](meta::Metadata& m) { return m.CompleteIo(offset, length); },
          std::move(finish));
}

void Device::UpdateIoStats(uint64_t read_bytes, uint64_t written_bytes, int pending_delta) {
  resource_->engine().UpdateStats([&](ResourceState& s) {
    auto it = s.devices.find(volume_);
    if (it == s.devices.end()) return;
    auto& st = it->second.stats;
    st.read_sectors += read_bytes / 512;
    st.written_sectors += written_bytes / 512;
    st.upper_pending = static_cast<uint32_t>(static_cast<int>(st.upper_pending) + pending_delta);
    st.size_sectors = data_size_ / 512;
  });
}

Status Device::OnOpen(const OpenContext& ctx) {
  const auto& st = resource_->state();
  // /dev/bsrN opens the export while it exists (a Primary's); whether a filesystem
  // holds it shows when it is torn down, so it does not count as a user here.
  if (IsKernelOpen(ctx)) {
    if (st.role != Role::kPrimary) {
      return Error(Errc::kState, "{}/{} is Secondary: /dev/bsr{} exists only on the Primary",
                   resource_->name(), volume_, minor_);
    }
    kernel_open_ = true;
    return Status::Ok();
  }
  if (st.role != Role::kPrimary) {
    if (!resource_->auto_promote()) {
      return Error(Errc::kState,
                   "{}/{} is Secondary: the volume is only accessible on the Primary "
                   "(bsradm primary {}, or auto-promote yes)",
                   resource_->name(), volume_, resource_->name());
    }
    Status s = resource_->Promote(false);
    if (!s.ok()) {
      return Error(Errc::kState, "{}/{} is Secondary and auto-promote failed: {}",
                   resource_->name(), volume_, s.message());
    }
    auto_promoted_ = true;
    spdlog::info("{}/{}: auto-promoted for NBD client {}", resource_->name(), volume_, ctx.peer);
  }
  ++open_count_;
  resource_->engine().UpdateStats(
      [&](ResourceState& s) { s.devices[volume_].open = s.devices[volume_].open_writable = true; });
  return Status::Ok();
}

void Device::OnClose(const OpenContext& ctx) {
  if (IsKernelOpen(ctx)) {
    kernel_open_ = false;
    return;
  }
  --open_count_;
  if (open_count_ > 0) return;
  resource_->engine().UpdateStats([&](ResourceState& s) {
    s.devices[volume_].open = s.devices[volume_].open_writable = false;
  });
  if (!auto_promoted_) return;
  bool others_open = false;
  for (const auto& [vol, dev] : resource_->devices()) others_open |= dev->open_count() > 0;
  if (others_open) return;
  auto_promoted_ = false;
  Status s = resource_->Demote();
  if (!s.ok()) {
    spdlog::warn("{}/{}: auto-demote after {} closed failed: {}", resource_->name(), volume_,
                 ctx.peer, s.message());
  }
}

}  // namespace bsr::replication
