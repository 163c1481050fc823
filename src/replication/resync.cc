// Resync block transfer of a Connection: SyncSource answers block requests;
// SyncTarget requests the blocks its bitmap marks (paced by the rate controller,
// resync_controller.h), writes them and clears the bits; pause-sync/resume-sync.
// io thread only.
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <string_view>

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
// csums-alg: one digest covers a request, so a request is smaller (a difference
// anywhere in it sends all of it).
constexpr uint64_t kCsumsRunBits = (128 * 1024) / 4096;

std::string Opt(const std::map<std::string, std::string>& m, const char* key) {
  auto it = m.find(key);
  return it == m.end() ? std::string() : it->second;
}

bool IsPausedSync(ReplState r) {
  return r == ReplState::kPausedSyncS || r == ReplState::kPausedSyncT;
}

// The user's pause-sync flag lives in the state engine, which outlives a Connection
// (disconnect/connect makes a new one), so the flag survives reconnects as in DRBD.
bool UserPausedFlag(const ResourceState& st, int peer, int volume) {
  auto c = st.connections.find(peer);
  if (c == st.connections.end()) return false;
  auto p = c->second.peer_devices.find(volume);
  return p != c->second.peer_devices.end() && p->second.resync_susp_user;
}

}  // namespace

void Connection::ConfigureResync(PeerDevice& pdv, int volume) {
  pdv.rate_kib = 0;
  auto& rs = pdv.rs;
  rs.opts = ResyncOptions{};
  auto peer = resource_->peers().find(peer_id_);
  if (peer == resource_->peers().end()) return;
  // max-buffers (net option, pages of 4 KiB) bounds the resync data in flight.
  std::string mb = Opt(peer->second.net_opts, "max-buffers");
  if (!mb.empty()) {
    try {
      rs.max_in_flight = std::max<uint64_t>(std::stoull(mb), 32) * 4096;
    } catch (...) {
      spdlog::warn("{}/{}: max-buffers {} is not a number; using 2048", Tag(), volume, mb);
    }
  }
  auto o = peer->second.peer_device_opts.find(volume);
  if (o == peer->second.peer_device_opts.end()) return;
  auto parsed = ParseResyncOptions(o->second);
  if (!parsed.ok()) {
    spdlog::error("{}/{}: peer-device options: {}; resync without rate control", Tag(), volume,
                  parsed.status().message());
    return;
  }
  rs.opts = *parsed;
  rs.controller = ResyncController(rs.opts);
  if (rs.opts.configured) {
    spdlog::info(
        "{}/{}: resync rate control: {} (resync-rate {} KiB/s, c-plan-ahead {}, c-fill-target "
        "{}s, c-delay-target {}, c-max-rate {} KiB/s, c-min-rate {} KiB/s)",
        Tag(), volume, rs.controller.dynamic() ? "dynamic" : "fixed", rs.opts.resync_rate_kib,
        rs.opts.c_plan_ahead, rs.opts.c_fill_target, rs.opts.c_delay_target, rs.opts.c_max_rate_kib,
        rs.opts.c_min_rate_kib);
  }
}

