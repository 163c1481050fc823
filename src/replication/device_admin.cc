// Device's admin commands (outdate, new-current-uuid, get-gi/show-gi) and the I/O
// suspension (suspend-io, on-no-data-accessible suspend-io). io thread; metadata is
// written synchronously under meta_mu_, as attach and promote do.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <random>

#include "replication/device.h"
#include "replication/resource.h"

namespace bsr::replication {
namespace {

uint64_t NewGenerationUuid() {
  static std::mt19937_64 rng(std::random_device{}());
  return rng() & ~uint64_t{1};  // the lowest bit is DRBD's "primary" marker in history
}

}  // namespace

Status Device::Outdate() {
  if (!md_) return Error(Errc::kState, "minor {} has no disk attached", minor_);
  std::lock_guard lk(meta_mu_);
  uint32_t flags = md_->superblock().flags;
  if (!(flags & meta::kFlagConsistent)) {
    return Error(Errc::kState, "minor {}: the metadata says the disk is Inconsistent", minor_);
  }
  return md_->SetFlags(0, meta::kFlagWasUpToDate)
      .WithContext(fmt::format("outdate minor {}", minor_));
}

Status Device::NewCurrentUuid(bool clear_bitmap, bool* up_to_date) {
  *up_to_date = false;
  if (!md_) return Error(Errc::kState, "minor {} has no disk attached", minor_);
  std::lock_guard lk(meta_mu_);
  const auto& sb = md_->superblock();
  bool just_created = sb.current_uuid == meta::kUuidJustCreated;
  uint64_t uuid = NewGenerationUuid();
  std::string what = fmt::format("new-current-uuid minor {}", minor_);
  if (!clear_bitmap) {
    // As on promotion: peers that are not connected will miss what follows.
    return md_->NewCurrentUuid(uuid, DisconnectedPeerSlots()).WithContext(what);
  }
  for (uint32_t slot = 0; slot < sb.max_peers; ++slot) {
    if (sb.peers[slot].node_id < 0) continue;
    BSR_RETURN_IF_ERROR(md_->ClearAllBits(static_cast<int>(slot)).WithContext(what));
    if (md_->peer(static_cast<int>(slot)).bitmap_uuid != 0) {
      BSR_RETURN_IF_ERROR(md_->SetBitmapUuid(static_cast<int>(slot), 0).WithContext(what));
    }
  }
  BSR_RETURN_IF_ERROR(md_->WriteDirtyBitmap().WithContext(what));
  if (just_created) {
    // Skip the initial sync: the data is declared identical and up to date; the
    // creation marker does not go to the history.
    BSR_RETURN_IF_ERROR(md_->UpdateSuperblock([uuid](meta::Superblock& s) {
                             s.current_uuid = uuid;
                             s.flags |= meta::kFlagConsistent | meta::kFlagWasUpToDate;
                           })
                            .WithContext(what));
    *up_to_date = true;
    return Status::Ok();
  }
  return md_->SetCurrentUuid(uuid).WithContext(what);
}

Result<std::string> Device::GenerationIds(int peer_node_id, bool verbose) const {
  if (!md_) return Error(Errc::kState, "minor {} has no disk attached", minor_);
  std::lock_guard lk(meta_mu_);
  const auto& sb = md_->superblock();
  int slot = md_->FindPeerSlot(peer_node_id);
  if (slot < 0) {
    return Error(Errc::kNotFound, "minor {} has no bitmap slot for node-id {}", minor_,
                 peer_node_id);
  }
  if (!verbose) return meta::GiLine(sb, slot) + "\n";
  return fmt::format("{}peer node-id {} (slot {}): {} out-of-sync blocks of 4 KiB\n",
                     meta::GiText(sb, slot), peer_node_id, slot, md_->OutOfSyncBits(slot));
}

bool Device::HoldIfSuspended(Retry retry) {
  if (export_stopping_ || !MayHold()) return false;
  held_.push_back(std::move(retry));
  resource_->engine().UpdateStats(
      [&](ResourceState& s) { s.devices[volume_].stats.upper_blocked = true; });
  return true;
}

void Device::ReleaseHeld() {
  resource_->engine().UpdateStats(
      [&](ResourceState& s) { s.devices[volume_].stats.upper_blocked = false; });
  auto held = std::move(held_);
  held_.clear();
  for (auto& h : held) h(!export_stopping_);
}

bool Device::HoldIfNoData(Retry retry) {
  if (export_stopping_ || no_data_eio_) return false;
  auto it = resource_->options().find("on-no-data-accessible");
  if (it == resource_->options().end() || it->second != "suspend-io") return false;
  // An UpToDate peer holds the data; bsr does not forward I/O to it (the request
  // fails with EIO), so only "no data anywhere" suspends, as DRBD does.
  for (int id : resource_->peer_node_ids()) {
    if (PeerUpToDate(id)) return false;
  }
  if (!resource_->state().susp_no_data) {
    spdlog::warn("{}/{}: no data accessible: suspending I/O (on-no-data-accessible suspend-io)",
                 resource_->name(), volume_);
    Status s = resource_->engine().Change(
        "suspend-io", [](ResourceState& st) { st.susp_no_data = true; }, {.internal = true});
    if (!s.ok()) return false;
  }
  return HoldIfSuspended(std::move(retry));
}

void Device::OnAttached() {
  if (!md_) return;
  WatchDiskTimeout();
  if (resource_->state().susp_no_data) {
    resource_->engine()
        .Change("resume-io", [](ResourceState& st) { st.susp_no_data = false; }, {.internal = true})
        .ok();
  }
  // Other volumes may hold requests too: they retry and are held again if needed.
  for (const auto& [vol, dev] : resource_->devices()) dev->ReleaseHeld();
}

}  // namespace bsr::replication
