// Established traffic of a Connection: receivers of the data and meta socket,
// keepalive, the replicated write stream and state updates.
#include <spdlog/spdlog.h>

#include <asio/experimental/as_tuple.hpp>

#include "protocol/auth.h"
#include "replication/connection.h"
#include "replication/connection_internal.h"
#include "replication/device.h"
#include "replication/resource.h"
#include "replication/twopc.h"
#include "storage/completion_scope.h"

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
    s->last_meta_rx = std::chrono::steady_clock::now();
    Status st = OnMetaPacket(s, **r);
    if (!Alive(s)) co_return;
    if (!st.ok()) {
      EndSession(s, FailureState(st), st.message(), !IsFatal(st));
      co_return;
    }
  }
}

// Keepalive and reply timeouts (DRBD semantics):
// - a Ping every ping-int; its PingAck must arrive within ping-timeout;
// - while writes or barriers wait for their ack and nothing arrived on the meta socket
//   for `timeout`, a Ping checks that the peer is alive (same ping-timeout);
// - ko-count: a write or barrier not acknowledged within timeout * ko-count drops the
//   peer (Timeout); its writes complete locally with their bits set for a resync.
asio::awaitable<void> Connection::PingLoop(std::shared_ptr<Session> s) {
  using Clock = std::chrono::steady_clock;
  auto self = shared_from_this();
  auto tick = std::clamp<std::chrono::milliseconds>(std::min(cfg_.ping_timeout, cfg_.timeout) / 4,
                                                    std::chrono::milliseconds(10),
                                                    std::chrono::milliseconds(250));
  s->last_ping = s->last_meta_rx = Clock::now();
  auto send_ping = [&](Clock::time_point now) {
    s->ping_outstanding = true;
    s->ping_sent = s->last_ping = now;
    s->meta->SendPacket(p::Ping{});
  };
  while (Alive(s)) {
    s->ping_timer.expires_after(tick);
    co_await s->ping_timer.async_wait(as_tuple(asio::use_awaitable));
    if (!Alive(s)) co_return;
    auto now = Clock::now();
    if (s->ping_outstanding && now - s->ping_sent >= cfg_.ping_timeout) {
      EndSession(s, ConnState::kNetworkFailure,
                 fmt::format("PingAck did not arrive within ping-timeout ({} ms)",
                             cfg_.ping_timeout.count()),
                 true);
      co_return;
    }
    std::optional<Clock::time_point> oldest;
    for (auto& [id, pw] : s->pending) {
      if (!oldest || pw->sent < *oldest) oldest = pw->sent;
    }
    for (auto& [nr, t] : s->barrier_sent) {
      if (!oldest || t < *oldest) oldest = t;
    }
    if (oldest) {
      auto age = now - *oldest;
      if (cfg_.ko_count > 0 && age >= cfg_.timeout * cfg_.ko_count) {
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(age).count();
        EndSession(s, ConnState::kTimeout,
                   fmt::format("the peer did not complete a request within {} ms > ko-count "
                               "({}) * timeout ({} ms); dropping it",
                               ms, cfg_.ko_count, cfg_.timeout.count()),
                   true);
        co_return;
      }
      if (!s->ping_outstanding && now - s->last_meta_rx >= cfg_.timeout && age >= cfg_.timeout) {
        send_ping(now);
        continue;
      }
    }
    if (!s->ping_outstanding && now - s->last_ping >= cfg_.ping_int) send_ping(now);
    CheckAheadDrained(s);
    // Once the writer paused for 100 ms (checked every tick), close the open epoch so its
    // writes leave the transfer log soon: a disconnect then resyncs nothing it need not
    // (busy writers close epochs by max-epoch-size, clients by flushes). DRBD's sender
    // closes it as soon as it is idle; a pause costs the peer one flush either way.
    if (Alive(s) && !s->tl.empty() && s->tl.back().barrier > s->barrier_nr &&
        now - s->tl.back().sent >= std::chrono::milliseconds(100)) {
      SendBarrier(s, s->tl.back().volume, nullptr);
    }
  }
}