void Connection::PumpResync(const std::shared_ptr<Session>& s, int volume) {
  auto& pdv = pd(volume);
  if (!Alive(s) || pdv.sync != PeerDevice::Sync::kTarget || !pdv.bitmap_done || pdv.finishing) {
    return;
  }
  auto dev = device(volume);
  if (!dev) return;
  ApplyResyncSuspend(s, volume);
  if (!Alive(s)) return;
  StartResyncTick(s, volume);
  auto& rs = pdv.rs;
  bool paused = pdv.user_paused || pdv.peer_paused;
  bool csums = !cfg_.options.csums_alg.empty();
  uint64_t size = dev->size_bytes();
  while (!paused && pdv.requests.size() < kMaxResyncRequests && rs.in_flight < rs.max_in_flight) {
    uint64_t limit = csums ? kCsumsRunBits : kMaxRunBits;
    limit = std::min(limit, std::max<uint64_t>(1, (rs.max_in_flight - rs.in_flight) / 4096));
    if (rs.opts.configured) {
      // The controller's budget for this step (ResyncTick refills it every 100 ms).
      if (rs.budget < 4096) break;
      limit = std::min(limit, rs.budget / 4096);
    }
    // The cursor only moves forward, except when a stale reply re-marks a range
    // behind it (OnResyncReply), so nothing in flight is requested twice.
    uint64_t bit = dev->NextPeerOutOfSync(peer_id_, pdv.cursor);
    if (bit == meta::kNoBit) {
      // Bits set again behind the cursor: start over once nothing is in flight (a
      // reply's bits stay set until its write completed).
      if (pdv.cursor == 0 || !pdv.requests.empty() || !s->inflight.empty()) break;
      pdv.cursor = 0;
      continue;
    }
    uint64_t end = dev->NextPeerInSync(peer_id_, bit);
    end = std::min({end, bit + limit, pdv.total_bits});
    // Blocks a received write (of any connection) is writing now are not requested: that
    // write clears their bits when it is done, and a reply asked for now could carry
    // older data than it (the source may read them before its own write of them lands
    // there). A later pass takes any of them still marked then (a failed write).
    uint64_t skip_to = 0;
    for (const auto& [key, w] : resource_->received_writes()) {
      if (w.volume != volume) continue;
      uint64_t first = w.offset / 4096, last = (w.offset + w.length + 4095) / 4096;
      if (first <= bit && bit < last) {
        skip_to = std::max(skip_to, last);
      } else if (bit < first && first < end) {
        end = first;
      }
    }
    if (skip_to > 0) {
      pdv.cursor = skip_to;
      continue;
    }
    pdv.cursor = end;
    uint64_t offset = bit * 4096;
    uint64_t length = std::min(end * 4096, size) - offset;
    uint64_t id = pdv.next_request_id++;
    pdv.requests[id] = {offset, length, false};
    pdv.requested_bytes += length;
    rs.in_flight += length;
    if (rs.opts.configured) rs.budget -= std::min(rs.budget, length);
    if (csums) {
      SendCsumRequest(s, volume, id, offset, length);
      continue;
    }
    p::RsDataRequest rq;
    rq.sector = offset / 512;
    rq.block_id = id;
    rq.size = static_cast<uint32_t>(length);
    s->data->SendPacket(rq, static_cast<uint16_t>(volume));
  }
  if (pdv.requests.empty() && s->inflight.empty() &&
      dev->NextPeerOutOfSync(peer_id_, 0) == meta::kNoBit) {
    FinishSyncTarget(s, volume);
  }
}

uint64_t Connection::AppIoSectors(int volume) const {
  auto d = resource_->state().devices.find(volume);
  if (d == resource_->state().devices.end()) return 0;
  uint64_t all = d->second.stats.read_sectors + d->second.stats.written_sectors;
  auto it = peer_devices_.find(volume);
  uint64_t own = it == peer_devices_.end() ? 0 : it->second->rs.own_io;
  return all > own ? all - own : 0;
}

void Connection::StartResyncTick(const std::shared_ptr<Session>& s, int volume) {
  auto& rs = pd(volume).rs;
  if (!rs.opts.configured || rs.tick_running) return;
  rs.tick_running = true;
  rs.app_io_mark = AppIoSectors(volume);
  ResyncTick(s, volume, rs.run_id);
}

// One step of the controller (DRBD's resync timer): refill the request budget,
// apply c-min-rate, pump, and come back in 100 ms while the resync or verify runs.
void Connection::ResyncTick(const std::shared_ptr<Session>& s, int volume, uint64_t run_id) {
  if (!Alive(s)) return;
  auto& pdv = pd(volume);
  auto& rs = pdv.rs;
  if (rs.run_id != run_id) return;
  bool target = pdv.sync == PeerDevice::Sync::kTarget && pdv.bitmap_done && !pdv.finishing;
  bool verify = pdv.ov.active && pdv.ov.source && !pdv.ov.finishing;
  if (!target && !verify) {
    rs.tick_running = false;
    return;
  }
  uint64_t in = rs.sect_in;
  rs.sect_in = 0;
  uint64_t want = rs.controller.Step(in, rs.in_flight / 512);
  uint64_t app = AppIoSectors(volume);
  uint64_t app_delta = app > rs.app_io_mark ? app - rs.app_io_mark : 0;
  rs.app_io_mark = app;
  bool was = rs.throttled;
  rs.throttled = ShouldThrottleResync(rs.opts.c_min_rate_kib, app_delta, rs.marks.RateKib());
  if (rs.throttled != was) {
    spdlog::debug("{}/{}: resync {} (application I/O {} sectors in the last step, c-min-rate {})",
                  Tag(), volume, rs.throttled ? "throttled" : "no longer throttled", app_delta,
                  rs.opts.c_min_rate_kib);
  }
  uint64_t carry = rs.budget < 4096 ? rs.budget : 0;
  rs.budget = rs.throttled ? carry : carry + want * 512;
  if (target) {
    UpdateSyncStats(volume);
    PumpResync(s, volume);
  } else {
    UpdateVerifyStats(volume);
    PumpVerify(s, volume);
  }
  if (!Alive(s)) return;
  auto t = std::make_shared<asio::steady_timer>(io_, ResyncController::kStep);
  auto self = shared_from_this();
  t->async_wait([this, self, s, volume, run_id, t](std::error_code) {
    if (Alive(s)) ResyncTick(s, volume, run_id);
  });
}

