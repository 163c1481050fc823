// Sync decision, bitmap exchange and resync of a Connection (SyncSource answers
// block requests; SyncTarget requests the blocks its bitmap marks, writes them and
// clears the bits). io thread only.
#include <spdlog/spdlog.h>

#include "meta/bitmap.h"
#include "replication/connection.h"
#include "replication/connection_internal.h"
#include "replication/device.h"
#include "replication/resource.h"

namespace bsr::replication {

namespace p = protocol;

namespace {

constexpr size_t kMaxResyncRequests = 16;

uint64_t U(uint64_t uuid) {
  return uuid & ~uint64_t{1};
}
constexpr uint64_t kMaxRunBits = p::kMaxDataSize / 4096;

// resync-rate in KiB/s ("100M", "250k", "4096"); 0 when unset or unparsable.
uint64_t ParseRate(const std::string& v) {
  if (v.empty()) return 0;
  size_t pos = 0;
  uint64_t n = 0;
  try {
    n = std::stoull(v, &pos);
  } catch (...) {
    return 0;
  }
  std::string unit = v.substr(pos);
  if (unit == "M" || unit == "m") n *= 1024;
  if (unit == "G" || unit == "g") n *= 1024 * 1024;
  return n;
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
  auto peers = resource_->peers().find(peer_id_);
  pdv.rate_kib = 0;
  if (peers != resource_->peers().end()) {
    auto o = peers->second.peer_device_opts.find(volume);
    if (o != peers->second.peer_device_opts.end()) {
      auto r = o->second.find("resync-rate");
      if (r != o->second.end()) pdv.rate_kib = ParseRate(r->second);
    }
  }
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

void Connection::PumpResync(const std::shared_ptr<Session>& s, int volume) {
  auto& pdv = pd(volume);
  if (!Alive(s) || pdv.sync != PeerDevice::Sync::kTarget || !pdv.bitmap_done || pdv.finishing) {
    return;
  }
  auto dev = device(volume);
  if (!dev) return;
  uint64_t size = dev->size_bytes();
  while (pdv.requests.size() < kMaxResyncRequests) {
    if (pdv.rate_kib > 0) {
      double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - pdv.started).count();
      double allowed = static_cast<double>(pdv.rate_kib) * 1024.0 * secs + p::kMaxDataSize;
      if (static_cast<double>(pdv.requested_bytes) >= allowed) {
        if (!pdv.pump_scheduled) {
          pdv.pump_scheduled = true;
          auto t = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(20));
          auto self = shared_from_this();
          t->async_wait([this, self, s, volume, t](std::error_code) {
            if (!Alive(s)) return;
            pd(volume).pump_scheduled = false;
            PumpResync(s, volume);
          });
        }
        return;
      }
    }
    // The cursor only moves forward, except when a stale reply re-marks a range
    // behind it (OnResyncReply), so nothing in flight is requested twice.
    uint64_t bit = dev->NextPeerOutOfSync(peer_id_, pdv.cursor);
    if (bit == meta::kNoBit) break;
    uint64_t end = dev->NextPeerInSync(peer_id_, bit);
    end = std::min({end, bit + kMaxRunBits, pdv.total_bits});
    pdv.cursor = end;
    uint64_t offset = bit * 4096;
    uint64_t length = std::min(end * 4096, size) - offset;
    p::RsDataRequest rq;
    rq.sector = offset / 512;
    rq.block_id = pdv.next_request_id++;
    rq.size = static_cast<uint32_t>(length);
    pdv.requests[rq.block_id] = {offset, length, false};
    pdv.requested_bytes += length;
    s->data->SendPacket(rq, static_cast<uint16_t>(volume));
  }
  if (pdv.requests.empty() && s->inflight.empty() &&
      dev->NextPeerOutOfSync(peer_id_, 0) == meta::kNoBit) {
    FinishSyncTarget(s, volume);
  }
}

void Connection::OnResyncRequest(const std::shared_ptr<Session>& s, int volume,
                                 const p::RsDataRequest& rq) {
  auto dev = device(volume);
  auto self = shared_from_this();
  auto neg = [s, volume, rq] {
    p::NegRsDataReply n;
    n.sector = rq.sector;
    n.block_id = rq.block_id;
    n.size = rq.size;
    s->meta->SendPacket(n, static_cast<uint16_t>(volume));
  };
  if (!dev || !dev->attached() || rq.sector * 512 + rq.size > dev->size_bytes()) return neg();
  dev->ReadForPeer(rq.sector * 512, rq.size,
                   [this, self, s, volume, rq, neg](storage::IoResult r,
                                                    std::shared_ptr<storage::AlignedBuffer> buf) {
                     if (!Alive(s)) return;
                     if (!r.ok()) {
                       spdlog::error("{}/{}: resync read at sector {} failed: {}", Tag(), volume,
                                     rq.sector, r.status.message());
                       return neg();
                     }
                     p::RsDataReply d;
                     d.sector = rq.sector;
                     d.block_id = rq.block_id;
                     d.size = rq.size;
                     d.data = std::span<const uint8_t>(buf->data(), rq.size);
                     s->data->Send(p::EncodePacket(d, static_cast<uint16_t>(volume)));
                     resource_->engine().UpdateStats([&](ResourceState& st) {
                       st.connections[peer_id_].peer_devices[volume].stats.sent_sectors +=
                           rq.size / 512;
                     });
                   });
}

void Connection::OnResyncReply(const std::shared_ptr<Session>& s, int volume,
                               std::shared_ptr<Received> r) {
  auto* d = std::get_if<p::RsDataReply>(&r->packet);
  auto& pdv = pd(volume);
  auto it = pdv.requests.find(d->block_id);
  auto dev = device(volume);
  if (it == pdv.requests.end() || !dev) {
    spdlog::warn("{}/{}: resync reply for unknown request {}", Tag(), volume, d->block_id);
    return;
  }
  auto rq = it->second;
  pdv.requests.erase(it);
  if (rq.stale) {
    // An application write to this range overtook the reply: ask again.
    dev->SetPeerOutOfSync(peer_id_, rq.offset, rq.length);
    pdv.cursor = std::min(pdv.cursor, rq.offset / 4096);
    PumpResync(s, volume);
    return;
  }
  uint64_t key = s->next_inflight++;
  s->inflight[key] = {rq.offset, rq.length};
  auto self = shared_from_this();
  dev->ApplyPeerWrite(
      rq.offset, d->data, rq.length, 0, [this, self, s, volume, r, rq, key](storage::IoResult res) {
        s->inflight.erase(key);
        PeerWriteDone(s);
        if (!Alive(s)) return;
        auto* d = std::get_if<p::RsDataReply>(&r->packet);
        p::BlockAckFields a;
        a.sector = d->sector;
        a.block_id = d->block_id;
        a.size = d->size;
        if (!res.ok()) {
          spdlog::error("{}/{}: resync write at {}+{} failed: {}", Tag(), volume, rq.offset,
                        rq.length, res.status.message());
          EndSession(s, ConnState::kNetworkFailure, "resync write failed", true);
          return;
        }
        if (auto dv = device(volume)) dv->SetPeerInSync(peer_id_, rq.offset, rq.length);
        s->meta->SendPacket(p::RsWriteAck{a}, static_cast<uint16_t>(volume));
        resource_->engine().UpdateStats([&](ResourceState& st) {
          st.connections[peer_id_].peer_devices[volume].stats.received_sectors += rq.length / 512;
        });
        UpdateSyncStats(volume);
        PumpResync(s, volume);
      });
}

void Connection::OnResyncAck(const std::shared_ptr<Session>& s, int volume,
                             const p::BlockAckFields& ack, bool ok) {
  auto dev = device(volume);
  if (!dev) return;
  if (ok) {
    dev->SetPeerInSync(peer_id_, ack.sector * 512, ack.size);
    UpdateSyncStats(volume);
    return;
  }
  EndSession(s, ConnState::kNetworkFailure,
             fmt::format("the sync source could not read sector {}", ack.sector), true);
}

void Connection::MarkStaleResync(PeerDevice& pdv, uint64_t offset, uint64_t length) {
  for (auto& [id, rq] : pdv.requests) {
    if (offset < rq.offset + rq.length && rq.offset < offset + length) rq.stale = true;
  }
}

void Connection::UpdateSyncStats(int volume) {
  auto dev = device(volume);
  if (!dev) return;
  auto& pdv = pd(volume);
  uint64_t oos = dev->OutOfSyncSectors(peer_id_);
  double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - pdv.started).count();
  resource_->engine().UpdateStats([&](ResourceState& st) {
    auto& ps = st.connections[peer_id_].peer_devices[volume].stats;
    ps.out_of_sync_sectors = oos;
    ps.rs_total_sectors = pdv.rs_total_bits * 8;
    ps.rs_done_sectors = ps.rs_total_sectors > oos ? ps.rs_total_sectors - oos : 0;
    if (secs > 0.1) ps.rs_rate_kib = static_cast<uint64_t>(ps.rs_done_sectors / 2 / secs);
  });
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
