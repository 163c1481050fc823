// Online verify of a Connection (VerifyS/VerifyT, verify-alg): VerifyS asks for 4 KiB
// blocks (OvRequest), VerifyT answers with the digest of its copy (OvReply), VerifyS
// compares it with its own and reports OvResult; blocks that differ are marked out of
// sync on both sides (resynced on the next connect) and the out-of-sync handler runs.
// Also the dispatch of the sync packets connection_io.cc hands over, the peer's
// replication state, and Resource's pause-sync/verify entry points. io thread only.
#include <spdlog/spdlog.h>

#include "protocol/auth.h"
#include "replication/connection.h"
#include "replication/connection_internal.h"
#include "replication/device.h"
#include "replication/resource.h"

namespace bsr::replication {

namespace p = protocol;

namespace {

constexpr size_t kMaxVerifyRequests = 256;
constexpr uint64_t kUnknownSector = ~uint64_t{0};

}  // namespace

// ---- Resource entry points ---------------------------------------------------------

Status Resource::PauseSync(int node_id, int volume, bool pause) {
  if (!device(volume)) return Error(Errc::kNotFound, "{}: no volume {}", name_, volume);
  if (peers_.find(node_id) == peers_.end()) {
    return Error(Errc::kNotFound, "{}: no connection to node-id {}", name_, node_id);
  }
  if (auto c = connection(node_id)) return c->SetResyncPaused(volume, pause);
  // StandAlone: only the flag; the next resync with this peer starts paused.
  auto cs = state().connections.find(node_id);
  if (cs == state().connections.end()) {
    return Error(Errc::kNotFound, "{}: no connection to node-id {}", name_, node_id);
  }
  auto ps = cs->second.peer_devices.find(volume);
  if (ps != cs->second.peer_devices.end() && ps->second.resync_susp_user == pause) {
    return Error(Errc::kState, "{}: Sync-pause flag is already {}", name_,
                 pause ? "set" : "cleared");
  }
  return engine_.Change("pause-sync",
                        [&](ResourceState& st) {
                          st.connections[node_id].peer_devices[volume].resync_susp_user = pause;
                        },
                        {.internal = true});
}

Status Resource::Verify(int node_id, int volume, uint64_t start_sector, uint64_t stop_sector) {
  if (!device(volume)) return Error(Errc::kNotFound, "{}: no volume {}", name_, volume);
  if (peers_.find(node_id) == peers_.end()) {
    return Error(Errc::kNotFound, "{}: no connection to node-id {}", name_, node_id);
  }
  auto c = connection(node_id);
  if (!c || !c->established()) {
    return Error(Errc::kState, "{}: node-id {} is not connected; verify needs a connection", name_,
                 node_id);
  }
  return c->StartVerify(volume, start_sector, stop_sector);
}

// ---- Dispatch ----------------------------------------------------------------------

bool Connection::IsSyncExtraPacket(const p::Packet& pkt) {
  return std::holds_alternative<p::OvRequest>(pkt) || std::holds_alternative<p::OvReply>(pkt) ||
         std::holds_alternative<p::OvResult>(pkt) ||
         std::holds_alternative<p::CsumRsRequest>(pkt) ||
         std::holds_alternative<p::RsIsInSync>(pkt);
}

Status Connection::OnSyncExtraPacket(const std::shared_ptr<Session>& s, int volume,
                                     const Received& r) {
  auto dev = device(volume);
  const auto& pkt = r.packet;
  if (!dev) {
    return Error(Errc::kProtocol, "{} for volume {}, which this node does not have",
                 p::PacketTypeName(p::TypeOf(pkt)), volume);
  }
  auto bad_range = [&](const p::BlockRequestFields& rq) {
    return rq.size == 0 || rq.size > p::kMaxDataSize ||
           rq.sector > (dev->size_bytes() - rq.size) / 512 || rq.size > dev->size_bytes();
  };
  if (auto* rq = std::get_if<p::OvRequest>(&pkt)) {
    if (bad_range(*rq)) {
      return Error(Errc::kProtocol, "OvRequest for sector {} size {} outside the device",
                   rq->sector, rq->size);
    }
    OnVerifyRequest(s, volume, *rq);
  } else if (auto* rp = std::get_if<p::OvReply>(&pkt)) {
    OnVerifyReply(s, volume, *rp);
  } else if (auto* res = std::get_if<p::OvResult>(&pkt)) {
    p::BlockRequestFields range;
    range.sector = res->sector;
    range.size = res->size;
    if (bad_range(range) || (res->block_id != p::kOvInSync && res->block_id != p::kOvOutOfSync)) {
      return Error(Errc::kProtocol, "OvResult {} for sector {} size {} is malformed", res->block_id,
                   res->sector, res->size);
    }
    OnVerifyResult(s, volume, *res, false);
  } else if (auto* cr = std::get_if<p::CsumRsRequest>(&pkt)) {
    if (bad_range(*cr)) {
      return Error(Errc::kProtocol, "CsumRsRequest for sector {} size {} outside the device",
                   cr->sector, cr->size);
    }
    OnCsumRequest(s, volume, *cr);
  } else if (auto* is = std::get_if<p::RsIsInSync>(&pkt)) {
    OnResyncInSync(s, volume, *is);
  }
  return Status::Ok();
}

void Connection::OnPeerReplState(const std::shared_ptr<Session>& s, int volume,
                                 ReplState peer_repl) {
  auto& pdv = pd(volume);
  bool paused = peer_repl == ReplState::kPausedSyncS || peer_repl == ReplState::kPausedSyncT;
  if (paused != pdv.peer_paused && (pdv.sync != PeerDevice::Sync::kNone || !paused)) {
    pdv.peer_paused = paused;
    spdlog::info("{}/{}: the peer {} the resync", Tag(), volume, paused ? "paused" : "resumed");
    ApplyResyncSuspend(s, volume);
    if (!paused) PumpResync(s, volume);
  }
  if (peer_repl == ReplState::kVerifyS && !pdv.ov.active && pdv.sync == PeerDevice::Sync::kNone) {
    BeginVerifyTarget(s, volume, kUnknownSector);
  } else if (pdv.ov.active && !pdv.ov.source && peer_repl != ReplState::kVerifyS) {
    pdv.ov.peer_done = true;
    MaybeFinishVerify(s, volume);
  }
}

// ---- VerifyS -----------------------------------------------------------------------

Status Connection::StartVerify(int volume, uint64_t start_sector, uint64_t stop_sector) {
  auto s = session_;
  if (!s || !s->established || s->closed) return Error(Errc::kState, "{}: not connected", Tag());
  if (cfg_.options.verify_alg.empty()) {
    return Error(Errc::kState, "{}: verify-alg is not set (net option); online verify needs it",
                 Tag());
  }
  auto dev = device(volume);
  if (!dev || !dev->attached()) {
    return Error(Errc::kState, "{}/{}: no local disk to verify", Tag(), volume);
  }
  const auto& st = resource_->state();
  auto d = st.devices.find(volume);
  auto c = st.connections.find(peer_id_);
  if (d == st.devices.end() || c == st.connections.end()) {
    return Error(Errc::kState, "{}/{}: unknown volume", Tag(), volume);
  }
  auto pdi = c->second.peer_devices.find(volume);
  if (pdi == c->second.peer_devices.end() || pdi->second.repl != ReplState::kEstablished) {
    return Error(Errc::kState, "{}/{}: replication state is {}; verify needs Established", Tag(),
                 volume, pdi == c->second.peer_devices.end() ? "Off" : Name(pdi->second.repl));
  }
  if (d->second.disk != DiskState::kUpToDate || pdi->second.peer_disk != DiskState::kUpToDate) {
    return Error(Errc::kState,
                 "{}/{}: verify needs UpToDate disks on both nodes (here {}, peer {})", Tag(),
                 volume, Name(d->second.disk), Name(pdi->second.peer_disk));
  }
  uint64_t bits = dev->data_bits();
  uint64_t start_bit = start_sector / 8;
  uint64_t stop_bit = stop_sector == 0 ? bits : std::min(bits, (stop_sector + 7) / 8);
  if (start_bit >= stop_bit) {
    return Error(Errc::kInvalidArgument,
                 "{}/{}: nothing to verify between sector {} and {} (device has {} sectors)", Tag(),
                 volume, start_sector, stop_sector, dev->size_bytes() / 512);
  }
  auto& pdv = pd(volume);
  pdv.rs.Reset();
  ConfigureResync(pdv, volume);
  auto& ov = pdv.ov;
  ov = VerifyRun{};
  ov.active = true;
  ov.source = true;
  ov.start_bit = start_bit;
  ov.stop_bit = stop_bit;
  ov.position = start_bit;
  ov.total_sectors = std::min(stop_bit * 4096, dev->size_bytes()) / 512 - start_bit * 8;
  ov.left_sectors = ov.total_sectors;
  ov.started = std::chrono::steady_clock::now();
  Status ch = resource_->engine().Change("verify",
                                         [&](ResourceState& rs) {
                                           auto& ps = rs.connections[peer_id_].peer_devices[volume];
                                           ps.repl = ReplState::kVerifyS;
                                           ps.stats.rs_total_sectors = ov.total_sectors;
                                           ps.stats.ov_left_sectors = ov.left_sectors;
                                         },
                                         {.internal = true});
  if (!ch.ok()) {
    ov = VerifyRun{};
    return ch;
  }
  spdlog::info("{}/{}: Starting Online Verify from sector {} to {} ({})", Tag(), volume,
               start_bit * 8, start_bit * 8 + ov.total_sectors, cfg_.options.verify_alg);
  SendState(s, volume);
  StartResyncTick(s, volume);
  PumpVerify(s, volume);
  return Status::Ok();
}

void Connection::PumpVerify(const std::shared_ptr<Session>& s, int volume) {
  auto& pdv = pd(volume);
  auto& ov = pdv.ov;
  auto& rs = pdv.rs;
  auto dev = device(volume);
  if (!Alive(s) || !dev || !ov.active || !ov.source || ov.finishing) return;
  uint64_t size = dev->size_bytes();
  while (ov.requests.size() < kMaxVerifyRequests && ov.position < ov.stop_bit &&
         rs.in_flight < rs.max_in_flight) {
    if (rs.opts.configured) {
      if (rs.budget < 4096) break;
      rs.budget -= 4096;
    }
    uint64_t offset = ov.position * 4096;
    uint64_t length = std::min<uint64_t>(4096, size - offset);
    ++ov.position;
    uint64_t id = ov.next_id++;
    ov.requests[id] = {offset, length};
    rs.in_flight += length;
    p::OvRequest rq;
    rq.sector = offset / 512;
    rq.block_id = id;
    rq.size = static_cast<uint32_t>(length);
    s->data->SendPacket(rq, static_cast<uint16_t>(volume));
  }
  MaybeFinishVerify(s, volume);
}

void Connection::OnVerifyReply(const std::shared_ptr<Session>& s, int volume,
                               const p::BlockRequestFields& rp) {
  auto& pdv = pd(volume);
  auto& ov = pdv.ov;
  auto it = ov.requests.find(rp.block_id);
  auto dev = device(volume);
  if (!ov.active || !ov.source || it == ov.requests.end() || !dev) {
    spdlog::warn("{}/{}: OvReply for unknown request {}", Tag(), volume, rp.block_id);
    return;
  }
  // Plain variables, not a structured binding: the lambda below captures them.
  uint64_t offset = it->second.first, length = it->second.second;
  uint64_t id = rp.block_id;
  pdv.rs.in_flight -= std::min(pdv.rs.in_flight, length);
  pdv.rs.sect_in += length / 512;
  auto self = shared_from_this();
  std::vector<uint8_t> peer_digest = rp.digest;
  dev->ReadForPeer(
      offset, static_cast<uint32_t>(length),
      [this, self, s, volume, id, offset, length, peer_digest = std::move(peer_digest)](
          storage::IoResult r, std::shared_ptr<storage::AlignedBuffer> buf) {
        if (!Alive(s)) return;
        auto& pdv = pd(volume);
        auto& ov = pdv.ov;
        if (!ov.active || !ov.requests.count(id)) return;
        bool in_sync = false;
        if (r.ok()) {
          pdv.rs.own_io += length / 512;
          auto mine = p::ComputeDigest(cfg_.options.verify_alg,
                                       std::span<const uint8_t>(buf->data(), length));
          in_sync = mine.ok() && *mine == peer_digest;
        } else {
          spdlog::error("{}/{}: verify read at {} failed: {}", Tag(), volume, offset,
                        r.status.message());
        }
        ov.requests.erase(id);
        p::OvResult res;
        res.sector = offset / 512;
        res.block_id = in_sync ? p::kOvInSync : p::kOvOutOfSync;
        res.size = static_cast<uint32_t>(length);
        s->meta->SendPacket(res, static_cast<uint16_t>(volume));
        VerifyBlockDone(s, volume, offset, length, in_sync);
        PumpVerify(s, volume);
      });
}

// ---- VerifyT -----------------------------------------------------------------------

void Connection::BeginVerifyTarget(const std::shared_ptr<Session>& s, int volume,
                                   uint64_t start_sector) {
  auto dev = device(volume);
  auto& pdv = pd(volume);
  if (!dev || pdv.sync != PeerDevice::Sync::kNone) return;
  pdv.rs.Reset();
  auto& ov = pdv.ov;
  ov = VerifyRun{};
  ov.active = true;
  ov.source = false;
  ov.started = std::chrono::steady_clock::now();
  if (start_sector != kUnknownSector) {
    // DRBD's VerifyT learns the start from the first request and counts to the end.
    ov.start_bit = start_sector / 8;
    ov.total_sectors = dev->size_bytes() / 512 - std::min(dev->size_bytes() / 512, start_sector);
    ov.left_sectors = ov.total_sectors;
    spdlog::info("{}/{}: Online Verify start sector: {}", Tag(), volume, start_sector);
  }
  Status ch = resource_->engine().Change("verify",
                                         [&](ResourceState& rs) {
                                           auto& ps = rs.connections[peer_id_].peer_devices[volume];
                                           ps.repl = ReplState::kVerifyT;
                                           ps.stats.rs_total_sectors = ov.total_sectors;
                                           ps.stats.ov_left_sectors = ov.left_sectors;
                                         },
                                         {.internal = true});
  if (!ch.ok()) {
    spdlog::error("{}/{}: verify: {}", Tag(), volume, ch.message());
    ov = VerifyRun{};
    return;
  }
  if (Alive(s)) SendState(s, volume);
}

void Connection::OnVerifyRequest(const std::shared_ptr<Session>& s, int volume,
                                 const p::BlockRequestFields& rq) {
  auto& pdv = pd(volume);
  if (!pdv.ov.active) BeginVerifyTarget(s, volume, rq.sector);
  auto& ov = pdv.ov;
  if (!ov.active || ov.source) {
    spdlog::warn("{}/{}: OvRequest while not VerifyT; ignored", Tag(), volume);
    return;
  }
  if (ov.total_sectors == 0) {
    auto dev = device(volume);
    uint64_t sectors = dev ? dev->size_bytes() / 512 : 0;
    ov.start_bit = rq.sector / 8;
    ov.total_sectors = sectors - std::min(sectors, rq.sector);
    ov.left_sectors = ov.total_sectors;
    spdlog::info("{}/{}: Online Verify start sector: {}", Tag(), volume, rq.sector);
    UpdateVerifyStats(volume);
  }
  ++ov.replied;
  auto self = shared_from_this();
  device(volume)->ReadForPeer(
      rq.sector * 512, rq.size,
      [this, self, s, volume, rq](storage::IoResult r,
                                  std::shared_ptr<storage::AlignedBuffer> buf) {
        if (!Alive(s)) return;
        if (r.ok()) pd(volume).rs.own_io += rq.size / 512;
        p::OvReply rp;
        rp.sector = rq.sector;
        rp.block_id = rq.block_id;
        rp.size = rq.size;
        Result<std::vector<uint8_t>> d =
            r.ok() ? p::ComputeDigest(cfg_.options.verify_alg,
                                      std::span<const uint8_t>(buf->data(), rq.size))
                   : Result<std::vector<uint8_t>>(r.status);
        if (d.ok()) {
          rp.digest = std::move(*d);
        } else {
          // One byte never equals a real digest: VerifyS marks the block out of sync.
          spdlog::error("{}/{}: verify read/digest at sector {} failed: {}", Tag(), volume,
                        rq.sector, d.status().message());
          rp.digest = {0};
        }
        s->data->SendPacket(rp, static_cast<uint16_t>(volume));
      });
}

void Connection::OnVerifyResult(const std::shared_ptr<Session>& s, int volume,
                                const p::BlockAckFields& res, bool) {
  auto& ov = pd(volume).ov;
  if (!ov.active || ov.source) {
    spdlog::warn("{}/{}: OvResult while not VerifyT; ignored", Tag(), volume);
    return;
  }
  ++ov.results;
  VerifyBlockDone(s, volume, res.sector * 512, res.size, res.block_id != p::kOvOutOfSync);
}

// ---- Both sides --------------------------------------------------------------------

void Connection::VerifyBlockDone(const std::shared_ptr<Session>& s, int volume, uint64_t offset,
                                 uint64_t length, bool in_sync) {
  auto& ov = pd(volume).ov;
  ov.left_sectors -= std::min(ov.left_sectors, length / 512);
  if (!in_sync) {
    if (auto dev = device(volume)) dev->SetPeerOutOfSync(peer_id_, offset, length);
    ov.oos_blocks += (length + 4095) / 4096;
    uint64_t sector = offset / 512;
    if (ov.oos_run_len > 0 && ov.oos_run_start + ov.oos_run_len == sector) {
      ov.oos_run_len += length / 512;
    } else {
      if (ov.oos_run_len > 0) {
        spdlog::warn("{}/{}: Out of sync: start={}, size={} (sectors)", Tag(), volume,
                     ov.oos_run_start, ov.oos_run_len);
      }
      ov.oos_run_start = sector;
      ov.oos_run_len = length / 512;
    }
  }
  UpdateVerifyStats(volume);
  MaybeFinishVerify(s, volume);
}

void Connection::UpdateVerifyStats(int volume) {
  auto& pdv = pd(volume);
  auto& ov = pdv.ov;
  if (!ov.active) return;
  auto now = std::chrono::steady_clock::now();
  uint64_t done = ov.total_sectors - std::min(ov.total_sectors, ov.left_sectors);
  pdv.rs.marks.Add(now, done);
  uint64_t rate = pdv.rs.marks.RateKib();
  double secs = std::chrono::duration<double>(now - ov.started).count();
  if (rate == 0 && secs > 0.1) rate = static_cast<uint64_t>(static_cast<double>(done) / 2 / secs);
  uint64_t oos = 0;
  if (auto dev = device(volume)) oos = dev->OutOfSyncSectors(peer_id_);
  resource_->engine().UpdateStats([&](ResourceState& st) {
    auto& ps = st.connections[peer_id_].peer_devices[volume].stats;
    ps.rs_total_sectors = ov.total_sectors;
    ps.ov_left_sectors = ov.left_sectors;
    ps.rs_rate_kib = rate;
    ps.out_of_sync_sectors = oos;
    ps.rs_want_kib = pdv.rs.opts.configured ? pdv.rs.controller.want_kib() : 0;
  });
}

void Connection::MaybeFinishVerify(const std::shared_ptr<Session>& s, int volume) {
  auto& pdv = pd(volume);
  auto& ov = pdv.ov;
  if (!ov.active || ov.finishing || !Alive(s)) return;
  bool done = ov.source ? ov.position >= ov.stop_bit && ov.requests.empty()
                        : ov.peer_done && ov.results >= ov.replied;
  if (!done) return;
  ov.finishing = true;
  if (ov.oos_run_len > 0) {
    spdlog::warn("{}/{}: Out of sync: start={}, size={} (sectors)", Tag(), volume, ov.oos_run_start,
                 ov.oos_run_len);
  }
  double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - ov.started).count();
  uint64_t kib = (ov.total_sectors - std::min(ov.total_sectors, ov.left_sectors)) / 2;
  spdlog::info("{}/{}: Online verify done (total {:.0f} sec; {} K/sec)", Tag(), volume, secs,
               secs > 0 ? static_cast<uint64_t>(kib / secs) : kib);
  uint64_t oos = ov.oos_blocks;
  if (oos > 0) {
    spdlog::warn("{}/{}: Online verify found {} 4k blocks out of sync!", Tag(), volume, oos);
  } else {
    spdlog::info("{}/{}: Online verify found 0 4k blocks out of sync", Tag(), volume);
  }
  bool source = ov.source;
  ov = VerifyRun{};
  pdv.rs.Reset();
  auto dev = device(volume);
  Status ch = resource_->engine().Change("verify",
                                         [&](ResourceState& rs) {
                                           auto& ps = rs.connections[peer_id_].peer_devices[volume];
                                           if (IsVerifying(ps.repl))
                                             ps.repl = ReplState::kEstablished;
                                           ps.stats.rs_total_sectors = 0;
                                           ps.stats.ov_left_sectors = 0;
                                           ps.stats.rs_want_kib = 0;
                                           if (dev)
                                             ps.stats.out_of_sync_sectors =
                                                 dev->OutOfSyncSectors(peer_id_);
                                         },
                                         {.internal = true});
  if (!ch.ok()) spdlog::error("{}/{}: verify end: {}", Tag(), volume, ch.message());
  if (source) SendState(s, volume);
  if (oos == 0 || !dev) return;
  // The marked blocks persist: the next connect resyncs them.
  dev->UpdateMeta([](meta::Metadata& m) { return m.WriteDirtyBitmap(); },
                  [this, self = shared_from_this(), volume](Status st) {
                    if (!st.ok()) {
                      spdlog::error("{}/{}: writing the bitmap after verify: {}", Tag(), volume,
                                    st.message());
                    }
                  });
  HandlerCall call;
  call.handler = "out-of-sync";
  call.volume = volume;
  call.minor = dev->minor();
  call.peer_node_id = peer_id_;
  auto peer = resource_->peers().find(peer_id_);
  if (peer != resource_->peers().end()) call.peer_name = peer->second.name;
  resource_->RunHandler(std::move(call));
}

}  // namespace bsr::replication
