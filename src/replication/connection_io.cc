// Established traffic of a Connection: receivers of the data and meta socket,
// keepalive, the replicated write stream and state updates.
#include <spdlog/spdlog.h>

#include <asio/experimental/as_tuple.hpp>

#include "replication/connection.h"
#include "replication/connection_internal.h"
#include "replication/device.h"
#include "replication/resource.h"

namespace bsr::replication {

using asio::experimental::as_tuple;
namespace p = protocol;

namespace {

bool IsFatal(const Status& s) {
  return s.code() == Errc::kPermission || s.code() == Errc::kState;
}

ConnState FailureState(const Status& s) {
  return s.code() == Errc::kProtocol ? ConnState::kProtocolError : ConnState::kBrokenPipe;
}

bool Overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) {
  return a < b + blen && b < a + alen;
}

}  // namespace

// ---- Receivers -------------------------------------------------------------------

asio::awaitable<void> Connection::DataReceiver(std::shared_ptr<Session> s) {
  auto self = shared_from_this();
  while (Alive(s)) {
    auto r = co_await s->data->Recv();
    if (!Alive(s)) co_return;
    if (!r.ok()) {
      EndSession(s, FailureState(r.status()), r.status().message(), true);
      co_return;
    }
    Status st = co_await OnDataPacket(s, std::move(*r));
    if (!Alive(s)) co_return;
    if (!st.ok()) {
      bool fatal = IsFatal(st);
      EndSession(s, FailureState(st), st.message(), !fatal);
      co_return;
    }
  }
}

asio::awaitable<void> Connection::MetaReceiver(std::shared_ptr<Session> s) {
  auto self = shared_from_this();
  while (Alive(s)) {
    auto r = co_await s->meta->Recv();
    if (!Alive(s)) co_return;
    if (!r.ok()) {
      EndSession(s, FailureState(r.status()), r.status().message(), true);
      co_return;
    }
    Status st = OnMetaPacket(s, **r);
    if (!Alive(s)) co_return;
    if (!st.ok()) {
      EndSession(s, FailureState(st), st.message(), !IsFatal(st));
      co_return;
    }
  }
}

asio::awaitable<void> Connection::PingLoop(std::shared_ptr<Session> s) {
  auto self = shared_from_this();
  while (Alive(s)) {
    s->ping_timer.expires_after(cfg_.ping_int);
    co_await s->ping_timer.async_wait(as_tuple(asio::use_awaitable));
    if (!Alive(s)) co_return;
    s->ping_outstanding = true;
    s->meta->SendPacket(p::Ping{});
    s->ping_timer.expires_after(cfg_.ping_timeout);
    co_await s->ping_timer.async_wait(as_tuple(asio::use_awaitable));
    if (!Alive(s)) co_return;
    if (s->ping_outstanding) {
      EndSession(s, ConnState::kNetworkFailure,
                 fmt::format("PingAck did not arrive within ping-timeout ({} ms)",
                             cfg_.ping_timeout.count()),
                 true);
      co_return;
    }
  }
}

asio::awaitable<void> Connection::WaitWritesBelow(std::shared_ptr<Session> s, int limit) {
  while (Alive(s) && static_cast<int>(s->inflight.size()) >= limit) {
    s->drain_timer.expires_at(asio::steady_timer::time_point::max());
    co_await s->drain_timer.async_wait(as_tuple(asio::use_awaitable));
  }
}

void Connection::PeerWriteDone(const std::shared_ptr<Session>& s) {
  s->drain_timer.cancel();
}