asio::awaitable<void> Connection::WaitWritesBelow(std::shared_ptr<Session> s, int limit) {
  while (Alive(s) && static_cast<int>(s->inflight.size()) >= limit) {
    s->drain_timer.expires_at(asio::steady_timer::time_point::max());
    co_await s->drain_timer.async_wait(as_tuple(asio::use_awaitable));
  }
}

// Room for a peer write of [off, off+len): no overlapping write in flight (same
// blocks land in the order sent), fewer than 256 writes and at most max-buffers pages
// of data in flight (one write always fits). Waiting here stops the receiver reading,
// so TCP pushes back on the sender.
asio::awaitable<void> Connection::WaitRoom(std::shared_ptr<Session> s, int volume, uint64_t off,
                                           uint64_t len, uint64_t mem) {
  const uint64_t max_bytes = cfg_.max_buffers * 4096;
  while (Alive(s)) {
    uint64_t bytes = 0;
    for (auto& [id, rg] : s->inflight) bytes += rg.length;
    if (s->inflight.size() < 256 && (s->inflight.empty() || bytes + mem <= max_bytes) &&
        !resource_->ReceivedWriteOverlaps(volume, off, len)) {
      co_return;
    }
    s->drain_timer.expires_at(asio::steady_timer::time_point::max());
    co_await s->drain_timer.async_wait(as_tuple(asio::use_awaitable));
  }
}

void Connection::ReceivedWriteStarted(const std::shared_ptr<Session>& s, uint64_t key, int volume,
                                      uint64_t off, uint64_t len) {
  s->inflight[key] = {off, len};
  resource_->AddReceivedWrite(s.get(), key, {volume, off, len});
}

void Connection::ReceivedWriteDone(const std::shared_ptr<Session>& s, uint64_t key) {
  s->inflight.erase(key);
  // This session's waiters: RemoveReceivedWrite wakes only the connections' current
  // sessions, and is skipped once the connection stopped.
  s->drain_timer.cancel();
  // Stopped: the Resource is being removed (~Resource stops its connections first).
  if (!stopped_) resource_->RemoveReceivedWrite(s.get(), key);
}

void Connection::WakeReceivers() {
  if (session_) session_->drain_timer.cancel();
}

void Connection::MarkResyncStale(int volume, uint64_t offset, uint64_t length) {
  auto it = peer_devices_.find(volume);
  if (it != peer_devices_.end()) MarkStaleResync(*it->second, offset, length);
}