void Connection::ApplyResyncSuspend(const std::shared_ptr<Session>& s, int volume) {
  auto& pdv = pd(volume);
  pdv.user_paused = UserPausedFlag(resource_->state(), peer_id_, volume);
  bool user = pdv.user_paused, peer = pdv.peer_paused;
  bool source = pdv.sync == PeerDevice::Sync::kSource;
  bool syncing = pdv.sync != PeerDevice::Sync::kNone && pdv.bitmap_done;
  // Paused for either side's pause-sync (DRBD: PausedSyncS/T on both nodes, with
  // resync-suspended:user on the one that paused and :peer on the other). On the wire
  // only our own pause-sync says Paused (SendState), so the peer can tell the two apart.
  bool pause = user || (peer && syncing);
  ReplState want = source ? (pause ? ReplState::kPausedSyncS : ReplState::kSyncSource)
                          : (pause ? ReplState::kPausedSyncT : ReplState::kSyncTarget);
  {
    // Most calls change nothing: skip the state engine round then.
    const auto& cur = resource_->state();
    auto c = cur.connections.find(peer_id_);
    if (c == cur.connections.end()) return;
    auto pi = c->second.peer_devices.find(volume);
    if (pi != c->second.peer_devices.end() && pi->second.resync_susp_user == user &&
        pi->second.resync_susp_peer == (peer && syncing) &&
        (!syncing || pi->second.repl == want ||
         !(IsPausedSync(pi->second.repl) || pi->second.repl == ReplState::kSyncSource ||
           pi->second.repl == ReplState::kSyncTarget))) {
      return;
    }
  }
  bool repl_changed = false;
  Status ch = resource_->engine().Change("resync-suspend",
                                         [&](ResourceState& st) {
                                           auto c = st.connections.find(peer_id_);
                                           if (c == st.connections.end()) return;
                                           auto& ps = c->second.peer_devices[volume];
                                           ps.resync_susp_user = user;
                                           ps.resync_susp_peer = peer && syncing;
                                           bool in_sync_state = ps.repl == ReplState::kSyncSource ||
                                                                ps.repl == ReplState::kSyncTarget ||
                                                                IsPausedSync(ps.repl);
                                           if (syncing && in_sync_state && ps.repl != want) {
                                             ps.repl = want;
                                             repl_changed = true;
                                           }
                                         },
                                         {.internal = true});
  if (!ch.ok()) {
    spdlog::warn("{}/{}: resync suspend: {}", Tag(), volume, ch.message());
    return;
  }
  if (repl_changed) {
    spdlog::info("{}/{}: resync {} ({})", Tag(), volume, pause ? "paused" : "resumed",
                 user ? "pause-sync here" : (pause ? "pause-sync on the peer" : "resume-sync"));
    if (Alive(s) && s->established) SendState(s, volume);
  }
}

