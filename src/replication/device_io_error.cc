// Device's reaction to a failed backing-device request (the disk option on-io-error,
// DRBD semantics): passthrough, detach, call-local-io-error; and to one that takes too
// long (disk-timeout). io thread.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "replication/device.h"
#include "replication/resource.h"

namespace bsr::replication {
namespace {

// The disk is going away: a resync or verify of this volume cannot go on (the state
// engine allows neither without a local disk); the connection logic sees Established.
void StopSyncOf(ResourceState& st, int volume) {
  for (auto& [id, c] : st.connections) {
    auto p = c.peer_devices.find(volume);
    if (p == c.peer_devices.end()) continue;
    if (IsSyncing(p->second.repl) || IsVerifying(p->second.repl)) {
      p->second.repl = ReplState::kEstablished;
    }
  }
}

}  // namespace

Device::IoErrorPolicy Device::io_error_policy() const {
  auto it = spec_.opts.find("on-io-error");
  if (it == spec_.opts.end()) return IoErrorPolicy::kPassthrough;
  if (it->second == "detach") return IoErrorPolicy::kDetach;
  if (it->second == "call-local-io-error") return IoErrorPolicy::kCallHandler;
  return IoErrorPolicy::kPassthrough;  // passthrough, pass_on
}

bool Device::PeerUpToDate(int peer_node_id) const {
  const auto& st = resource_->state();
  auto c = st.connections.find(peer_node_id);
  if (c == st.connections.end() || c->second.conn != ConnState::kConnected) return false;
  auto p = c->second.peer_devices.find(volume_);
  return p != c->second.peer_devices.end() && p->second.peer_disk == DiskState::kUpToDate;
}

void Device::OnLocalIoError(const char* what, uint64_t offset, uint64_t length,
                            const storage::IoResult& r) {
  if (!md_) return;
  std::string tag = fmt::format("{}/{}", resource_->name(), volume_);
  // The range may now differ from every peer's copy: a resync rewrites it (a retry
  // that succeeds locally leaves the bits for the next resync, as bsr's passthrough).
  if (length > 0) {
    std::lock_guard lk(meta_mu_);
    for (int id : resource_->peer_node_ids()) {
      int slot = md_->FindPeerSlot(id);
      if (slot >= 0) md_->SetOutOfSync(slot, offset, length).ok();
    }
  }
  IoErrorPolicy policy = io_error_policy();
  if (policy == IoErrorPolicy::kPassthrough) {
    spdlog::warn("{}: local {} error at offset {} length {}: {} (on-io-error passthrough)", tag,
                 what, offset, length, r.status.message());
    return;
  }
  BeginFailure(fmt::format("local {} error at offset {} length {}: {}; on-io-error {}: detaching",
                           what, offset, length, r.status.message(),
                           policy == IoErrorPolicy::kDetach ? "detach" : "call-local-io-error"),
               policy == IoErrorPolicy::kCallHandler);
}

void Device::BeginFailure(const std::string& why, bool call_handler) {
  if (failing_) return;
  failing_ = true;
  std::string tag = fmt::format("{}/{}", resource_->name(), volume_);
  spdlog::error("{}: {}", tag, why);
  Status s = resource_->engine().Change("local-io-error",
                                        [&](ResourceState& st) {
                                          st.devices[volume_].disk = DiskState::kFailed;
                                          StopSyncOf(st, volume_);
                                        },
                                        {.internal = true});
  if (!s.ok()) spdlog::error("{}: {}", tag, s.message());
  if (call_handler) {
    resource_->RunHandler({.handler = "local-io-error", .volume = volume_, .minor = minor_},
                          [tag](int rc) {
                            if (rc != 0)
                              spdlog::warn("{}: local-io-error handler exit {}", tag, rc);
                          });
  }
  // The failed request and any others still in flight finish first; their
  // completions post MaybeFinishFailure again.
  asio::post(*env_.io, [self = shared_from_this()] { self->MaybeFinishFailure(); });
}

std::chrono::milliseconds Device::disk_timeout() const {
  auto it = spec_.opts.find("disk-timeout");
  if (it == spec_.opts.end()) return std::chrono::milliseconds(0);
  // Tenths of a second, as DRBD; the schema validated the number.
  return std::chrono::milliseconds(std::strtoull(it->second.c_str(), nullptr, 10) * 100);
}

void Device::WatchDiskTimeout() {
  auto timeout = disk_timeout();
  if (!disk_ || failing_ || timeout.count() == 0 || disk_watch_armed_) return;
  if (!disk_timer_) disk_timer_ = std::make_unique<asio::steady_timer>(*env_.io);
  disk_watch_armed_ = true;
  // A few looks per timeout: a stuck request is noticed within 1.25 x disk-timeout.
  auto period =
      std::clamp(timeout / 4, std::chrono::milliseconds(25), std::chrono::milliseconds(1000));
  disk_timer_->expires_after(period);
  disk_timer_->async_wait([weak = weak_from_this()](const asio::error_code& ec) {
    auto self = weak.lock();
    if (!self) return;
    self->disk_watch_armed_ = false;
    if (!ec) self->CheckDiskTimeout();
  });
}

void Device::CheckDiskTimeout() {
  auto timeout = disk_timeout();
  if (!disk_ || failing_ || timeout.count() == 0) return;
  if (auto since = disk_->oldest_pending_since()) {
    auto age = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - *since);
    if (age > timeout) {
      // DRBD aborts such requests; bsrd cannot take a buffer back from the kernel, so
      // they finish whenever the device returns them. Until then the disk is Failed
      // and takes no new request; Diskless follows once they are back.
      BeginFailure(fmt::format("disk-timeout: a request to {} has been pending for {} ms > "
                               "disk-timeout {} ms; detaching",
                               disk_->path(), age.count(), timeout.count()),
                   io_error_policy() == IoErrorPolicy::kCallHandler);
      return;
    }
  }
  WatchDiskTimeout();
}

void Device::DiskOpDone() {
  --disk_ops_;
  if (failing_) asio::post(*env_.io, [self = shared_from_this()] { self->MaybeFinishFailure(); });
}

void Device::MaybeFinishFailure() {
  if (!failing_ || inflight_ > 0 || disk_ops_ > 0) return;
  std::string tag = fmt::format("{}/{}", resource_->name(), volume_);
  if (md_) {
    // Record what we can: the disk missed (or may have missed) writes, so it is no
    // longer known to be up to date (it attaches Outdated); then close it clean. On a
    // dead metadata device this fails and the disk is dropped all the same.
    std::lock_guard lk(meta_mu_);
    Status s = md_->SetFlags(0, meta::kFlagWasUpToDate);
    if (s.ok()) s = md_->Close();
    if (!s.ok()) spdlog::warn("{}: metadata not updated after the I/O error: {}", tag, s.message());
    md_.reset();
  }
  disk_.reset();
  failing_ = false;
  // data_size_ stays: connected clients keep the size and get EIO.
  Status s = resource_->engine().Change("local-io-error",
                                        [&](ResourceState& st) {
                                          st.devices[volume_].disk = DiskState::kDiskless;
                                          StopSyncOf(st, volume_);
                                        },
                                        {.internal = true});
  if (!s.ok()) spdlog::error("{}: {}", tag, s.message());
  spdlog::warn("{}: detached after a local I/O error; the volume is Diskless", tag);
}

}  // namespace bsr::replication
