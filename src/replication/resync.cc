// Resync block transfer of a Connection: SyncSource answers block requests;
// SyncTarget requests the blocks its bitmap marks, writes them and clears the bits.
// io thread only.
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

void Connection::ConfigureResync(PeerDevice& pdv, int volume) {
  pdv.rate_kib = 0;
  auto peers = resource_->peers().find(peer_id_);
  if (peers == resource_->peers().end()) return;
  auto o = peers->second.peer_device_opts.find(volume);
  if (o == peers->second.peer_device_opts.end()) return;
  auto r = o->second.find("resync-rate");
  if (r != o->second.end()) pdv.rate_kib = ParseRate(r->second);
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

}  // namespace bsr::replication
