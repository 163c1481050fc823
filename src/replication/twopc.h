// TwoPc: cluster-wide state changes of one Resource (DRBD 9 two-phase commit): the
// initiator's side of a promotion and this node's vote on a peer's. io_context thread.
#pragma once

#include <asio.hpp>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "protocol/handshake_packets.h"

namespace bsr::replication {

class Resource;

// What a node knows when a peer asks to be promoted (the pure vote rule).
struct PromoteVoteInput {
  int my_node_id = 0;
  int initiator = 0;
  bool i_am_primary = false;
  bool i_am_promoting = false;     // our own promotion is in its first phase
  int prepared_for = -1;           // we voted yes on this node's change (-1: none)
  std::vector<int> primary_peers;  // our other connected peers that are Primary
};
struct PromoteVote {
  protocol::TwoPcVote vote = protocol::TwoPcVote::kYes;
  std::string reason;      // on kNo / kRetry: why, naming the node
  bool yield_own = false;  // we give up our own concurrent promotion
};
// Simultaneous promotions: the lower node id wins; the higher one votes yes on it and
// abandons its own, the lower one refuses the higher one's.
PromoteVote DecidePromoteVote(const PromoteVoteInput& in);

class TwoPc : public std::enable_shared_from_this<TwoPc> {
 public:
  explicit TwoPc(Resource* resource);
  ~TwoPc();

  // Initiator: asks every connected peer; when all said yes, TwoPcCommit to each and
  // `apply` (the local promotion; `done` gets its status), else TwoPcAbort and `done`
  // gets the refusal ("node 1 (b) is Primary"). No connected peer: apply at once.
  void Promote(bool force, std::function<Status()> apply, std::function<void(Status)> done);
  // Promote runs fence-peer first for each unconnected peer with fencing resource-only
  // or resource-and-stonith whose disk is not known to be Outdated (fencing.h); a peer
  // it cannot fence refuses the promotion, unless `force` ("Forced into split brain").
  // A promotion that does not go through Promote (auto-promote) checks this: refused
  // while we voted yes on a peer's promotion, or while such a peer is not fenced.
  Status CheckLocalPromote() const;
  bool busy() const { return own_ != nullptr || prepared_.has_value() || fencing_; }

  // From the Connection to `peer` (the sender).
  protocol::StateChangeReply OnRequest(int peer, const protocol::StateChangeRequest& rq);
  void OnReply(int peer, const protocol::StateChangeReply& reply);
  void OnDecision(int peer, bool commit, const protocol::TwoPcDecisionFields& d);
  // The connection to `peer` ended: it no longer votes; its prepared change is void.
  void OnPeerLost(int peer);

 private:
  struct Txn;
  Status CheckPrepared() const;
  // The two-phase commit part of Promote, after fencing.
  void AskPeers(bool force, bool override_fencing, std::function<Status()> apply,
                std::function<void(Status)> done);
  Status ApplyLocal(const std::function<Status()>& apply, bool override_fencing);
  void Finish();
  std::chrono::milliseconds Timeout() const;

  Resource* resource_;
  std::unique_ptr<Txn> own_;
  struct Prepared {
    int initiator = 0;
    uint32_t tid = 0;
    std::unique_ptr<asio::steady_timer> timer;
  };
  std::optional<Prepared> prepared_;
  bool fencing_ = false;           // fence-peer of our own promotion is running
  bool override_fencing_ = false;  // set while a forced promotion applies past failed fencing
};

}  // namespace bsr::replication
