// Sync decision, sync start, bitmap exchange and sync end of a Connection (the
// block transfer itself is in resync.cc). io thread only.
#include <spdlog/spdlog.h>

#include "meta/bitmap.h"
#include "replication/connection.h"
#include "replication/connection_internal.h"
#include "replication/device.h"
#include "replication/resource.h"

namespace bsr::replication {

namespace p = protocol;

namespace {

uint64_t U(uint64_t uuid) {
  return uuid & ~uint64_t{1};
}
}  // namespace

GenerationUuids Connection::LocalUuids(int volume) const {
  GenerationUuids g;
  auto dev = device(volume);
  if (!dev || !dev->attached()) return g;
  auto info = dev->GetUuids();
  g.current = info.current;
  for (auto& [node, uuid] : info.bitmaps) {
    if (node == peer_id_) g.bitmap = uuid;
  }
  g.history = info.history;
  return g;
}

void Connection::DecideAndStartSync(const std::shared_ptr<Session>& s, int volume) {
  auto dev = device(volume);
  auto& pdv = pd(volume);
  if (!dev || !dev->attached()) return;
  if (pdv.state.disk == p::DiskState::kDiskless) return;
  GenerationUuids peer;
  peer.current = pdv.uuids.current;
  for (auto& b : pdv.uuids.bitmap) {
    if (b.node_id == my_id_) peer.bitmap = b.uuid;
  }
  peer.history = pdv.uuids.history;
  GenerationUuids local = LocalUuids(volume);
  std::string why;
  SyncDecision d = DecideSync(local, peer, &why);
  spdlog::info(
      "{}/{}: sync decision: {} ({}; local current {:016X} bitmap {:016X}, peer current "
      "{:016X} bitmap {:016X})",
      Tag(), volume, SyncDecisionName(d), why, local.current, local.bitmap, peer.current,
      peer.bitmap);
  bool primary = resource_->state().role == Role::kPrimary;
  switch (d) {
    case SyncDecision::kNone: {
      // Same generation, but blocks written while the connection was being set up
      // are marked: the Primary sends them (both bitmaps are exchanged).
      uint64_t dirty = dev->OutOfSyncSectors(peer_id_) / 8 + pdv.uuids.dirty_bits;
      bool have_data = U(local.current) != meta::kUuidJustCreated;
      auto peer_role = static_cast<Role>(static_cast<uint8_t>(pdv.state.role));
      if (dirty > 0 && have_data && (primary || peer_role == Role::kPrimary)) {
        spdlog::info("{}/{}: same data generation but {} marked blocks: bitmap-based sync", Tag(),
                     volume, dirty);
        BeginSync(s, volume, primary, false);
      }
      return;
    }
    case SyncDecision::kSplitBrain:
      spdlog::error("{}/{}: Split-Brain detected but unresolved, dropping connection! ({})", Tag(),
                    volume, why);
      EndSession(s, ConnState::kStandAlone, "split brain detected", false);
      return;
    case SyncDecision::kUnrelated:
      spdlog::error("{}/{}: Unrelated data, aborting! ({})", Tag(), volume, why);
      EndSession(s, ConnState::kStandAlone, "unrelated data", false);
      return;
    case SyncDecision::kTargetBitmap:
    case SyncDecision::kTargetFull:
      if (primary) {
        EndSession(s, ConnState::kStandAlone,
                   "this node is Primary but its data is older than the peer's; refusing to "
                   "become SyncTarget",
                   false);
        return;
      }
      BeginSync(s, volume, false, d == SyncDecision::kTargetFull);
      return;
    case SyncDecision::kSourceBitmap:
    case SyncDecision::kSourceFull:
      BeginSync(s, volume, true, d == SyncDecision::kSourceFull);
      return;
  }
}

void Connection::BeginSync(const std::shared_ptr<Session>& s, int volume, bool source, bool full) {
  auto dev = device(volume);
  auto& pdv = pd(volume);
  if (!dev || !dev->attached() || pdv.sync != PeerDevice::Sync::kNone) return;
  pdv.ResetSync();
  pdv.sync = source ? PeerDevice::Sync::kSource : PeerDevice::Sync::kTarget;
  pdv.full = full;
  pdv.total_bits = dev->data_bits();
  if (full) dev->SetAllPeerBits(peer_id_);
  if (!source) dev->MarkInconsistent();
  ConfigureResync(pdv, volume);
  Status ch = resource_->engine().Change(
      "resync",
      [&](ResourceState& st) {
        auto& c = st.connections[peer_id_];
        c.peer_devices[volume].repl = source ? ReplState::kWFBitMapS : ReplState::kWFBitMapT;
        if (!source) st.devices[volume].disk = DiskState::kInconsistent;
      },
      {.internal = true});
  if (!ch.ok()) {
    EndSession(s, ConnState::kStandAlone, ch.message(), false);
    return;
  }
  SendState(s, volume);
  pdv.bm_rx.assign(p::BitmapWords(pdv.total_bits), 0);
  pdv.bm_receiver = std::make_unique<p::BitmapReceiver>(pdv.bm_rx, pdv.total_bits);
  auto words = dev->PeerBitmapWords(peer_id_);
  p::BitmapEncoder enc(words, pdv.total_bits,
                       cfg_.use_rle && (s->features.feature_bits & p::kFeatureBitmapRle));
  uint64_t bytes = 0;
  while (!enc.done()) {
    auto chunk = enc.Next();
    std::vector<uint8_t> frame = std::visit(
        [&](const auto& c) { return p::EncodePacket(c, static_cast<uint16_t>(volume)); }, chunk);
    bytes += frame.size();
    s->data->Send(std::move(frame));
  }
  spdlog::info("{}/{}: {} sync as {}: sent our bitmap ({} bits set, {} bytes on the wire)", Tag(),
               volume, full ? "full" : "bitmap-based", source ? "SyncSource" : "SyncTarget",
               dev->OutOfSyncSectors(peer_id_) / 8, bytes);
}

Status Connection::OnBitmapChunk(const std::shared_ptr<Session>& s, int volume,
                                 const p::BitmapChunk& chunk) {
  auto& pdv = pd(volume);
  if (!pdv.bm_receiver || pdv.bitmap_done) {
    return Error(Errc::kProtocol, "bitmap chunk for volume {} while no bitmap exchange runs",
                 volume);
  }
  BSR_RETURN_IF_ERROR(pdv.bm_receiver->Apply(chunk));
  if (!pdv.bm_receiver->done()) return Status::Ok();
  pdv.bitmap_done = true;
  auto dev = device(volume);
  if (!dev) return Status::Ok();
  BSR_RETURN_IF_ERROR(dev->MergePeerBitmap(peer_id_, pdv.bm_rx));
  pdv.bm_rx.clear();
  OnBitmapExchanged(s, volume);
  return Status::Ok();
}

void Connection::OnBitmapExchanged(const std::shared_ptr<Session>& s, int volume) {
  auto dev = device(volume);
  auto& pdv = pd(volume);
  bool source = pdv.sync == PeerDevice::Sync::kSource;
  pdv.rs_total_bits = dev->OutOfSyncSectors(peer_id_) / 8;
  pdv.started = std::chrono::steady_clock::now();
  Status ch =
      resource_->engine().Change("resync",
                                 [&](ResourceState& st) {
                                   st.connections[peer_id_].peer_devices[volume].repl =
                                       source ? ReplState::kSyncSource : ReplState::kSyncTarget;
                                 },
                                 {.internal = true});
  if (!ch.ok()) {
    EndSession(s, ConnState::kStandAlone, ch.message(), false);
    return;
  }
  UpdateSyncStats(volume);
  spdlog::info("{}/{}: resync started as {}: {} KiB out of sync", Tag(), volume,
               source ? "SyncSource" : "SyncTarget", pdv.rs_total_bits * 4);
  SendState(s, volume);
  if (!source) PumpResync(s, volume);
}

void Connection::FinishSyncTarget(const std::shared_ptr<Session>& s, int volume) {
  auto& pdv = pd(volume);
  auto dev = device(volume);
  if (pdv.finishing || !dev) return;
  pdv.finishing = true;
  uint64_t source_current = pdv.uuids.current;
  int peer = peer_id_;
  auto self = shared_from_this();
  dev->UpdateMeta(
      [source_current, peer](meta::Metadata& m) -> Status {
        int slot = m.FindPeerSlot(peer);
        if (slot >= 0) BSR_RETURN_IF_ERROR(m.SetBitmapUuid(slot, 0));
        if ((m.superblock().current_uuid & ~uint64_t{1}) != (source_current & ~uint64_t{1})) {
          BSR_RETURN_IF_ERROR(m.SetCurrentUuid(source_current & ~uint64_t{1}));
        }
        BSR_RETURN_IF_ERROR(m.WriteDirtyBitmap());
        return m.SetFlags(meta::kFlagConsistent | meta::kFlagWasUpToDate, 0);
      },
      [this, self, s, volume](Status st) {
        if (!Alive(s)) return;
        auto& pdv = pd(volume);
        if (!st.ok()) {
          EndSession(s, ConnState::kNetworkFailure,
                     fmt::format("finishing the resync: {}", st.message()), true);
          return;
        }
        double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - pdv.started).count();
        uint64_t kib = pdv.rs_total_bits * 4;
        pdv.ResetSync();
        Status ch = resource_->engine().Change("resync",
                                               [&](ResourceState& rs) {
                                                 rs.devices[volume].disk = DiskState::kUpToDate;
                                                 auto& pst =
                                                     rs.connections[peer_id_].peer_devices[volume];
                                                 pst.repl = ReplState::kEstablished;
                                                 pst.stats.rs_total_sectors = 0;
                                                 pst.stats.out_of_sync_sectors = 0;
                                               },
                                               {.internal = true});
        if (!ch.ok()) spdlog::error("{}/{}: {}", Tag(), volume, ch.message());
        spdlog::info(
            "{}/{}: resync done as SyncTarget: {} KiB in {:.2f} s ({:.1f} MiB/s); "
            "disk UpToDate",
            Tag(), volume, kib, secs, secs > 0 ? kib / 1024.0 / secs : 0.0);
        SendUuids(s, volume);
        SendState(s, volume);
      });
}

