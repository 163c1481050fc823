// Peer acks: the bookkeeping (peer_ack.h) and its use by Connection and Resource. On a
// Primary every replicated write joins a PeerAckTracker group; when it settled on every
// peer (left its transfer log: BarrierAck, or the session's end), each gets
// PeerAck{mask, dagtag} in send order. On a Secondary the writes received wait
// in the session's UnstableWrites until a PeerAck covers them: nodes missing from its mask
// get the blocks marked out of sync, and if the Primary is lost first, every other peer
// does (the survivors resync them from the node promoted next). io thread only.
#include "replication/peer_ack.h"

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "replication/connection.h"
#include "replication/connection_internal.h"
#include "replication/device.h"
#include "replication/resource.h"

namespace bsr::replication {

namespace p = protocol;

namespace {
// Peer acks wait for every peer's BarrierAck (an epoch of up to max-epoch-size writes
// plus the peer's flush): at 50k writes/s and a slow flush that is well above 2^16.
constexpr size_t kMaxUnstableWrites = 1 << 18;
}  // namespace

// ---- PeerAckTracker --------------------------------------------------------------

uint64_t PeerAckTracker::Join(int peer, uint64_t session, uint32_t token, bool* first) {
  auto it = groups_.find(dagtag_);
  if (new_write_ || it == groups_.end() || it->second.closed) {
    new_write_ = false;
    it = groups_.emplace(++dagtag_, Group{}).first;
  }
  *first = it->second.members.empty();
  it->second.members.push_back({peer, session, token, 0});
  it->second.pending++;
  return dagtag_;
}

std::vector<PeerAckTracker::Ready> PeerAckTracker::Done(uint64_t dagtag, int peer, bool has_it) {
  auto it = groups_.find(dagtag);
  if (it == groups_.end() || it->second.pending == 0) return {};
  it->second.pending--;
  if (has_it) it->second.mask |= Bit(peer);
  return MaybeFinish(it);
}

std::vector<PeerAckTracker::Ready> PeerAckTracker::Close(uint64_t dagtag) {
  auto it = groups_.find(dagtag);
  if (it == groups_.end()) return {};
  it->second.closed = true;
  if (dagtag == dagtag_) new_write_ = true;
  return MaybeFinish(it);
}

std::vector<PeerAckTracker::Ready> PeerAckTracker::CloseSince(uint64_t mark) {
  std::vector<uint64_t> open;
  for (auto it = groups_.upper_bound(mark); it != groups_.end(); ++it) {
    if (!it->second.closed) open.push_back(it->first);
  }
  std::vector<Ready> out;
  for (uint64_t tag : open) {
    auto ready = Close(tag);
    out.insert(out.end(), ready.begin(), ready.end());
  }
  return out;
}

std::vector<PeerAckTracker::Ready> PeerAckTracker::MaybeFinish(
    std::map<uint64_t, Group>::iterator it) {
  Group& g = it->second;
  if (!g.closed || g.pending > 0) return {};
  std::vector<Ready> out = std::move(g.members);
  for (auto& r : out) r.mask = g.mask | self_bit_;
  groups_.erase(it);
  return out;
}

// ---- PeerAckOrder ----------------------------------------------------------------

std::vector<p::PeerAck> PeerAckOrder::Ready(uint32_t token, uint64_t mask) {
  ready_[token] = mask;
  std::vector<p::PeerAck> out;
  while (!order_.empty()) {
    auto it = ready_.find(order_.front());
    if (it == ready_.end()) break;
    if (!out.empty() && out.back().node_mask == it->second) {
      out.back().dagtag = it->first;
    } else {
      out.push_back(p::PeerAck{it->second, it->first});
    }
    ready_.erase(it);
    order_.pop_front();
  }
  return out;
}

// ---- UnstableWrites --------------------------------------------------------------

std::vector<UnstableWrite> UnstableWrites::Ack(uint64_t dagtag) {
  std::vector<UnstableWrite> out;
  const auto upto = static_cast<uint32_t>(dagtag);
  // Sequence numbers wrap at 2^32: "up to" is modular.
  while (!writes_.empty() && static_cast<int32_t>(writes_.front().seq - upto) <= 0) {
    out.push_back(writes_.front());
    writes_.pop_front();
  }
  return out;
}

std::vector<UnstableWrite> UnstableWrites::TakeAll() {
  std::vector<UnstableWrite> out(writes_.begin(), writes_.end());
  writes_.clear();
  return out;
}

// ---- Resource --------------------------------------------------------------------

PeerAckTracker& Resource::peer_acks() {
  if (!peer_acks_) peer_acks_ = std::make_shared<PeerAckTracker>(node_id_);
  return *peer_acks_;
}

uint64_t Resource::BeginReplicatedWrite() {
  uint64_t mark = peer_acks().last_dagtag();
  peer_acks().NextWrite();
  return mark;
}

void Resource::EndReplicatedWrite(uint64_t mark) {
  // Every peer joined in Device::StartWrite's loop: close the group here, not from a
  // handler posted by a connection, which is skipped if that connection stops first
  // (the group then never settled, and the other sessions' PeerAcks waited behind it).
  SendPeerAcks(peer_acks().CloseSince(mark));
}

void Resource::SendPeerAcks(const std::vector<PeerAckTracker::Ready>& ready) {
  for (const auto& r : ready) {
    if (auto c = connection(r.peer)) c->OnPeerAckReady(r.session, r.token, r.mask);
  }
}

// ---- Connection: Primary side ----------------------------------------------------

uint64_t Connection::JoinPeerAck(const std::shared_ptr<Session>& s, uint64_t length) {
  // With a single peer no third node could miss a write the peer has: no peer acks
  // (and no per-write cost on the two-node write path).
  if (resource_->peers().size() < 2) return 0;
  // The Data packets of this write get the next sequence numbers (one per 1 MiB).
  uint64_t parts = std::max<uint64_t>(1, (length + p::kMaxDataSize - 1) / p::kMaxDataSize);
  auto token = static_cast<uint32_t>(s->next_seq + parts - 1);
  bool first = false;  // Resource::EndReplicatedWrite closes the group
  uint64_t dagtag = resource_->peer_acks().Join(peer_id_, s->id, token, &first);
  s->pa_order.Sent(token);
  return dagtag;
}

void Connection::SettlePeerAck(uint64_t dagtag, bool on_peer) {
  if (dagtag == 0 || stopped_) return;
  // Only with its epoch's BarrierAck is the write on the peer's stable storage (the
  // peer flushed the epoch): before that a power cut there may lose it, and the other
  // Secondaries must keep tracking it. DRBD sends P_PEER_ACK when the request leaves
  // the transfer log, too; by then a protocol A write is on the peer as well.
  resource_->SendPeerAcks(resource_->peer_acks().Done(dagtag, peer_id_, on_peer));
}

void Connection::OnPeerAckReady(uint64_t session, uint32_t token, uint64_t mask) {
  auto s = session_;
  if (!s || s->closed || s->id != session || !s->established || !s->data) return;
  for (const auto& pa : s->pa_order.Ready(token, mask)) s->data->SendPacket(pa);
}

// ---- Connection: Secondary side --------------------------------------------------

void Connection::NoteUnstableWrite(const std::shared_ptr<Session>& s, int volume, uint32_t seq,
                                   uint64_t offset, uint64_t length) {
  // Only a third node could lack what we got (a two-node Primary sends no peer acks).
  if (resource_->peers().size() < 2) return;
  // A Primary that sends no peer acks (it knows a single peer) must not grow the list
  // without bound: past a limit the oldest writes are marked as if the Primary was lost.
  if (s->unstable.size() >= kMaxUnstableWrites) {
    MarkUnstable(s->unstable.TakeAll(), 0, "waited too long for a peer ack");
  }
  s->unstable.Add(seq, volume, offset, length);
}

void Connection::MarkUnstable(const std::vector<UnstableWrite>& writes, uint64_t mask,
                              const char* why) {
  if (writes.empty()) return;
  std::vector<int> toward;
  for (int id : resource_->peer_node_ids()) {
    if (id != peer_id_ && !(mask & PeerAckTracker::Bit(id))) toward.push_back(id);
  }
  if (toward.empty()) return;
  std::map<int, std::shared_ptr<Device>> devs;
  uint64_t bytes = 0;
  for (const auto& w : writes) {
    auto& dev = devs[w.volume];
    if (!dev) dev = device(w.volume);
    if (!dev) continue;
    for (int id : toward) {
      // Not while we are that peer's SyncTarget: we would request the block from it.
      auto c = resource_->connection(id);
      if (c && c->DeferMarkWhileTarget(w.volume, w.offset, w.length)) continue;
      dev->SetPeerOutOfSync(id, w.offset, w.length);
    }
    bytes += w.length;
  }
  for (auto& [vol, dev] : devs) {
    if (dev) dev->UpdatePeerOosStats();
  }
  spdlog::log(mask == 0 ? spdlog::level::warn : spdlog::level::debug,
              "{}: {} write(s) ({} KiB) {}: marked out of sync toward node(s) {}", Tag(),
              writes.size(), bytes / 1024, why, fmt::join(toward, ","));
}

void Connection::OnPeerAck(const std::shared_ptr<Session>& s, const p::PeerAck& pa) {
  MarkUnstable(s->unstable.Ack(pa.dagtag), pa.node_mask, "are not on every node (peer ack)");
}

void Connection::MarkUnstableWrites(const std::shared_ptr<Session>& s) {
  // Called before EndSession drops session_ (`s` may be a reference to it).
  if (stopped_) return;
  MarkUnstable(s->unstable.TakeAll(), 0,
               "of the lost peer were not acknowledged by all nodes (no peer ack)");
}

}  // namespace bsr::replication