asio::awaitable<Status> Connection::OnDataPacket(std::shared_ptr<Session> s,
                                                 std::unique_ptr<Received> r) {
  auto self = shared_from_this();
  int vol = r->frame.volume();
  auto& pkt = r->packet;
  if (auto* d = std::get_if<p::DataPacket>(&pkt)) {
    auto dev = device(vol);
    uint64_t off = d->sector * p::kSectorSize;
    uint64_t len = d->size;
    if (d->dp_flags & p::kDpSendRecvAck) {
      p::RecvAck a;
      a.sector = d->sector;
      a.block_id = d->block_id;
      a.size = d->size;
      a.seq_num = d->seq_num;
      s->meta->SendPacket(a, static_cast<uint16_t>(vol));
    }
    // Writes of the same range land in the order they were sent; bounded in flight.
    bool overlap = false;
    for (auto& [id, rg] : s->inflight) overlap |= Overlaps(off, len, rg.offset, rg.length);
    co_await WaitWritesBelow(s, overlap ? 1 : 256);
    if (!Alive(s)) co_return Status::Ok();
    MarkStaleResync(pd(vol), off, len);
    uint64_t key = s->next_inflight++;
    s->inflight[key] = {off, len};
    std::shared_ptr<Received> keep(std::move(r));
    auto* dp = std::get_if<p::DataPacket>(&keep->packet);
    resource_->engine().UpdateStats([&](ResourceState& st) {
      auto& pdst = st.connections[peer_id_].peer_devices[vol];
      pdst.stats.unacked++;
      pdst.stats.received_sectors += len / 512;
    });
    auto finish = [this, self, s, key, vol, keep, dp, off, len](storage::IoResult res) {
      s->inflight.erase(key);
      PeerWriteDone(s);
      if (!Alive(s)) return;
      resource_->engine().UpdateStats(
          [&](ResourceState& st) { st.connections[peer_id_].peer_devices[vol].stats.unacked--; });
      if (res.ok() && pd(vol).sync == PeerDevice::Sync::kTarget) {
        // Data from the source is current: those blocks need no resync any more.
        if (auto dv = device(vol)) dv->SetPeerInSync(peer_id_, off, len);
        UpdateSyncStats(vol);
        PumpResync(s, vol);
      }
      if (!res.ok()) {
        spdlog::error("{}/{}: replicated write at {}+{} failed: {}", Tag(), vol, off, len,
                      res.status.message());
      }
      p::BlockAckFields a;
      a.sector = dp->sector;
      a.block_id = dp->block_id;
      a.size = dp->size;
      a.seq_num = dp->seq_num;
      if (!res.ok()) {
        s->meta->SendPacket(p::NegAck{a}, static_cast<uint16_t>(vol));
      } else if (dp->dp_flags & p::kDpSendWriteAck) {
        s->meta->SendPacket(p::WriteAck{a}, static_cast<uint16_t>(vol));
      }
    };
    if (!dev || !dev->attached()) {
      storage::IoResult res;
      res.err = EIO;
      res.status = Status(Errc::kIo, "no disk attached");
      finish(res);
      co_return Status::Ok();
    }
    dev->ApplyPeerWrite(off, dp->data, len, dp->dp_flags, std::move(finish));
    co_return Status::Ok();
  }
  if (auto* rd = std::get_if<p::RsDataReply>(&pkt)) {
    uint64_t off = rd->sector * p::kSectorSize;
    bool overlap = false;
    for (auto& [id, rg] : s->inflight) overlap |= Overlaps(off, rd->size, rg.offset, rg.length);
    co_await WaitWritesBelow(s, overlap ? 1 : 256);
    if (!Alive(s)) co_return Status::Ok();
    OnResyncReply(s, vol, std::shared_ptr<Received>(std::move(r)));
    co_return Status::Ok();
  }
  if (auto* b = std::get_if<p::Barrier>(&pkt)) {
    // Every write of the epoch must be done before it is flushed and acknowledged,
    // and before any write of the next epoch starts.
    co_await WaitWritesBelow(s, 1);
    if (!Alive(s)) co_return Status::Ok();
    uint32_t nr = b->barrier;
    uint32_t count = s->epoch_received;
    s->epoch_received = 0;
    auto dev = device(vol);
    auto ack = [this, self, s, nr, count, vol](storage::IoResult res) {
      if (!Alive(s)) return;
      if (!res.ok()) {
        spdlog::error("{}/{}: flush for barrier {} failed: {}", Tag(), vol, nr,
                      res.status.message());
      }
      p::BarrierAck a;
      a.barrier = nr;
      a.set_size = count;
      s->meta->SendPacket(a, static_cast<uint16_t>(vol));
    };
    if (dev && dev->attached()) {
      dev->PeerFlush(std::move(ack));
    } else {
      ack(storage::IoResult::Ok());
    }
    co_return Status::Ok();
  }
  if (auto* stp = std::get_if<p::StatePacket>(&pkt)) {
    OnPeerState(s, vol, *stp);
    co_return Status::Ok();
  }
  if (auto* u = std::get_if<p::Uuids>(&pkt)) {
    OnPeerUuids(s, vol, *u);  // sync.cc: stores them; may adopt a Primary's new UUID
    co_return Status::Ok();
  }
  if (auto* sz = std::get_if<p::Sizes>(&pkt)) {
    pd(vol).sizes = *sz;
    co_return Status::Ok();
  }
  if (auto* bp = std::get_if<p::BitmapPlain>(&pkt)) {
    co_return OnBitmapChunk(s, vol, p::BitmapChunk(*bp));
  }
  if (auto* br = std::get_if<p::BitmapRle>(&pkt)) {
    co_return OnBitmapChunk(s, vol, p::BitmapChunk(*br));
  }
  if (auto* rq = std::get_if<p::RsDataRequest>(&pkt)) {
    OnResyncRequest(s, vol, *rq);
    co_return Status::Ok();
  }
  if (auto* oos = std::get_if<p::OutOfSync>(&pkt)) {
    if (auto dev = device(vol)) dev->SetPeerOutOfSync(peer_id_, oos->sector * 512, oos->size);
    co_return Status::Ok();
  }
  if (auto* dc = std::get_if<p::Disconnect>(&pkt)) {
    co_return Error(Errc::kIo, "the peer disconnected ({})", dc->reason);
  }
  if (IsSyncExtraPacket(pkt)) co_return OnSyncExtraPacket(s, vol, *r);  // verify.cc
  co_return Error(Errc::kProtocol, "unexpected {} on the data socket",
                  p::PacketTypeName(p::TypeOf(pkt)));
}