asio::awaitable<Status> Connection::OnDataPacket(std::shared_ptr<Session> s,
                                                 std::unique_ptr<Received> r) {
  auto self = shared_from_this();
  // Every packet of the data socket comes through here (DataReceiver), and the Data and
  // RsDataReply branches below take a block left in the socket, so from now on the
  // socket may leave large ones there for a splice into the disk.
  if (!s->data->splice_blocks() && RecvSpliceEnabled()) s->data->SetSpliceBlocks(true);
  int vol = r->frame.volume();
  auto& pkt = r->packet;
  if (auto* d = std::get_if<p::DataPacket>(&pkt)) {
    auto dev = device(vol);
    uint64_t off = d->sector * p::kSectorSize;
    uint64_t len = d->size;
    NoteUnstableWrite(s, vol, d->seq_num, off, len);  // peer_ack.cc: until its PeerAck
    const std::string& alg = cfg_.options.integrity_alg;
    // A block still in the socket is spliced into the disk (an io-wq worker's one copy
    // instead of this thread's receive copy and that one) when nothing here reads it:
    // no data-integrity-alg, a plain write (FUA and flushes take the ring's write path),
    // a disk all in the page cache. Otherwise it is received into memory first.
    std::shared_ptr<storage::SplicePipe> pipe;
    if (r->block_pending != 0) {
      // Protocol B's RecvAck (sent below, before WaitRoom) promises the block is here,
      // so such a write is received into memory first.
      constexpr uint32_t kNotPlain =
          p::kDpFua | p::kDpFlush | p::kDpDiscard | p::kDpZeroes | p::kDpSendRecvAck;
      if (alg.empty() && !(d->dp_flags & kNotPlain) && r->block_pending == len && dev &&
          dev->peer_splice_writes()) {
        auto made = s->data->TakePipe();
        if (made.ok()) pipe = std::move(*made);
      }
      if (!pipe) {
        Status st = co_await s->data->RecvBlock(*r);
        if (!st.ok()) co_return st;
      }
    }
    if (!alg.empty() && !(d->dp_flags & (p::kDpDiscard | p::kDpZeroes))) {
      auto dg = p::ComputeDigest(alg, d->data);
      if (!dg.ok() || *dg != d->digest) {
        // The block was damaged between the peer's buffer and ours: refuse it; the
        // peer marks it out of sync, and after the reconnect it is resynced.
        spdlog::error("{}/{}: Digest integrity check FAILED ({}): sector {} + {} bytes", Tag(), vol,
                      alg, d->sector, len);
        p::DataIntegrityFail f;
        f.sector = d->sector;
        f.block_id = d->block_id;
        f.size = d->size;
        f.seq_num = d->seq_num;
        s->meta->SendPacket(f, static_cast<uint16_t>(vol));
        co_return Error(Errc::kProtocol,
                        "data-integrity-alg {}: digest mismatch at sector {}; reconnecting", alg,
                        d->sector);
      }
    }
    if (d->dp_flags & p::kDpSendRecvAck) {
      p::RecvAck a;
      a.sector = d->sector;
      a.block_id = d->block_id;
      a.size = d->size;
      a.seq_num = d->seq_num;
      s->meta->SendPacket(a, static_cast<uint16_t>(vol));
    }
    // Writes of the same range land in the order they were sent; bounded in flight.
    bool no_data = d->dp_flags & (p::kDpDiscard | p::kDpZeroes);
    co_await WaitRoom(s, vol, off, len, no_data ? 0 : len);
    if (!Alive(s)) co_return Status::Ok();
    resource_->MarkResyncStale(vol, off, len);
    uint64_t key = s->next_inflight++;
    ReceivedWriteStarted(s, key, vol, off, len);
    std::shared_ptr<Received> keep(std::move(r));
    auto* dp = std::get_if<p::DataPacket>(&keep->packet);
    resource_->engine().UpdateStats([&](ResourceState& st) {
      auto& pdst = st.connections[peer_id_].peer_devices[vol];
      pdst.stats.unacked++;
      pdst.stats.received_sectors += len / 512;
    });
    auto finish = [this, self, s, key, vol, keep, dp, off, len](storage::IoResult res) {
      ReceivedWriteDone(s, key);
      if (!Alive(s)) return;
      resource_->engine().UpdateStats(
          [&](ResourceState& st) { st.connections[peer_id_].peer_devices[vol].stats.unacked--; });
      if (res.ok() && pd(vol).sync == PeerDevice::Sync::kTarget) {
        // Data from the source is current: those blocks need no resync any more.
        if (auto dv = device(vol)) dv->SetPeerInSync(peer_id_, off, len);
        UpdateSyncStats(vol);
        PumpResync(s, vol);
      }
      if (res.ok() && resource_->peers().size() > 1) {
        // Nor from any other peer we are SyncTarget of (resync.cc, OnPrimaryWriteApplied).
        for (const auto& [id, spec] : resource_->peers()) {
          if (id == peer_id_) continue;
          if (auto c = resource_->connection(id)) c->OnPrimaryWriteApplied(vol, off, len);
        }
        if (!Alive(s)) return;
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
    if (pipe) {
      // After WaitRoom, like the receive into memory it replaces: the write is handed
      // to the disk once the whole block is here, in the order the writes came.
      bool in_pipe = false;
      auto give_up = [&](Status st) {
        ReceivedWriteDone(s, key);
        resource_->engine().UpdateStats(
            [&](ResourceState& rs) { rs.connections[peer_id_].peer_devices[vol].stats.unacked--; });
        return st;
      };
      Status st = co_await s->data->RecvBlockToPipe(*keep, *pipe, &in_pipe);
      if (!st.ok()) co_return give_up(std::move(st));
      // The session may have ended during the receive: nothing of it reaches the disk.
      if (!Alive(s)) co_return give_up(Status::Ok());
      if (in_pipe && dev && dev->attached() && !dev->peer_splice_writes()) {
        // The disk changed while the block arrived: write it from memory.
        st = PacketSocket::TakeBlockFromPipe(*keep, *pipe);
        if (!st.ok()) co_return give_up(std::move(st));
        in_pipe = false;
      }
      if (in_pipe && dev && dev->attached()) {
        dev->ApplyPeerWriteFromPipe(off, len, std::move(pipe), std::move(finish));
        co_return Status::Ok();
      }
    }
    if (!dev || !dev->attached()) {
      storage::IoResult res;
      res.err = EIO;
      res.status = Status(Errc::kIo, "no disk attached");
      finish(res);
      co_return Status::Ok();
    }
    {
      // A write into the page cache is done inline: its completion, and so the ack,
      // runs right here instead of from a handler posted behind the reactor's next
      // poll (an epoll_wait and a failing recv of the next packet before the ack went
      // out). The Primary waits for that ack; at QD1 so does the client.
      storage::CompletionScope scope(io_);
      dev->ApplyPeerWrite(off, dp->data, len, dp->dp_flags, std::move(finish));
      scope.RunQueued();
    }
    co_return Status::Ok();
  }
  if (auto* rd = std::get_if<p::RsDataReply>(&pkt)) {
    uint64_t off = rd->sector * p::kSectorSize;
    co_await WaitRoom(s, vol, off, rd->size, rd->size);
    if (!Alive(s)) co_return Status::Ok();
    if (r->block_pending != 0) co_return co_await OnResyncReplyBlock(s, vol, std::move(r));
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
        // No BarrierAck: the Primary would drop the epoch's writes from its transfer
        // log although they may not be stable here. Ending the session marks them.
        EndSession(s, ConnState::kNetworkFailure,
                   fmt::format("volume {}: flush for barrier {} failed: {}", vol, nr,
                               res.status.message()),
                   true);
        return;
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
  if (auto* rq = std::get_if<p::StateChangeRequest>(&pkt)) {
    s->meta->SendPacket(resource_->twopc().OnRequest(peer_id_, *rq));
    co_return Status::Ok();
  }
  if (auto* c = std::get_if<p::TwoPcCommit>(&pkt)) {
    resource_->twopc().OnDecision(peer_id_, true, *c);
    co_return Status::Ok();
  }
  if (auto* a = std::get_if<p::TwoPcAbort>(&pkt)) {
    resource_->twopc().OnDecision(peer_id_, false, *a);
    co_return Status::Ok();
  }
  if (auto* dc = std::get_if<p::Disconnect>(&pkt)) {
    co_return Error(Errc::kIo, "the peer disconnected ({})", dc->reason);
  }
  if (auto* pa = std::get_if<p::PeerAck>(&pkt)) {
    OnPeerAck(s, *pa);  // peer_ack.cc
    co_return Status::Ok();
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
  if (auto* a = std::get_if<p::DataIntegrityFail>(&pkt)) {
    ack = a;
    ok = false;
    spdlog::error(
        "{}/{}: the peer received sector {} damaged (data-integrity-alg {}); it is "
        "marked out of sync and resynced",
        Tag(), vol, a->sector, cfg_.options.integrity_alg);
  }
  if (ack) {
    auto it = s->pending.find(ack->block_id);
    if (it == s->pending.end()) {
      return Error(Errc::kProtocol, "ack for unknown request {}", ack->block_id);
    }
    auto pw = it->second;
    s->pending.erase(it);
    // (per packet) the bytes of this part are acknowledged
    uint64_t part = std::min<uint64_t>(pw->bytes, ack->size);
    pw->bytes -= part;
    s->unacked_bytes -= std::min(s->unacked_bytes, part);
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
    s->barrier_sent.erase(ba->barrier);
    while (!s->tl.empty() && s->tl.front().barrier <= ba->barrier) {
      const auto& w = s->tl.front();
      SettlePeerAck(w.dagtag, w.acks && w.acks->ok && w.acks->parts == 0);  // peer_ack.cc
      s->tl.pop_front();
    }
    for (auto& cb : cbs) cb(true);
    return Status::Ok();
  }
  if (auto* rp = std::get_if<p::StateChangeReply>(&pkt)) {
    resource_->twopc().OnReply(peer_id_, *rp);
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
    case ReplState::kAhead: {
      auto it = peer_devices_.find(volume);
      return it != peer_devices_.end() && it->second->leaving_ahead;
    }
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
  uint64_t dagtag = JoinPeerAck(s, length);  // peer_ack.cc
  uint32_t ack_flag = 0;
  if (cfg_.protocol == p::WireProtocol::kC) ack_flag = p::kDpSendWriteAck;
  if (cfg_.protocol == p::WireProtocol::kB) ack_flag = p::kDpSendRecvAck;
  auto pw = std::make_shared<Session::PendingWrite>();
  pw->sent = std::chrono::steady_clock::now();
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
    if (!no_data && !cfg_.options.integrity_alg.empty()) {
      // data-integrity-alg: end-to-end digest of the block, checked by the receiver.
      auto dg = p::ComputeDigest(cfg_.options.integrity_alg, d.data);
      if (dg.ok()) d.digest = std::move(*dg);
    }
    std::vector<uint8_t> damaged;
    if (!no_data && corrupt_data_ > 0 && n > 0) {
      // Fault injection for tests ($BSR_TEST_CORRUPT_DATA): damage the block after its
      // digest was taken and before the frame checksum, as bad memory or a bus would.
      --corrupt_data_;
      damaged.assign(d.data.begin(), d.data.end());
      damaged.back() ^= 0xFF;
      d.data = damaged;
    }
    if (ack_flag && d.data.data() != damaged.data() && !no_data) {
      // Protocol B/C: the caller's buffer stays valid until this write is acknowledged
      // or the session ends (EndSession closes the sockets before it completes the
      // write), so the block is sent from it without a copy.
      s->data->SendGather(
          p::EncodeDataHead(d, static_cast<uint16_t>(volume), s->data->frame_flags()), d.data,
          nullptr);
    } else {
      s->data->Send(p::EncodePacket(d, static_cast<uint16_t>(volume), s->data->frame_flags()));
    }
    if (ack_flag) {
      s->pending[d.block_id] = pw;
      ++parts;
      if (!no_data) {
        pw->bytes += n;
        s->unacked_bytes += n;
      }
    }
    pos += n;
  }
  // Every protocol's write stays in the transfer log until the epoch's BarrierAck, which
  // the peer sends once it flushed the epoch (disk-flushes); a RecvAck (B) only says the
  // block arrived, a WriteAck (C) that it is written, maybe only into a volatile cache. A
  // connection lost before that marks the write out of sync (EndSession), as in DRBD.
  s->tl.push_back({volume, offset, length, s->barrier_nr + 1, std::chrono::steady_clock::now(),
                   dagtag, dagtag != 0 ? pw : nullptr});
  // (Before the barrier below: the write belongs to the epoch that barrier closes.)
  // max-epoch-size: close the epoch with a barrier (nobody waits on its ack).
  if (++s->epoch_writes >= cfg_.max_epoch_size) SendBarrier(s, volume, nullptr);
  if (CongestionChecked()) {
    // Not from inside the caller's write submission: going Ahead or dropping the
    // connection completes writes.
    asio::post(io_, [self = shared_from_this(), s] {
      if (self->Alive(s)) self->CheckCongestion(s);
    });
  }
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
  SendBarrier(s, volume, std::move(done));
}

void Connection::SendBarrier(const std::shared_ptr<Session>& s, int volume, AckCallback done) {
  p::Barrier b;
  b.barrier = ++s->barrier_nr;
  auto& cbs = s->barriers[b.barrier];
  if (done) cbs.push_back(std::move(done));
  s->barrier_sent[b.barrier] = std::chrono::steady_clock::now();
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
  s->sent_current[volume] = u.current;
  s->data->SendPacket(u, static_cast<uint16_t>(volume));
}

void Connection::SendState(const std::shared_ptr<Session>& s, int volume) {
  const auto& st = resource_->state();
  p::StatePacket sp;
  sp.role = st.role;
  auto d = st.devices.find(volume);
  sp.disk = d == st.devices.end() ? DiskState::kDiskless : d->second.disk;
  sp.conn = p::ConnState::kConnected;
  auto c = st.connections.find(peer_id_);
  if (c != st.connections.end()) {
    auto pdi = c->second.peer_devices.find(volume);
    if (pdi != c->second.peer_devices.end()) {
      sp.peer_disk = pdi->second.peer_disk;
      ReplState r = pdi->second.repl;
      // PausedSyncS/T on the wire means the sender's own pause-sync (the receiver's
      // resync-suspended:peer); a pause that only mirrors the receiver's is sent unpaused.
      if (!pdi->second.resync_susp_user) {
        if (r == ReplState::kPausedSyncS) r = ReplState::kSyncSource;
        if (r == ReplState::kPausedSyncT) r = ReplState::kSyncTarget;
      }
      sp.repl = r;
    }
  }
  s->data->SendPacket(sp, static_cast<uint16_t>(volume));
}

void Connection::OnPeerState(const std::shared_ptr<Session>& s, int volume,
                             const p::StatePacket& st) {
  auto& pdv = pd(volume);
  pdv.state = st;
  pdv.have_info = true;
  Status ch = resource_->engine().Change("peer state",
                                         [&](ResourceState& rs) {
                                           auto it = rs.connections.find(peer_id_);
                                           if (it == rs.connections.end()) return;
                                           it->second.peer_role = st.role;
                                           auto pdi = it->second.peer_devices.find(volume);
                                           if (pdi != it->second.peer_devices.end()) {
                                             pdi->second.peer_disk = st.disk;
                                           }
                                         },
                                         {.internal = true});
  if (!ch.ok()) spdlog::warn("{}/{}: peer state: {}", Tag(), volume, ch.message());
  auto repl = st.repl;
  OnPeerAheadBehind(s, volume, repl);
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
  if (hold_ && !session_ && !Held() && dial_timer_) dial_timer_->cancel();  // dial now
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

bool Connection::SendStateChangeRequest(const p::StateChangeRequest& rq) {
  auto s = session_;
  if (!s || !s->established || s->closed) return false;
  s->data->SendPacket(rq);
  return true;
}

bool Connection::SendTwoPcDecision(bool commit, const p::TwoPcDecisionFields& d) {
  auto s = session_;
  if (!s || !s->established || s->closed) return false;
  if (commit) {
    p::TwoPcCommit c;
    static_cast<p::TwoPcDecisionFields&>(c) = d;
    s->data->SendPacket(c);
  } else {
    p::TwoPcAbort a;
    static_cast<p::TwoPcDecisionFields&>(a) = d;
    s->data->SendPacket(a);
  }
  return true;
}

void Connection::ResendUuids(int volume) {
  auto s = session_;
  if (!s || !s->established || s->closed || !device(volume)) return;
  SendUuids(s, volume);
}

void Connection::ResendState() {
  auto s = session_;
  if (!s || !s->established || s->closed) return;
  for (auto& [vol, dev] : resource_->devices()) SendState(s, vol);
}

void Connection::OnPromoted(bool forced) {
  auto s = session_;
  if (!s || !s->established || s->closed) return;
  for (auto& [vol, dev] : resource_->devices()) {
    SendUuids(s, vol);
    if (!forced) ResyncMarkedAfterPromotion(s, vol);  // sync.cc
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