Status Connection::SetResyncPaused(int volume, bool paused) {
  if (!device(volume)) return Error(Errc::kNotFound, "{}: no volume {}", Tag(), volume);
  auto& pdv = pd(volume);
  if (UserPausedFlag(resource_->state(), peer_id_, volume) == paused) {
    return Error(Errc::kState, "{}/{}: Sync-pause flag is already {}", Tag(), volume,
                 paused ? "set" : "cleared");
  }
  Status ch = resource_->engine().Change("pause-sync",
                                         [&](ResourceState& st) {
                                           auto c = st.connections.find(peer_id_);
                                           if (c != st.connections.end())
                                             c->second.peer_devices[volume].resync_susp_user =
                                                 paused;
                                         },
                                         {.internal = true});
  if (!ch.ok()) return ch;
  pdv.user_paused = paused;
  spdlog::info("{}/{}: sync-pause flag {} by the user", Tag(), volume, paused ? "set" : "cleared");
  ApplyResyncSuspend(session_, volume);
  // Our own pause flag is what the peer reads from our State packets, also when our
  // replication state already showed Paused for the peer's pause (no change above).
  if (session_ && Alive(session_) && session_->established) SendState(session_, volume);
  if (!paused && session_) PumpResync(session_, volume);
  return Status::Ok();
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
  if (!dev || !dev->attached() || rq.size == 0 || rq.size > p::kMaxDataSize ||
      rq.sector * 512 + rq.size > dev->size_bytes()) {
    return neg();
  }
  // A user's pause-sync on this (source) side shows in our state from now on.
  ApplyResyncSuspend(s, volume);
  if (SendResyncFromPageCache(s, *dev, volume, rq)) return;
  dev->ReadForPeer(rq.sector * 512, rq.size,
                   [this, self, s, volume, rq, neg](storage::IoResult r,
                                                    std::shared_ptr<storage::AlignedBuffer> buf) {
                     if (!Alive(s)) return;
                     if (!r.ok()) {
                       spdlog::error("{}/{}: resync read at sector {} failed: {}", Tag(), volume,
                                     rq.sector, r.status.message());
                       return neg();
                     }
                     SendResyncData(s, volume, rq, std::move(buf));
                   });
}

void Connection::SendResyncData(const std::shared_ptr<Session>& s, int volume,
                                const p::BlockRequestFields& rq,
                                std::shared_ptr<storage::AlignedBuffer> buf) {
  pd(volume).rs.own_io += rq.size / 512;
  p::RsDataReply d;
  d.sector = rq.sector;
  d.block_id = rq.block_id;
  d.size = rq.size;
  d.data = std::span<const uint8_t>(buf->data(), rq.size);
  // The block goes out from the read buffer (kept alive by the queue), not copied.
  auto head = p::EncodeDataHead(d, static_cast<uint16_t>(volume), s->data->frame_flags());
  s->data->SendGather(std::move(head), d.data, std::move(buf));
  resource_->engine().UpdateStats([&](ResourceState& st) {
    st.connections[peer_id_].peer_devices[volume].stats.sent_sectors += rq.size / 512;
  });
}

// Zero-copy: the block goes from the backing file's page cache to the socket
// (sendfile), without the read copy into a buffer and the send copy out of it, which
// were 70% of a SyncSource's CPU. Only when the frame crc leaves the block out (feature
// bit 6: nothing here reads the block), no data-integrity-alg (its digest would), every
// I/O of the disk goes through the page cache, and the whole range is cached (so the
// io thread never waits for the disk). Otherwise, and with BSR_RESYNC_ZERO_COPY=0, the
// block is read first (ReadForPeer).
//
// The bytes leave as the page cache holds them when the kernel takes them, which can be
// after an application write to the same range. That is safe for the same reason a
// read that races with such a write is: the write reaches the SyncTarget on this same
// data socket, before or after this reply. Before it: the target marks the pending
// request stale when the write arrives (MarkStaleResync) and drops the reply, then asks
// again. After it: the target writes the reply first and the write over it (WaitRoom
// keeps overlapping writes in the order received). Either way the reply's content
// never decides the end result, whatever mix of old and new bytes it carried
// (docs/replication.md, "Zero-copy resync replies").
bool Connection::SendResyncFromPageCache(const std::shared_ptr<Session>& s, Device& dev, int volume,
                                         const p::BlockRequestFields& rq) {
  static const bool enabled = [] {
    const char* env = std::getenv("BSR_RESYNC_ZERO_COPY");
    return env == nullptr || std::string_view(env) != "0";
  }();
  const uint16_t flags = s->data->frame_flags();
  if (!enabled || !(flags & p::kFrameFlagBlockOutsideCrc) || !cfg_.options.integrity_alg.empty()) {
    return false;
  }
  auto file = dev.page_cache_file();
  const uint64_t offset = rq.sector * p::kSectorSize;
  if (!file || !file->Cached(offset, rq.size)) return false;
  p::RsDataReply d;
  d.sector = rq.sector;
  d.block_id = rq.block_id;
  d.size = rq.size;
  std::vector<uint8_t> head(p::kFrameHeaderSize);
  ByteWriter w(&head);
  d.EncodeFixed(w);
  // The header counts the block; with the flag the crc covers the fixed fields only.
  p::SealFrame(head, p::PacketType::kRsDataReply, static_cast<uint16_t>(volume), rq.size, {},
               flags);
  s->data->SendFile(std::move(head), std::move(file), offset, rq.size);
  pd(volume).zero_copy_bytes += rq.size;
  resource_->engine().UpdateStats([&](ResourceState& st) {
    st.connections[peer_id_].peer_devices[volume].stats.sent_sectors += rq.size / 512;
  });
  return true;
}

