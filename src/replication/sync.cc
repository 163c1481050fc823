// Sync decision, sync start, bitmap exchange and sync end of a Connection (the
// block transfer itself is in resync.cc). io thread only.
#include <linux/sockios.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>

#include <utility>

#include "meta/bitmap.h"
#include "replication/connection.h"
#include "replication/connection_internal.h"
#include "replication/device.h"
#include "replication/resource.h"
#include "replication/split_brain.h"

namespace bsr::replication {

namespace p = protocol;

namespace {

uint64_t U(uint64_t uuid) {
  return uuid & ~uint64_t{1};
}

// The sync UUID of a full resync from a source whose current UUID is `current`.
uint64_t SyncUuid(uint64_t current) {
  return U(current + (uint64_t{1} << 48));
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
  // A generation we left when we lost another node (its bitmap UUID) is one of ours too:
  // NewCurrentUuid keeps it there, not in the history. A peer still on it (it missed
  // our next UUID, e.g. a connection lost right after) is behind us, not split.
  for (auto& [node, uuid] : info.bitmaps) {
    if (node != peer_id_ && uuid != 0) g.history.push_back(uuid);
  }
  return g;
}

namespace {

// Closes the sockets of a session that ended right after the handshake once what we
// queued (our sizes, UUIDs and state) reached the peer, so that the peer can make the
// same decision instead of seeing a broken handshake and dialing again. At most 2 s.
asio::awaitable<void> CloseWhenSent(std::vector<std::shared_ptr<PacketSocket>> socks) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (std::chrono::steady_clock::now() < deadline) {
    bool sent = true;
    for (auto& sk : socks) {
      int unacked = 0;  // bytes the peer's TCP has not acknowledged yet
      if (!sk->failed() && sk->socket().is_open()) {
        ::ioctl(sk->socket().native_handle(), SIOCOUTQ, &unacked);
      }
      sent &= sk->failed() || (sk->queued_bytes() == 0 && unacked == 0);
    }
    if (sent) break;
    timer.expires_after(std::chrono::milliseconds(20));
    co_await timer.async_wait(asio::use_awaitable);
  }
  for (auto& sk : socks) sk->Close();
}

SplitBrainConfig SplitBrainOptions(const protocol::ProtocolOptions& o,
                                   const std::map<std::string, std::string>& net_opts) {
  SplitBrainConfig c;
  c.after_sb_0pri = o.after_sb_0pri;
  c.after_sb_1pri = o.after_sb_1pri;
  c.after_sb_2pri = o.after_sb_2pri;
  auto it = net_opts.find("always-asbp");
  c.always_asbp = it != net_opts.end() && (it->second.empty() || it->second == "yes" ||
                                           it->second == "on" || it->second == "true");
  it = net_opts.find("rr-conflict");
  if (it != net_opts.end()) c.rr_conflict = ParseRrConflict(it->second).value_or(c.rr_conflict);
  return c;
}

}  // namespace

uint64_t Connection::LocalUuidFlags(int volume) {
  auto dev = device(volume);
  if (!dev || !dev->attached()) return 0;
  uint64_t flags = 0;
  if (discard_my_data_ || cfg_.options.discard_my_data) flags |= p::kUuidFlagDiscardMyData;
  if (dev->GetUuids().flags & meta::kFlagCrashedPrimary) flags |= p::kUuidFlagCrashedPrimary;
  // The peer decides with the count we announce; decide with the same one.
  pd(volume).sent_dirty_bits = dev->OutOfSyncSectors(peer_id_) / 8;
  return flags;
}

void Connection::OnPeerUuids(const std::shared_ptr<Session>& s, int volume, const p::Uuids& u) {
  auto& pdv = pd(volume);
  pdv.uuids = u;
  // A Primary that starts a new data generation while we are connected, in sync and
  // UpToDate: we hold the same data, so we take its current UUID (as DRBD does). A
  // later disconnect then gives a bitmap-based resync, not a full one.
  auto dev = device(volume);
  if (!Alive(s) || !s->established || !dev || !dev->attached()) return;
  if (pdv.sync != PeerDevice::Sync::kNone || pdv.state.role != p::Role::kPrimary) return;
  const auto& st = resource_->state();
  if (st.role != Role::kSecondary) return;
  auto d = st.devices.find(volume);
  if (d == st.devices.end() || d->second.disk != DiskState::kUpToDate) return;
  auto c = st.connections.find(peer_id_);
  if (c == st.connections.end()) return;
  auto pdi = c->second.peer_devices.find(volume);
  if (pdi == c->second.peer_devices.end() || pdi->second.repl != ReplState::kEstablished) return;
  GenerationUuids mine = LocalUuids(volume);
  uint64_t theirs = U(u.current);
  if (theirs == U(mine.current) || theirs == 0 || theirs == meta::kUuidJustCreated) return;
  bool follows = false;  // our generation is the one the Primary just left
  for (uint64_t h : u.history) follows |= U(h) == U(mine.current);
  for (const auto& b : u.bitmap) follows |= U(b.uuid) == U(mine.current);
  if (!follows) return;
  uint64_t ours = dev->OutOfSyncSectors(peer_id_) / 8;
  if (u.dirty_bits != 0 || ours != 0) {
    // Blocks are marked between us, e.g. writes of a lost Primary that only one of us
    // got (peer acks): the new Primary's data wins. The bitmap exchange ORs both
    // sides' marks; at the end we take its generation.
    spdlog::info(
        "{}/{}: the Primary started data generation {:016X} with blocks marked between "
        "us ({} here, {} there): bitmap-based resync from it",
        Tag(), volume, theirs, ours, u.dirty_bits);
    BeginSync(s, volume, false, false);
    return;
  }
  spdlog::info("{}/{}: the Primary started data generation {:016X}; adopting it", Tag(), volume,
               theirs);
  dev->UpdateMeta([theirs](meta::Metadata& m) { return m.SetCurrentUuid(theirs); },
                  [tag = Tag(), volume](Status st) {
                    if (!st.ok())
                      spdlog::error("{}/{}: adopting the UUID: {}", tag, volume, st.message());
                  });
}

int Connection::SyncTargetOfPrimary(int volume) const {
  for (const auto& [id, c] : resource_->state().connections) {
    if (id == peer_id_ || c.peer_role != Role::kPrimary) continue;
    auto it = c.peer_devices.find(volume);
    bool target = false;
    if (it != c.peer_devices.end()) {
      ReplState r = it->second.repl;
      target = r == ReplState::kSyncTarget || r == ReplState::kPausedSyncT ||
               r == ReplState::kWFBitMapT || r == ReplState::kStartingSyncT;
    }
    // Decided but still in its before-resync-target handler (state not changed yet).
    auto other = resource_->connection(id);
    if (!target && other) {
      auto pit = other->peer_devices_.find(volume);
      target = pit != other->peer_devices_.end() && pit->second->sync == PeerDevice::Sync::kTarget;
    }
    if (target) return id;
  }
  return -1;
}

void Connection::RetryAfterOtherResync(const std::shared_ptr<Session>& s) {
  // Held until that resync is over: no redial and no accepted attempt meanwhile, so the
  // two nodes do not reconnect and decide again hundreds of times a second.
  hold_ = true;
  // At once, before the peer's own decision gets past its before-resync handler (a
  // SyncTarget's disk would become Inconsistent): it sees the session end instead.
  EndSessionAfterDecision(s, ConnState::kNetworkFailure,
                          "waiting for the resync from the Primary to finish", true);
}

bool Connection::Held() {
  // Also before any attempt: a peer that is not that Primary would only be held after
  // its handshake, and by then its decision may have marked blocks toward us.
  for (const auto& [vol, d] : resource_->state().devices) {
    if (SyncTargetOfPrimary(vol) >= 0) {
      if (!hold_) {
        spdlog::info("{}: not connecting while volume {} is SyncTarget of the Primary", Tag(), vol);
      }
      hold_ = true;
      return true;
    }
  }
  if (!hold_) return false;
  hold_ = false;
  spdlog::info("{}: the resync from the Primary is over; connecting again", Tag());
  return false;
}

void Connection::ResyncMarkedAfterPromotion(const std::shared_ptr<Session>& s, int volume) {
  auto dev = device(volume);
  if (!Alive(s) || !s->established || !dev || !dev->attached()) return;
  if (pd(volume).sync != PeerDevice::Sync::kNone) return;
  uint64_t bits = dev->OutOfSyncSectors(peer_id_) / 8;
  if (bits == 0) return;
  const auto& st = resource_->state();
  auto d = st.devices.find(volume);
  if (d == st.devices.end() || d->second.disk != DiskState::kUpToDate) return;
  auto c = st.connections.find(peer_id_);
  if (c == st.connections.end()) return;
  auto pdi = c->second.peer_devices.find(volume);
  if (pdi == c->second.peer_devices.end() || pdi->second.repl != ReplState::kEstablished ||
      pdi->second.peer_disk != DiskState::kUpToDate) {
    return;
  }
  spdlog::info("{}/{}: promoted with {} KiB marked toward the peer: bitmap-based resync to it",
               Tag(), volume, bits * 4);
  BeginSync(s, volume, true, false);
}

void Connection::EndSessionAfterDecision(const std::shared_ptr<Session>& s, ConnState why,
                                         const std::string& reason, bool retry) {
  std::vector<std::shared_ptr<PacketSocket>> socks;
  for (auto* sk : {&s->data, &s->meta}) {
    if (*sk) socks.push_back(std::move(*sk));
    *sk = nullptr;
  }
  EndSession(s, why, reason, retry);
  asio::co_spawn(io_, CloseWhenSent(std::move(socks)), asio::detached);
}

void Connection::DecideAndStartSync(const std::shared_ptr<Session>& s, int volume) {
  auto dev = device(volume);
  auto& pdv = pd(volume);
  // The Primary's writes noted in the handshake matter only to a resync from this peer.
  struct DropEarlyClears {
    PeerDevice& p;
    ~DropEarlyClears() {
      if (p.sync != PeerDevice::Sync::kTarget) p.early_clears.clear();
    }
  } drop_early{pdv};
  if (!dev || !dev->attached()) return;
  if (pdv.state.disk == p::DiskState::kDiskless) return;
  const auto& st = resource_->state();
  SyncSide local, peer;
  local.uuids = LocalUuids(volume);
  local.primary = st.role == Role::kPrimary;
  auto dit = st.devices.find(volume);
  local.disk = dit == st.devices.end() ? DiskState::kDiskless : dit->second.disk;
  local.changes = pdv.sent_dirty_bits.value_or(dev->OutOfSyncSectors(peer_id_) / 8);
  local.crashed_primary = dev->GetUuids().flags & meta::kFlagCrashedPrimary;
  local.discard_my_data = discard_my_data_ || cfg_.options.discard_my_data;
  local.primary_at_split = local.uuids.current & 1;
  peer.uuids.current = pdv.uuids.current;
  for (auto& b : pdv.uuids.bitmap) {
    if (b.node_id == my_id_) peer.uuids.bitmap = b.uuid;
  }
  peer.uuids.history = pdv.uuids.history;
  for (auto& b : pdv.uuids.bitmap) {  // as in LocalUuids
    if (b.node_id != my_id_ && b.uuid != 0) peer.uuids.history.push_back(b.uuid);
  }
  peer.primary = pdv.state.role == p::Role::kPrimary;
  peer.disk = pdv.state.disk;
  peer.changes = pdv.uuids.dirty_bits;
  peer.crashed_primary = pdv.uuids.flags & p::kUuidFlagCrashedPrimary;
  peer.discard_my_data = pdv.uuids.flags & p::kUuidFlagDiscardMyData;
  peer.primary_at_split = pdv.uuids.current & 1;
  auto peer_spec = resource_->peers().find(peer_id_);
  SplitBrainConfig sbc = SplitBrainOptions(cfg_.options, peer_spec == resource_->peers().end()
                                                             ? std::map<std::string, std::string>{}
                                                             : peer_spec->second.net_opts);
  ConnectDecision d = DecideOnConnect(local, peer, sbc, my_id_ > peer_id_);
  spdlog::info(
      "{}/{}: sync decision: {} ({}; local current {:016X} bitmap {:016X} bits {} flags {}{}, "
      "peer current {:016X} bitmap {:016X} bits {} flags {:X})",
      Tag(), volume, SyncDecisionName(d.sync), d.why, local.uuids.current, local.uuids.bitmap,
      local.changes, local.crashed_primary ? "crashed-primary" : "-",
      local.discard_my_data ? " discard-my-data" : "", peer.uuids.current, peer.uuids.bitmap,
      peer.changes, pdv.uuids.flags);
  bool resync = d.sync == SyncDecision::kSourceBitmap || d.sync == SyncDecision::kSourceFull ||
                d.sync == SyncDecision::kTargetBitmap || d.sync == SyncDecision::kTargetFull;
  if (resync && !peer.primary && !d.split_brain) {
    // We are being resynced from a Primary (e.g. a node that rejoins after a failover,
    // or a Secondary taking the new Primary's data for the writes of the lost one): a
    // resync with this Secondary now could copy data the Primary is replacing. Try again
    // once that resync is over; then both nodes hold the Primary's generation.
    int from = SyncTargetOfPrimary(volume);
    if (from >= 0) {
      spdlog::info(
          "{}/{}: not syncing with this peer while the resync from the Primary "
          "node-id {} runs; reconnecting",
          Tag(), volume, from);
      RetryAfterOtherResync(s);
      return;
    }
  }
  bool failed = d.sync == SyncDecision::kSplitBrain || d.sync == SyncDecision::kUnrelated || d.drop;
  for (const auto& line : d.log) {
    if (failed) {
      spdlog::error("{}/{}: {}", Tag(), volume, line);
    } else {
      spdlog::warn("{}/{}: {}", Tag(), volume, line);
    }
  }
  auto handler = [&](const char* name) {
    resource_->RunHandler(HandlerCall{
        .handler = name, .volume = volume, .minor = dev->minor(), .peer_node_id = peer_id_});
  };
  if (d.split_brain) handler("initial-split-brain");
  if (d.sync == SyncDecision::kSplitBrain) {
    handler("split-brain");
    EndSessionAfterDecision(s, ConnState::kStandAlone, "split brain detected but unresolved",
                            false);
    return;
  }
  if (d.sync == SyncDecision::kUnrelated) {
    EndSessionAfterDecision(s, ConnState::kStandAlone, "unrelated data", false);
    return;
  }
  // discard-my-data is good for one resolution (DRBD's connect flag).
  discard_my_data_ = false;
  if (d.drop) {
    if (d.call_pri_lost) handler("pri-lost");
    EndSessionAfterDecision(
        s, d.retry ? ConnState::kNetworkFailure : ConnState::kStandAlone,
        d.log.empty() ? "the sync decision conflicts with the roles" : d.log.back(), d.retry);
    return;
  }
  if (d.demote_first) {
    Status dm = resource_->Demote();
    if (!dm.ok()) {
      spdlog::error(
          "{}/{}: lost the split brain resolution but cannot give up the Primary role: {}", Tag(),
          volume, dm.message());
      handler("pri-lost-after-sb");
      EndSessionAfterDecision(s, ConnState::kStandAlone, "pri-lost-after-sb", false);
      return;
    }
    spdlog::warn("{}/{}: Successfully gave up primary role.", Tag(), volume);
    if (!Alive(s)) return;
  }
  bool primary = resource_->state().role == Role::kPrimary;
  // Marks held back while we were this peer's SyncTarget (an earlier session) stay held
  // only for another resync from this Secondary, on the data generation they were held
  // in: after a split brain, a promotion or new writes there, its data counts and they
  // are set (so they are taken from it).
  bool hold = (d.sync == SyncDecision::kTargetBitmap || d.sync == SyncDecision::kTargetFull) &&
              !d.split_brain && !peer.primary && U(pdv.uuids.current) == U(pdv.deferred_since_uuid);
  if (!hold) ApplyDeferredMarks(volume, pdv);
  switch (d.sync) {
    case SyncDecision::kNone: {
      // Same generation, but blocks written while the connection was being set up
      // are marked: the Primary sends them (both bitmaps are exchanged).
      uint64_t dirty = dev->OutOfSyncSectors(peer_id_) / 8 + pdv.uuids.dirty_bits;
      bool have_data = U(local.uuids.current) != meta::kUuidJustCreated;
      if (dirty > 0 && have_data && (primary || peer.primary)) {
        spdlog::info("{}/{}: same data generation but {} marked blocks: bitmap-based sync", Tag(),
                     volume, dirty);
        BeginSync(s, volume, primary, false);
      }
      return;
    }
    case SyncDecision::kTargetBitmap:
    case SyncDecision::kTargetFull:
      BeginSync(s, volume, false, d.sync == SyncDecision::kTargetFull);
      return;
    case SyncDecision::kSourceBitmap:
    case SyncDecision::kSourceFull:
      BeginSync(s, volume, true, d.sync == SyncDecision::kSourceFull);
      return;
    default: return;
  }
}

void Connection::BeginSync(const std::shared_ptr<Session>& s, int volume, bool source, bool full) {
  auto dev = device(volume);
  auto& pdv = pd(volume);
  if (!dev || !dev->attached() || pdv.sync != PeerDevice::Sync::kNone) return;
  auto early = std::move(pdv.early_clears);  // from the handshake (OnPrimaryWriteApplied)
  pdv.ResetSync();
  pdv.early_clears = std::move(early);
  pdv.sync = source ? PeerDevice::Sync::kSource : PeerDevice::Sync::kTarget;
  pdv.full = full;
  pdv.total_bits = dev->data_bits();
  // The peer's bitmap may arrive while our before-resync handler runs.
  pdv.bm_rx.assign(p::BitmapWords(pdv.total_bits), 0);
  pdv.bm_receiver = std::make_unique<p::BitmapReceiver>(pdv.bm_rx, pdv.total_bits);
  pdv.handler_pending = true;
  const char* name = source ? "before-resync-source" : "before-resync-target";
  auto self = shared_from_this();
  resource_->RunHandler(
      HandlerCall{
          .handler = name, .volume = volume, .minor = dev->minor(), .peer_node_id = peer_id_},
      [this, self, s, volume, name](int rc) {
        if (!Alive(s)) return;
        auto& pdv = pd(volume);
        if (pdv.sync == PeerDevice::Sync::kNone || !pdv.handler_pending) return;
        pdv.handler_pending = false;
        // bsradm exits 10 (no configuration) or 20 (no shell) without running a
        // handler: nothing vetoed the resync.
        if (rc == 10 || rc == 20) {
          spdlog::debug("{}/{}: the usermode helper could not run {} (exit {}); resync goes on",
                        Tag(), volume, name, rc);
        } else if (rc > 0) {
          spdlog::error("{}/{}: {} handler returned {}, dropping connection.", Tag(), volume, name,
                        rc);
          EndSession(s, ConnState::kStandAlone, fmt::format("{} handler failed", name), false);
          return;
        }
        StartBitmapExchange(s, volume);
      });
}

// The start of a resync, durable before any block moves: the target's disk is
// Inconsistent, a full sync's all-set bitmap is written. The initial sync of a fresh
// disk also ties both nodes to a sync UUID derived from the source's current one (DRBD's
// P_SYNC_UUID): the source keeps it as its bitmap UUID for the target, the target takes
// it as its current UUID. Interrupted, it resumes as a bitmap-based resync instead of
// starting over (the source's bitmap on disk covers what is left).
void Connection::PersistSyncStart(int volume, bool source, bool full) {
  auto dev = device(volume);
  auto& pdv = pd(volume);
  auto fresh = [](uint64_t u) { return U(u) == 0 || U(u) == meta::kUuidJustCreated; };
  uint64_t mine = dev->GetUuids().current, theirs = pdv.uuids.current;
  uint64_t base = source ? mine : theirs;  // the source's current UUID
  // The initial sync of a fresh disk: both nodes tell it from the UUIDs they exchanged.
  bool tie = fresh(source ? theirs : mine) && !fresh(base) && (full || !source);
  uint64_t sync_uuid = SyncUuid(base);
  int peer = peer_id_;
  dev->UpdateMeta(
      [source, full, tie, sync_uuid, peer](meta::Metadata& m) -> Status {
        if (!source) {
          BSR_RETURN_IF_ERROR(m.SetFlags(0, meta::kFlagConsistent | meta::kFlagWasUpToDate));
        }
        if (full) BSR_RETURN_IF_ERROR(m.WriteDirtyBitmap());
        if (!tie) return Status::Ok();
        if (source) {
          int slot = m.FindPeerSlot(peer);
          if (slot < 0) return Status::Ok();
          uint64_t b = U(m.peer(slot).bitmap_uuid);
          if (b != 0 && b != meta::kUuidJustCreated) return Status::Ok();
          return m.SetBitmapUuid(slot, sync_uuid);
        }
        if (U(m.superblock().current_uuid) == sync_uuid) return Status::Ok();
        return m.SetCurrentUuid(sync_uuid);
      },
      [tag = Tag(), volume](Status st) {
        if (!st.ok())
          spdlog::error("{}/{}: recording the resync start: {}", tag, volume, st.message());
      });
}

void Connection::StartBitmapExchange(const std::shared_ptr<Session>& s, int volume) {
  auto dev = device(volume);
  auto& pdv = pd(volume);
  if (!dev || !dev->attached()) return;
  bool source = pdv.sync == PeerDevice::Sync::kSource;
  bool full = pdv.full;
  if (full) dev->SetAllPeerBits(peer_id_);
  PersistSyncStart(volume, source, full);
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
  pdv.bitmap_sent = true;
  spdlog::info("{}/{}: {} sync as {}: sent our bitmap ({} bits set, {} bytes on the wire)", Tag(),
               volume, full ? "full" : "bitmap-based", source ? "SyncSource" : "SyncTarget",
               dev->OutOfSyncSectors(peer_id_) / 8, bytes);
  if (pdv.bitmap_done) OnBitmapExchanged(s, volume);
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
  // Both directions done (ours may wait for the before-resync handler).
  if (pdv.bitmap_sent) OnBitmapExchanged(s, volume);
  return Status::Ok();
}

// While a resync runs, the bits it cleared reach the disk every few seconds (as DRBD's
// lazy bitmap writeout), so that a resync interrupted by a crash of either node resumes
// about where it stopped instead of from its start.
asio::awaitable<void> Connection::WriteBitmapWhileSyncing(
    std::shared_ptr<Session> s, int volume, std::chrono::steady_clock::time_point id) {
  auto self = shared_from_this();
  asio::steady_timer timer(io_);
  for (;;) {
    timer.expires_after(std::chrono::seconds(2));
    co_await timer.async_wait(asio::use_awaitable);
    if (!Alive(s)) co_return;
    auto& pdv = pd(volume);
    if (pdv.sync == PeerDevice::Sync::kNone || pdv.finishing || pdv.started != id) co_return;
    auto dev = device(volume);
    if (!dev) co_return;
    dev->UpdateMeta([](meta::Metadata& m) { return m.WriteDirtyBitmap(); },
                    [tag = Tag(), volume](Status st) {
                      if (!st.ok()) {
                        spdlog::warn("{}/{}: writing the bitmap during the resync: {}", tag, volume,
                                     st.message());
                      }
                    });
  }
}

void Connection::OnBitmapExchanged(const std::shared_ptr<Session>& s, int volume) {
  auto dev = device(volume);
  auto& pdv = pd(volume);
  bool source = pdv.sync == PeerDevice::Sync::kSource;
  if (!source && pdv.state.role != p::Role::kPrimary) {
    // The Primary's writes on another connection during the handshake and the exchange,
    // and those an interrupted resync from this peer held back (OnPrimaryWriteApplied,
    // DeferMarkWhileTarget; DecideAndStartSync set them if they no longer apply): not
    // from this Secondary. (From a Primary everything is taken: its data counts.)
    pdv.early_clears.ForEachRun(dev->data_bits(), [&](uint64_t first, uint64_t count) {
      dev->SetPeerInSync(peer_id_, first * 4096, count * 4096);
    });
    for (const auto& [offset, length] : pdv.deferred_marks) {
      dev->SetPeerInSync(peer_id_, offset, length);
    }
  }
  pdv.early_clears.clear();
  pdv.rs_total_bits = dev->OutOfSyncSectors(peer_id_) / 8;
  pdv.started = std::chrono::steady_clock::now();
  asio::co_spawn(io_, WriteBitmapWhileSyncing(s, volume, pdv.started), [](std::exception_ptr) {});
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
  // Another peer still syncs this disk (a node that rejoins syncs from every peer that
  // has newer data): it stays Inconsistent until the last of these resyncs ends.
  auto other_target = [this, volume](const ResourceState& rs) {
    for (const auto& [id, c] : rs.connections) {
      if (id == peer_id_) continue;
      auto it = c.peer_devices.find(volume);
      if (it == c.peer_devices.end()) continue;
      ReplState r = it->second.repl;
      if (r == ReplState::kSyncTarget || r == ReplState::kPausedSyncT ||
          r == ReplState::kWFBitMapT || r == ReplState::kStartingSyncT) {
        return true;
      }
    }
    return false;
  };
  bool last = !other_target(resource_->state());
  auto self = shared_from_this();
  dev->UpdateMeta(
      [source_current, peer, last](meta::Metadata& m) -> Status {
        int slot = m.FindPeerSlot(peer);
        if (slot >= 0) BSR_RETURN_IF_ERROR(m.SetBitmapUuid(slot, 0));
        if ((m.superblock().current_uuid & ~uint64_t{1}) != (source_current & ~uint64_t{1})) {
          BSR_RETURN_IF_ERROR(m.SetCurrentUuid(source_current & ~uint64_t{1}));
        }
        BSR_RETURN_IF_ERROR(m.WriteDirtyBitmap());
        if (!last) return Status::Ok();
        // In sync with the peer again: a crash as Primary is repaired.
        return m.SetFlags(meta::kFlagConsistent | meta::kFlagWasUpToDate,
                          meta::kFlagCrashedPrimary);
      },
      [this, self, s, volume, other_target](Status st) {
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
        uint64_t spliced_kib = std::exchange(pdv.spliced_bytes, 0) / 1024;
        pdv.ResetSync();
        bool up_to_date = false;
        Status ch = resource_->engine().Change("resync",
                                               [&](ResourceState& rs) {
                                                 auto& pst =
                                                     rs.connections[peer_id_].peer_devices[volume];
                                                 pst.repl = ReplState::kEstablished;
                                                 pst.stats.rs_total_sectors = 0;
                                                 pst.stats.out_of_sync_sectors = 0;
                                                 up_to_date = !other_target(rs);
                                                 if (up_to_date)
                                                   rs.devices[volume].disk = DiskState::kUpToDate;
                                               },
                                               {.internal = true});
        if (!ch.ok()) spdlog::error("{}/{}: {}", Tag(), volume, ch.message());
        spdlog::info(
            "{}/{}: resync done as SyncTarget: {} KiB in {:.2f} s ({:.1f} MiB/s); {} KiB "
            "spliced from the socket; {}",
            Tag(), volume, kib, secs, secs > 0 ? kib / 1024.0 / secs : 0.0, spliced_kib,
            up_to_date ? "disk UpToDate" : "disk stays Inconsistent (another peer's resync runs)");
        ApplyDeferredMarks(volume, pdv);
        SendUuids(s, volume);
        SendState(s, volume);
        if (!up_to_date) return;
        if (auto dev = device(volume)) {
          resource_->RunHandler(HandlerCall{.handler = "after-resync-target",
                                            .volume = volume,
                                            .minor = dev->minor(),
                                            .peer_node_id = peer_id_});
        }
      });
}

void Connection::FinishSyncSource(const std::shared_ptr<Session>& s, int volume) {
  auto& pdv = pd(volume);
  auto dev = device(volume);
  if (pdv.finishing || !dev) return;
  // The peer reports UpToDate/Established from before this resync (e.g. a state
  // packet sent while our before-resync handler runs): not the end of it.
  if (!pdv.bitmap_sent || !pdv.bitmap_done) return;
  pdv.finishing = true;
  int peer = peer_id_;
  auto self = shared_from_this();
  dev->UpdateMeta(
      [peer](meta::Metadata& m) -> Status {
        int slot = m.FindPeerSlot(peer);
        if (slot < 0) return Status::Ok();
        BSR_RETURN_IF_ERROR(m.ClearAllBits(slot));
        BSR_RETURN_IF_ERROR(m.SetBitmapUuid(slot, 0));
        BSR_RETURN_IF_ERROR(m.WriteDirtyBitmap());
        // The activity-log extents of a crash as Primary reached the peer.
        if (m.superblock().flags & meta::kFlagCrashedPrimary) {
          return m.SetFlags(0, meta::kFlagCrashedPrimary);
        }
        return Status::Ok();
      },
      [this, self, s, volume](Status st) {
        if (!Alive(s)) return;
        auto& pdv = pd(volume);
        double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - pdv.started).count();
        uint64_t kib = pdv.rs_total_bits * 4;
        uint64_t zero_copy_kib = pdv.zero_copy_bytes / 1024;
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
        spdlog::info(
            "{}/{}: resync done as SyncSource: {} KiB in {:.2f} s ({:.1f} MiB/s); {} KiB sent "
            "from the page cache (zero-copy)",
            Tag(), volume, kib, secs, secs > 0 ? kib / 1024.0 / secs : 0.0, zero_copy_kib);
        SendState(s, volume);
      });
}

}  // namespace bsr::replication