Status Connection::OnMetaPacket(const std::shared_ptr<Session>& s, const Received& r) {
  int vol = r.frame.volume();
  const auto& pkt = r.packet;
  if (std::holds_alternative<p::Ping>(pkt)) {
    s->meta->SendPacket(p::PingAck{});
    return Status::Ok();
  }
  if (std::holds_alternative<p::PingAck>(pkt)) {
    s->ping_outstanding = false;
    return Status::Ok();
  }
  const p::BlockAckFields* ack = nullptr;
  bool ok = true;
  if (auto* a = std::get_if<p::WriteAck>(&pkt)) ack = a;
  if (auto* a = std::get_if<p::RecvAck>(&pkt)) ack = a;
  if (auto* a = std::get_if<p::NegAck>(&pkt)) {
    ack = a;
    ok = false;
  }
  if (ack) {
    auto it = s->pending.find(ack->block_id);
    if (it == s->pending.end()) {
      return Error(Errc::kProtocol, "ack for unknown request {}", ack->block_id);
    }
    auto pw = it->second;
    s->pending.erase(it);
    if (!ok) {
      pw->ok = false;
      spdlog::warn("{}/{}: the peer failed to write sector {}", Tag(), vol, ack->sector);
    }
    resource_->engine().UpdateStats([&](ResourceState& st) {
      st.connections[peer_id_].peer_devices[pw->volume].stats.pending--;
    });
    if (--pw->parts == 0 && pw->done) {
      auto done = std::move(pw->done);
      pw->done = nullptr;
      done(pw->ok);
    }
    return Status::Ok();
  }
  if (auto* ba = std::get_if<p::BarrierAck>(&pkt)) {
    auto it = s->barriers.find(ba->barrier);
    if (it == s->barriers.end()) return Error(Errc::kProtocol, "unknown barrier {}", ba->barrier);
    auto cbs = std::move(it->second);
    s->barriers.erase(it);
    for (auto& cb : cbs) cb(true);
    return Status::Ok();
  }
  if (auto* a = std::get_if<p::RsWriteAck>(&pkt)) {
    OnResyncAck(s, vol, *a, true);
    return Status::Ok();
  }
  if (auto* a = std::get_if<p::NegRsDataReply>(&pkt)) {
    OnResyncAck(s, vol, *a, false);
    return Status::Ok();
  }
  if (IsSyncExtraPacket(pkt)) return OnSyncExtraPacket(s, vol, r);  // verify.cc
  return Error(Errc::kProtocol, "unexpected {} on the meta socket",
               p::PacketTypeName(p::TypeOf(pkt)));
}

// ---- Write path (we are Primary) ---------------------------------------------------