void Connection::OnPrimaryWriteApplied(int volume, uint64_t offset, uint64_t length) {
  auto s = session_;
  if (!s || !Alive(s)) return;
  // In the handshake the decision may still make us this peer's SyncTarget.
  bool handshake = !s->established;
  auto it = peer_devices_.find(volume);
  if (!handshake && (it == peer_devices_.end() || it->second->sync != PeerDevice::Sync::kTarget)) {
    return;
  }
  PeerDevice& pdv = it != peer_devices_.end() ? *it->second : pd(volume);
  auto dev = device(volume);
  if (!dev) return;
  // DRBD 9.2 makes the source serve such a request only after it has the Primary's
  // writes up to the target's (dagtag resync requests); clearing the bits here keeps the
  // request from being sent. Should this peer lack the write, the Primary's peer ack
  // (or its loss) asks to mark the blocks toward it, which waits for the resync's end
  // (DeferMarkWhileTarget). Blocks smaller than a bitmap bit (4 KiB) stay marked.
  if (handshake || !pdv.bitmap_done || !pdv.bitmap_sent) {
    // The decision, a full sync's SetAllPeerBits or the peer's bitmap is still to come.
    pdv.early_clears.AddCovered(offset, length, dev->data_bits(), dev->size_bytes());
    return;
  }
  dev->SetPeerInSync(peer_id_, offset, length);
  UpdateSyncStats(volume);
  PumpResync(s, volume);  // the last bits may be gone: the resync may end
}

bool Connection::DeferMarkWhileTarget(int volume, uint64_t offset, uint64_t length) {
  auto it = peer_devices_.find(volume);
  if (it == peer_devices_.end() || it->second->sync != PeerDevice::Sync::kTarget) return false;
  PeerDevice& pdv = *it->second;
  if (pdv.deferred_marks.empty()) pdv.deferred_since_uuid = pdv.uuids.current;
  pdv.deferred_marks.emplace_back(offset, length);
  return true;
}

void Connection::ApplyDeferredMarks(int volume, PeerDevice& pdv) {
  if (pdv.deferred_marks.empty()) return;
  auto marks = std::move(pdv.deferred_marks);
  pdv.deferred_marks.clear();
  auto dev = device(volume);
  if (!dev) return;
  uint64_t bytes = 0;
  for (const auto& [offset, length] : marks) {
    dev->SetPeerOutOfSync(peer_id_, offset, length);
    bytes += length;
  }
  dev->UpdatePeerOosStats();
  spdlog::info(
      "{}/{}: {} KiB of the Primary's writes that this peer may lack, held back "
      "while we were its SyncTarget, marked out of sync toward it",
      Tag(), volume, bytes / 1024);
}

bool Connection::RecvSpliceEnabled() {
  static const bool enabled = [] {
    const char* env = std::getenv("BSR_RECV_SPLICE");
    return env == nullptr || std::string_view(env) != "0";
  }();
  return enabled;
}

// The SyncTarget's half of a zero-copy resync: the block goes from the data socket into
// a pipe (splice: page references, no copy) and from the pipe into the disk by an io-wq
// worker (one copy into the page cache), instead of a receive copy on the io thread
// plus that worker's copy. The write is handed to the disk when the whole block is in
// the pipe, at the point the receive into memory would hand it over, so the ordering
// rules (WaitRoom, stale replies, docs/replication.md) are those of the memory path.
asio::awaitable<Status> Connection::OnResyncReplyBlock(std::shared_ptr<Session> s, int volume,
                                                       std::unique_ptr<Received> r) {
  auto* d = std::get_if<p::RsDataReply>(&r->packet);
  auto& pdv = pd(volume);
  auto it = pdv.requests.find(d->block_id);
  auto dev = device(volume);
  std::shared_ptr<storage::SplicePipe> pipe;
  // A reply that is dropped (unknown, stale) or cannot be spliced comes into memory.
  if (it != pdv.requests.end() && !it->second.stale && it->second.length == r->block_pending &&
      dev && dev->peer_splice_writes() && cfg_.options.integrity_alg.empty()) {
    auto made = s->data->TakePipe();
    if (made.ok()) pipe = std::move(*made);
  }
  if (!pipe) {
    Status st = co_await s->data->RecvBlock(*r);
    if (!st.ok()) co_return st;
    OnResyncReply(s, volume, std::shared_ptr<Received>(std::move(r)));
    co_return Status::Ok();
  }
  bool in_pipe = false;
  Status st = co_await s->data->RecvBlockToPipe(*r, *pipe, &in_pipe);
  if (!st.ok()) co_return st;
  if (!Alive(s)) co_return Status::Ok();
  if (in_pipe && !(dev && dev->peer_splice_writes())) {
    // The disk changed while the block arrived: take it from the pipe into memory.
    st = PacketSocket::TakeBlockFromPipe(*r, *pipe);
    if (!st.ok()) co_return st;
    in_pipe = false;
  }
  WriteResyncReply(s, volume, std::shared_ptr<Received>(std::move(r)),
                   in_pipe ? std::move(pipe) : nullptr);
  co_return Status::Ok();
}

