// Congestion of a Connection (net options on-congestion, congestion-fill): a Primary
// whose peer cannot keep up goes Ahead (writes only mark bits; the peer is Behind)
// and comes back with a bitmap-based resync once the link drained. io thread only.
#include <spdlog/spdlog.h>

#include "replication/connection.h"
#include "replication/connection_internal.h"
#include "replication/device.h"
#include "replication/resource.h"

namespace bsr::replication {

uint64_t Connection::BytesInFlight(const std::shared_ptr<Session>& s) {
  // Protocol B/C: written but not acknowledged; protocol A (and B/C as well): still in
  // our send queue or the kernel's.
  uint64_t queued = s->data->queued_bytes() + s->data->kernel_queued_bytes();
  return std::max(queued, s->unacked_bytes);
}

bool Connection::CongestionChecked() const {
  return cfg_.on_congestion != NetConfig::OnCongestion::kBlock &&
         (cfg_.congestion_fill > 0 || cfg_.congestion_extents < meta::kAlMaxExtents);
}

void Connection::CheckCongestion(const std::shared_ptr<Session>& s) {
  if (!CongestionChecked()) return;
  if (resource_->state().role != Role::kPrimary) return;
  // DRBD's two thresholds: bytes in flight to this peer (congestion-fill), and activity-log
  // extents with writes in flight on a volume replicating to it (congestion-extents, only
  // below the AL's size: a full AL already makes writes wait).
  std::string why;
  uint64_t in_flight = BytesInFlight(s);
  if (cfg_.congestion_fill > 0 && in_flight > cfg_.congestion_fill) {
    why = fmt::format("{} KiB in flight > congestion-fill {} KiB", in_flight / 1024,
                      cfg_.congestion_fill / 1024);
  }
  for (auto& [vol, dev] : resource_->devices()) {
    if (!why.empty()) break;
    if (!CanReplicate(vol)) continue;
    auto [in_use, slots] = dev->AlExtentsInUse();
    if (cfg_.congestion_extents < slots && in_use >= cfg_.congestion_extents) {
      why = fmt::format("volume {}: {} activity-log extents in use >= congestion-extents {}", vol,
                        in_use, cfg_.congestion_extents);
    }
  }
  if (why.empty()) return;
  if (cfg_.on_congestion == NetConfig::OnCongestion::kDisconnect) {
    EndSession(s, ConnState::kNetworkFailure,
               fmt::format("congestion: {} (on-congestion disconnect)", why), true);
    return;
  }
  // pull-ahead: every volume that replicates to this peer now goes Ahead.
  std::vector<int> vols;
  for (auto& [vol, dev] : resource_->devices()) {
    auto& pdv = pd(vol);
    if (pdv.ahead || pdv.leaving_ahead || pdv.sync != PeerDevice::Sync::kNone ||
        !CanReplicate(vol)) {
      continue;
    }
    pdv.ahead = true;
    vols.push_back(vol);
  }
  if (vols.empty()) return;
  Status ch = resource_->engine().Change("congestion",
                                         [&](ResourceState& st) {
                                           auto& c = st.connections[peer_id_];
                                           for (int vol : vols)
                                             c.peer_devices[vol].repl = ReplState::kAhead;
                                         },
                                         {.internal = true});
  if (!ch.ok()) spdlog::warn("{}: {}", Tag(), ch.message());
  for (int vol : vols) {
    spdlog::warn(
        "{}/{}: congestion: {}; going Ahead (writes are marked out of sync for this peer "
        "until it caught up)",
        Tag(), vol, why);
    SendState(s, vol);
  }
}

void Connection::CheckAheadDrained(const std::shared_ptr<Session>& s) {
  using Clock = std::chrono::steady_clock;
  auto now = Clock::now();
  // Step 2: every write decided while Ahead has its bits in the bitmap (no application
  // write in flight, or long past its activity-log transaction): resync from here.
  for (auto& [vol, pdv] : peer_devices_) {
    if (!pdv->leaving_ahead) continue;
    auto d = resource_->state().devices.find(vol);
    bool idle = d == resource_->state().devices.end() || d->second.stats.upper_pending == 0;
    if (!idle && now - pdv->left_ahead < std::chrono::seconds(2)) continue;
    pdv->leaving_ahead = false;
    spdlog::info("{}/{}: leaving Ahead with a resync of {} KiB", Tag(), vol,
                 device(vol) ? device(vol)->OutOfSyncSectors(peer_id_) / 2 : 0);
    // BeginSync (sync.cc) moves the peer device Ahead -> WFBitMapS -> SyncSource.
    BeginSync(s, vol, true, false);
    if (!Alive(s)) return;
  }
  // Step 1: the link drained: new writes replicate again (CanReplicate).
  bool any = false;
  for (auto& [vol, pdv] : peer_devices_) any |= pdv->ahead;
  if (!any || BytesInFlight(s) > 0 || !s->pending.empty()) return;
  for (auto& [vol, pdv] : peer_devices_) {
    if (!pdv->ahead) continue;
    pdv->ahead = false;
    pdv->leaving_ahead = true;
    pdv->left_ahead = now;
    spdlog::info("{}/{}: the link drained; replicating again", Tag(), vol);
  }
}

void Connection::OnPeerAheadBehind(const std::shared_ptr<Session>& s, int volume,
                                   ReplState peer_repl) {
  (void)s;
  auto it = resource_->state().connections.find(peer_id_);
  if (it == resource_->state().connections.end()) return;
  auto pdi = it->second.peer_devices.find(volume);
  if (pdi == it->second.peer_devices.end()) return;
  ReplState mine = pdi->second.repl;
  ReplState want = mine;
  if (peer_repl == ReplState::kAhead && mine == ReplState::kEstablished) want = ReplState::kBehind;
  if (peer_repl == ReplState::kEstablished && mine == ReplState::kBehind) {
    want = ReplState::kEstablished;
  }
  if (want == mine) return;
  if (want == ReplState::kBehind) {
    spdlog::warn("{}/{}: the peer is Ahead (congestion); Behind until its resync", Tag(), volume);
  }
  Status ch = resource_->engine().Change(
      "congestion",
      [&](ResourceState& st) { st.connections[peer_id_].peer_devices[volume].repl = want; },
      {.internal = true});
  if (!ch.ok()) spdlog::warn("{}: {}", Tag(), ch.message());
}

}  // namespace bsr::replication
