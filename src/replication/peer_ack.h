// Peer acks (DRBD 9's P_PEER_ACK): which nodes hold each write of a Primary's stream.
// Pure bookkeeping, io thread only: the Primary's PeerAckTracker (one per Resource) and
// PeerAckOrder (one per session) decide the PeerAck packets; a Secondary's UnstableWrites
// (one per session) keeps the writes no PeerAck covered yet.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <vector>

#include "protocol/io_packets.h"

namespace bsr::replication {

// Primary side, one per resource. A write is sent to several peers (one Join per
// peer, right after NextWrite); once every peer answered (Done) and no more can join
// (Close), each of them is told which nodes hold the write: this node plus every peer
// that has the data (protocol B/C acknowledged it). A peer that was not sent the write
// (disconnected, resyncing) is not in the mask.
class PeerAckTracker {
 public:
  explicit PeerAckTracker(int my_node_id) : self_bit_(Bit(my_node_id)) {}

  struct Ready {
    int peer = 0;
    uint64_t session = 0;  // the peer's session the write went out on
    uint32_t token = 0;    // seq_num of the write's last Data packet on that session
    uint64_t mask = 0;     // bit n: node-id n holds the write
  };

  static uint64_t Bit(int node_id) {
    return node_id >= 0 && node_id < 64 ? uint64_t{1} << node_id : 0;
  }

  // A new application write begins: the Joins that follow belong to it.
  void NextWrite() { new_write_ = true; }
  // The current write was sent to `peer` on `session`; returns its dagtag. *first is
  // true for the write's first peer.
  uint64_t Join(int peer, uint64_t session, uint32_t token, bool* first);
  // `peer` answered for `dagtag` (has_it: it holds the data now).
  std::vector<Ready> Done(uint64_t dagtag, int peer, bool has_it);
  // No more peers join `dagtag`.
  std::vector<Ready> Close(uint64_t dagtag);
  // The newest dagtag handed out so far: the groups of a write that begins now get
  // larger ones (CloseSince).
  uint64_t last_dagtag() const { return dagtag_; }
  // Close() for every group still open whose dagtag is above `mark` (a last_dagtag()
  // taken before the write's NextWrite): the write's groups, also when another write
  // began and ended inside it.
  std::vector<Ready> CloseSince(uint64_t mark);
  size_t open_writes() const { return groups_.size(); }

 private:
  struct Group {
    std::vector<Ready> members;
    int pending = 0;
    uint64_t mask = 0;
    bool closed = false;
  };
  std::vector<Ready> MaybeFinish(std::map<uint64_t, Group>::iterator it);

  uint64_t self_bit_;
  uint64_t dagtag_ = 0;
  bool new_write_ = true;
  std::map<uint64_t, Group> groups_;
};

// Primary side, one per session: PeerAcks leave in the order the writes were sent, so
// that one PeerAck{mask, dagtag = seq} covers every earlier write of the session. Runs
// of writes with the same mask share one packet.
class PeerAckOrder {
 public:
  void Sent(uint32_t token) { order_.push_back(token); }
  // The write whose last packet is `token` is settled with `mask`: the PeerAcks that
  // can go out now, oldest first.
  std::vector<protocol::PeerAck> Ready(uint32_t token, uint64_t mask);
  size_t waiting() const { return order_.size(); }

 private:
  std::deque<uint32_t> order_;
  std::map<uint32_t, uint64_t> ready_;  // token -> mask
};

// Secondary side, one per session: writes received from the Primary that no PeerAck
// covered yet. If the Primary is lost they may be on some nodes only: the caller marks
// them out of sync toward every other peer (over-marking only resyncs more).
struct UnstableWrite {
  uint32_t seq = 0;
  int volume = 0;
  uint64_t offset = 0, length = 0;
};

class UnstableWrites {
 public:
  void Add(uint32_t seq, int volume, uint64_t offset, uint64_t length) {
    writes_.push_back({seq, volume, offset, length});
  }
  // PeerAck{.., dagtag}: the writes with seq up to dagtag (in sequence-number order,
  // wrapping) leave the list and are returned.
  std::vector<UnstableWrite> Ack(uint64_t dagtag);
  std::vector<UnstableWrite> TakeAll();
  size_t size() const { return writes_.size(); }

 private:
  std::deque<UnstableWrite> writes_;
};

}  // namespace bsr::replication