void Connection::OnResyncReply(const std::shared_ptr<Session>& s, int volume,
                               std::shared_ptr<Received> r) {
  WriteResyncReply(s, volume, std::move(r), nullptr);
}

void Connection::WriteResyncReply(const std::shared_ptr<Session>& s, int volume,
                                  std::shared_ptr<Received> r,
                                  std::shared_ptr<storage::SplicePipe> pipe) {
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
  pdv.rs.in_flight -= std::min(pdv.rs.in_flight, rq.length);
  pdv.rs.sect_in += rq.length / 512;
  if (rq.stale) {
    // An application write to this range overtook the reply: ask again for what is
    // still marked. The write's own blocks are not marked again: it clears them when it
    // is done (or leaves them marked if it fails), and a new reply for them could again
    // be older than the write.
    pdv.cursor = std::min(pdv.cursor, rq.offset / 4096);
    PumpResync(s, volume);
    return;
  }
  uint64_t key = s->next_inflight++;
  ReceivedWriteStarted(s, key, volume, rq.offset, rq.length);
  auto self = shared_from_this();
  auto written = [this, self, s, volume, r, rq, key](storage::IoResult res) {
    ReceivedWriteDone(s, key);
    if (!Alive(s)) return;
    auto* d = std::get_if<p::RsDataReply>(&r->packet);
    p::BlockAckFields a;
    a.sector = d->sector;
    a.block_id = d->block_id;
    a.size = d->size;
    if (!res.ok()) {
      spdlog::error("{}/{}: resync write at {}+{} failed: {}", Tag(), volume, rq.offset, rq.length,
                    res.status.message());
      EndSession(s, ConnState::kNetworkFailure, "resync write failed", true);
      return;
    }
    // Counted when the disk counters count it, so c-min-rate sees only other I/O.
    pd(volume).rs.own_io += rq.length / 512;
    if (auto dv = device(volume)) dv->SetPeerInSync(peer_id_, rq.offset, rq.length);
    s->meta->SendPacket(p::RsWriteAck{a}, static_cast<uint16_t>(volume));
    resource_->engine().UpdateStats([&](ResourceState& st) {
      st.connections[peer_id_].peer_devices[volume].stats.received_sectors += rq.length / 512;
    });
    UpdateSyncStats(volume);
    PumpResync(s, volume);
  };
  if (pipe) {
    pdv.spliced_bytes += rq.length;
    dev->ApplyPeerWriteFromPipe(rq.offset, rq.length, std::move(pipe), std::move(written));
  } else {
    dev->ApplyPeerWrite(rq.offset, d->data, rq.length, 0, std::move(written));
  }
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
  auto now = std::chrono::steady_clock::now();
  double secs = std::chrono::duration<double>(now - pdv.started).count();
  uint64_t total = pdv.rs_total_bits * 8;
  uint64_t done = total > oos ? total - oos : 0;
  pdv.rs.marks.Add(now, done);
  uint64_t rate = pdv.rs.marks.RateKib();
  // Until the marks span a moment, the average since the start.
  if (rate == 0 && secs > 0.1) rate = static_cast<uint64_t>(static_cast<double>(done) / 2 / secs);
  resource_->engine().UpdateStats([&](ResourceState& st) {
    auto& ps = st.connections[peer_id_].peer_devices[volume].stats;
    ps.out_of_sync_sectors = oos;
    ps.rs_total_sectors = total;
    ps.rs_done_sectors = done;
    ps.rs_rate_kib = rate;
    ps.rs_same_csum_sectors = pdv.rs.same_csum;
    ps.rs_want_kib = pdv.rs.opts.configured ? pdv.rs.controller.want_kib() : 0;
  });
}

}  // namespace bsr::replication