void Connection::FinishSyncSource(const std::shared_ptr<Session>& s, int volume) {
  auto& pdv = pd(volume);
  auto dev = device(volume);
  if (pdv.finishing || !dev) return;
  pdv.finishing = true;
  int peer = peer_id_;
  auto self = shared_from_this();
  dev->UpdateMeta(
      [peer](meta::Metadata& m) -> Status {
        int slot = m.FindPeerSlot(peer);
        if (slot < 0) return Status::Ok();
        BSR_RETURN_IF_ERROR(m.ClearAllBits(slot));
        BSR_RETURN_IF_ERROR(m.SetBitmapUuid(slot, 0));
        return m.WriteDirtyBitmap();
      },
      [this, self, s, volume](Status st) {
        if (!Alive(s)) return;
        auto& pdv = pd(volume);
        double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - pdv.started).count();
        uint64_t kib = pdv.rs_total_bits * 4;
        pdv.ResetSync();
        if (!st.ok()) spdlog::error("{}/{}: finishing the resync: {}", Tag(), volume, st.message());
        Status ch = resource_->engine().Change("resync",
                                               [&](ResourceState& rs) {
                                                 auto& pst =
                                                     rs.connections[peer_id_].peer_devices[volume];
                                                 pst.repl = ReplState::kEstablished;
                                                 pst.peer_disk = DiskState::kUpToDate;
                                                 pst.stats.rs_total_sectors = 0;
                                                 pst.stats.out_of_sync_sectors = 0;
                                               },
                                               {.internal = true});
        if (!ch.ok()) spdlog::error("{}/{}: {}", Tag(), volume, ch.message());
        spdlog::info("{}/{}: resync done as SyncSource: {} KiB in {:.2f} s ({:.1f} MiB/s)", Tag(),
                     volume, kib, secs, secs > 0 ? kib / 1024.0 / secs : 0.0);
        SendState(s, volume);
      });
}

}  // namespace bsr::replication