bool Connection::CanReplicate(int volume) const {
  if (stopped_ || !established()) return false;
  auto c = resource_->state().connections.find(peer_id_);
  if (c == resource_->state().connections.end() || c->second.conn != ConnState::kConnected) {
    return false;
  }
  auto pdi = c->second.peer_devices.find(volume);
  if (pdi == c->second.peer_devices.end()) return false;
  DiskState pdk = pdi->second.peer_disk;
  if (pdk < DiskState::kInconsistent || pdk == DiskState::kDUnknown) return false;
  switch (pdi->second.repl) {
    case ReplState::kEstablished:
    case ReplState::kSyncSource:
    case ReplState::kPausedSyncS:
    case ReplState::kWFBitMapS:
    case ReplState::kVerifyS:
    case ReplState::kVerifyT:
    case ReplState::kStartingSyncS: return true;
    default: return false;
  }
}

void Connection::SendWrite(int volume, uint64_t offset, std::span<const uint8_t> data,
                           uint64_t length, uint32_t dp_flags, AckCallback done) {
  auto s = session_;
  if (!s || s->closed) return done(false);
  uint32_t ack_flag = 0;
  if (cfg_.protocol == p::WireProtocol::kC) ack_flag = p::kDpSendWriteAck;
  if (cfg_.protocol == p::WireProtocol::kB) ack_flag = p::kDpSendRecvAck;
  auto pw = std::make_shared<Session::PendingWrite>();
  pw->volume = volume;
  pw->sectors = static_cast<uint32_t>(length / 512);
  pw->done = std::move(done);
  bool no_data = dp_flags & (p::kDpDiscard | p::kDpZeroes);
  uint64_t pos = 0;
  int parts = 0;
  while (pos < length) {
    uint64_t n = std::min<uint64_t>(length - pos, p::kMaxDataSize);
    p::DataPacket d;
    d.sector = (offset + pos) / p::kSectorSize;
    d.block_id = s->next_block_id++;
    d.seq_num = s->next_seq++;
    d.dp_flags = (dp_flags & ~p::kDpFlush) | ack_flag;
    if (pos == 0) d.dp_flags |= dp_flags & p::kDpFlush;
    d.size = static_cast<uint32_t>(n);
    if (!no_data) d.data = data.subspan(pos, n);
    s->data->Send(p::EncodePacket(d, static_cast<uint16_t>(volume)));
    if (ack_flag) {
      s->pending[d.block_id] = pw;
      ++parts;
    }
    pos += n;
  }
  s->epoch_writes++;
  pw->parts = parts;
  resource_->engine().UpdateStats([&](ResourceState& st) {
    auto& pst = st.connections[peer_id_].peer_devices[volume].stats;
    pst.sent_sectors += length / 512;
    pst.pending += parts;
  });
  if (!ack_flag) {
    // Protocol A: in the send buffer is enough.
    auto cb = std::move(pw->done);
    pw->done = nullptr;
    cb(true);
  }
}

void Connection::SendFlush(int volume, AckCallback done) {
  auto s = session_;
  if (!s || s->closed) return done(false);
  p::Barrier b;
  b.barrier = ++s->barrier_nr;
  s->barriers[b.barrier].push_back(std::move(done));
  s->epoch_writes = 0;
  s->data->SendPacket(b, static_cast<uint16_t>(volume));
}

// ---- State -----------------------------------------------------------------------

void Connection::SendSizes(const std::shared_ptr<Session>& s, int volume) {
  auto dev = device(volume);
  p::Sizes sz;
  if (dev && dev->attached()) {
    sz.backing_size = dev->size_bytes();
    sz.usable_size = dev->size_bytes();
    sz.current_size = dev->size_bytes();
  }
  s->data->SendPacket(sz, static_cast<uint16_t>(volume));
}

void Connection::SendUuids(const std::shared_ptr<Session>& s, int volume) {
  auto dev = device(volume);
  p::Uuids u;
  if (dev && dev->attached()) {
    auto info = dev->GetUuids();
    u.current = info.current;
    for (auto& [node, uuid] : info.bitmaps) {
      if (uuid != 0 && u.bitmap.size() < p::kMaxNodes) {
        u.bitmap.push_back({static_cast<uint16_t>(node), uuid});
      }
    }
    for (uint64_t h : info.history) {
      if (h != 0 && u.history.size() < p::kMaxUuidHistory) u.history.push_back(h);
    }
    u.dirty_bits = dev->OutOfSyncSectors(peer_id_) / 8;
    u.flags |= LocalUuidFlags(volume);  // sync.cc: discard-my-data, crashed primary
    auto d = resource_->state().devices.find(volume);
    if (d != resource_->state().devices.end() && d->second.disk == DiskState::kInconsistent) {
      u.flags |= p::kUuidFlagInconsistent;
    }
  }
  s->data->SendPacket(u, static_cast<uint16_t>(volume));
}

void Connection::SendState(const std::shared_ptr<Session>& s, int volume) {
  const auto& st = resource_->state();
  p::StatePacket sp;
  sp.role = static_cast<p::Role>(static_cast<uint8_t>(st.role));
  auto d = st.devices.find(volume);
  sp.disk = static_cast<p::DiskState>(
      static_cast<uint8_t>(d == st.devices.end() ? DiskState::kDiskless : d->second.disk));
  sp.conn = p::ConnState::kConnected;
  auto c = st.connections.find(peer_id_);
  if (c != st.connections.end()) {
    auto pdi = c->second.peer_devices.find(volume);
    if (pdi != c->second.peer_devices.end()) {
      sp.peer_disk = static_cast<p::DiskState>(static_cast<uint8_t>(pdi->second.peer_disk));
      sp.repl = static_cast<p::ReplState>(static_cast<uint8_t>(pdi->second.repl));
    }
  }
  s->data->SendPacket(sp, static_cast<uint16_t>(volume));
}

void Connection::OnPeerState(const std::shared_ptr<Session>& s, int volume,
                             const p::StatePacket& st) {
  auto& pdv = pd(volume);
  pdv.state = st;
  pdv.have_info = true;
  Status ch = resource_->engine().Change(
      "peer state",
      [&](ResourceState& rs) {
        auto it = rs.connections.find(peer_id_);
        if (it == rs.connections.end()) return;
        it->second.peer_role = static_cast<Role>(static_cast<uint8_t>(st.role));
        auto pdi = it->second.peer_devices.find(volume);
        if (pdi != it->second.peer_devices.end()) {
          pdi->second.peer_disk = static_cast<DiskState>(static_cast<uint8_t>(st.disk));
        }
      },
      {.internal = true});
  if (!ch.ok()) spdlog::warn("{}/{}: peer state: {}", Tag(), volume, ch.message());
  auto repl = static_cast<ReplState>(static_cast<uint8_t>(st.repl));
  if (pdv.sync == PeerDevice::Sync::kNone &&
      (repl == ReplState::kStartingSyncS || repl == ReplState::kWFBitMapS)) {
    // The peer starts a resync toward us (primary --force there).
    BeginSync(s, volume, false, false);
    return;
  }
  if (pdv.sync == PeerDevice::Sync::kNone &&
      (repl == ReplState::kStartingSyncT || repl == ReplState::kWFBitMapT)) {
    // The peer starts a resync from us (invalidate there).
    BeginSync(s, volume, true, false);
    return;
  }
  if (pdv.sync == PeerDevice::Sync::kSource && st.disk == p::DiskState::kUpToDate &&
      repl == ReplState::kEstablished) {
    FinishSyncSource(s, volume);
  }
  OnPeerReplState(s, volume, repl);  // verify.cc: the peer's pause-sync, VerifyS
}

void Connection::OnLocalChange(const ResourceState& o, const ResourceState& n) {
  auto s = session_;
  if (!s || !s->established || s->closed) return;
  bool changed = o.role != n.role;
  for (auto& [vol, d] : n.devices) {
    auto od = o.devices.find(vol);
    if (od == o.devices.end() || od->second.disk != d.disk) changed = true;
  }
  if (!changed) return;
  for (auto& [vol, d] : n.devices) {
    if (o.role != n.role) SendUuids(s, vol);
    SendState(s, vol);
  }
}

void Connection::OnPromoted(bool forced) {
  auto s = session_;
  if (!s || !s->established || s->closed) return;
  for (auto& [vol, dev] : resource_->devices()) {
    SendUuids(s, vol);
    if (!forced) continue;
    auto c = resource_->state().connections.at(peer_id_);
    auto pdi = c.peer_devices.find(vol);
    if (pdi == c.peer_devices.end()) continue;
    if (pdi->second.peer_disk == DiskState::kInconsistent &&
        pd(vol).sync == PeerDevice::Sync::kNone) {
      spdlog::info("{}/{}: primary --force: full sync to the peer", Tag(), vol);
      BeginSync(s, vol, true, true);
    }
  }
}

}  // namespace bsr::replication
