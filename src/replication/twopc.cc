#include "replication/twopc.h"

#include <spdlog/spdlog.h>

#include <random>

#include "replication/connection.h"
#include "replication/fencing.h"
#include "replication/resource.h"

namespace bsr::replication {

namespace p = protocol;

PromoteVote DecidePromoteVote(const PromoteVoteInput& in) {
  PromoteVote v;
  if (in.i_am_primary) {
    v.vote = p::TwoPcVote::kNo;
    v.reason = fmt::format("node {} is Primary", in.my_node_id);
    return v;
  }
  for (int id : in.primary_peers) {
    if (id == in.initiator) continue;
    v.vote = p::TwoPcVote::kNo;
    v.reason = fmt::format("node {} is Primary (connected to node {})", id, in.my_node_id);
    return v;
  }
  if (in.prepared_for >= 0 && in.prepared_for != in.initiator) {
    v.vote = p::TwoPcVote::kRetry;
    v.reason = fmt::format("node {} is busy with a cluster-wide state change of node {}",
                           in.my_node_id, in.prepared_for);
    return v;
  }
  if (in.i_am_promoting) {
    if (in.my_node_id < in.initiator) {
      v.vote = p::TwoPcVote::kNo;
      v.reason = fmt::format("node {} is being promoted at the same time (the lower node-id wins)",
                             in.my_node_id);
      return v;
    }
    v.yield_own = true;
  }
  return v;
}

struct TwoPc::Txn {
  explicit Txn(asio::io_context& io) : timer(io) {}
  uint32_t tid = 0;
  std::set<int> participants;
  std::set<int> waiting;
  std::map<int, std::string> refusals;  // by node id
  std::string yielded;                  // we gave way to a concurrent promotion (why)
  bool override_fencing = false;        // forced past a failed fence-peer
  std::function<Status()> apply;
  std::function<void(Status)> done;
  asio::steady_timer timer;
};

TwoPc::TwoPc(Resource* resource) : resource_(resource) {}

TwoPc::~TwoPc() = default;

TwoPc& Resource::twopc() {
  if (!twopc_) twopc_ = std::make_shared<TwoPc>(this);
  return *twopc_;
}

std::chrono::milliseconds TwoPc::Timeout() const {
  // twopc-timeout: tenths of a second, 50..600, default 300.
  int64_t tenths = 300;
  auto it = resource_->options().find("twopc-timeout");
  if (it != resource_->options().end()) {
    try {
      tenths = std::clamp<int64_t>(std::stoll(it->second), 50, 600);
    } catch (...) {
    }
  }
  return std::chrono::milliseconds(tenths * 100);
}

Status TwoPc::CheckPrepared() const {
  if (prepared_) {
    return Error(Errc::kState,
                 "State change failed: {} is being promoted (cluster-wide state change in "
                 "progress)",
                 resource_->PeerName(prepared_->initiator));
  }
  return Status::Ok();
}

Status TwoPc::CheckLocalPromote() const {
  BSR_RETURN_IF_ERROR(CheckPrepared());
  if (override_fencing_) return Status::Ok();
  // DRBD's SS_PRIMARY_NOP: fencing on, and a peer that may hold newer data is unreachable.
  const auto& st = resource_->state();
  std::string why =
      UnfencedPeersReason(st, PeersToFenceBeforePromote(st, FencingPolicies(*resource_)));
  if (!why.empty()) return Error(Errc::kState, "State change failed: {}", why);
  return Status::Ok();
}

Status TwoPc::ApplyLocal(const std::function<Status()>& apply, bool override_fencing) {
  override_fencing_ = override_fencing;
  Status s = apply();
  override_fencing_ = false;
  if (s.ok() && override_fencing) ForceOutdateUnfencedPeers(resource_);
  return s;
}

void TwoPc::Promote(bool force, std::function<Status()> apply, std::function<void(Status)> done) {
  const std::string& res = resource_->name();
  if (own_ || fencing_) {
    return done(
        Error(Errc::kBusy, "primary {}: a promotion of this node is already in progress", res));
  }
  if (Status s = CheckPrepared(); !s.ok()) return done(s.WithContext("primary " + res));
  const auto& st = resource_->state();
  std::vector<int> unfenced = PeersToFenceBeforePromote(st, FencingPolicies(*resource_));
  if (unfenced.empty()) return AskPeers(force, false, std::move(apply), std::move(done));
  if (!force) {
    // A promotion the state rules refuse anyway (no UpToDate disk, ...) runs no handler.
    Status pre =
        resource_->engine().Check("primary", [](ResourceState& s) { s.role = Role::kPrimary; }, {});
    if (!pre.ok()) return done(pre.WithContext("primary " + res));
  }
  fencing_ = true;
  std::weak_ptr<TwoPc> weak = weak_from_this();
  FenceBeforePromote(
      resource_, std::move(unfenced), weak,
      [weak, force, apply = std::move(apply), done = std::move(done)](Status fenced) mutable {
        auto self = weak.lock();
        if (!self) return;
        self->fencing_ = false;
        const std::string& res = self->resource_->name();
        if (fenced.ok()) return self->AskPeers(force, false, std::move(apply), std::move(done));
        if (!force) {
          spdlog::warn("{}: promotion refused: {}", res, fenced.message());
          return done(fenced.WithContext("primary " + res));
        }
        spdlog::warn("{}: Forced into split brain situation! ({})", res, fenced.message());
        self->AskPeers(force, true, std::move(apply), std::move(done));
      });
}

void TwoPc::AskPeers(bool force, bool override_fencing, std::function<Status()> apply,
                     std::function<void(Status)> done) {
  const std::string& res = resource_->name();
  if (own_ || prepared_) {
    // A peer's promotion or another of ours got in while fence-peer ran.
    if (Status s = CheckPrepared(); !s.ok()) return done(s.WithContext("primary " + res));
    return done(
        Error(Errc::kBusy, "primary {}: a promotion of this node is already in progress", res));
  }
  auto txn = std::make_unique<Txn>(*resource_->env().io);
  static std::mt19937 rng(std::random_device{}());
  txn->tid = rng() | 1;
  p::StateChangeRequest rq;
  rq.tid = txn->tid;
  rq.initiator_node_id = static_cast<uint16_t>(resource_->node_id());
  rq.kind = p::StateChangeKind::kPromote;
  rq.mask = p::kMaskRole;
  rq.flags = force ? p::kChangeForce : 0;
  rq.role = p::Role::kPrimary;
  rq.reach_mask = uint64_t{1} << resource_->node_id();
  std::vector<std::shared_ptr<Connection>> conns;
  for (int id : resource_->peer_node_ids()) {
    auto c = resource_->connection(id);
    if (c && c->established() && id < 64) {
      conns.push_back(c);
      rq.reach_mask |= uint64_t{1} << id;
    }
  }
  if (conns.empty()) return done(ApplyLocal(apply, override_fencing));
  for (auto& c : conns) {
    if (c->SendStateChangeRequest(rq)) {
      txn->participants.insert(c->peer_node_id());
      txn->waiting.insert(c->peer_node_id());
    }
  }
  if (txn->waiting.empty()) return done(ApplyLocal(apply, override_fencing));
  txn->override_fencing = override_fencing;
  txn->apply = std::move(apply);
  txn->done = std::move(done);
  spdlog::info("{}: promotion: asking {} peer(s) (cluster-wide state change {:08x})", res,
               txn->waiting.size(), txn->tid);
  txn->timer.expires_after(Timeout());
  std::weak_ptr<TwoPc> weak = weak_from_this();
  uint32_t tid = txn->tid;
  txn->timer.async_wait([weak, tid](std::error_code ec) {
    auto self = weak.lock();
    if (ec || !self || !self->own_ || self->own_->tid != tid) return;
    for (int id : self->own_->waiting) {
      self->own_->refusals[id] =
          fmt::format("{} did not answer within twopc-timeout", self->resource_->PeerName(id));
    }
    self->own_->waiting.clear();
    self->Finish();
  });
  own_ = std::move(txn);
}

void TwoPc::Finish() {
  if (!own_ || !own_->waiting.empty()) return;
  auto txn = std::move(own_);
  txn->timer.cancel();
  p::TwoPcDecisionFields d;
  d.tid = txn->tid;
  d.initiator_node_id = static_cast<uint16_t>(resource_->node_id());
  bool commit = txn->refusals.empty() && txn->yielded.empty();
  if (commit) d.primary_nodes = uint64_t{1} << resource_->node_id();
  for (int id : txn->participants) {
    if (auto c = resource_->connection(id)) c->SendTwoPcDecision(commit, d);
  }
  const std::string& res = resource_->name();
  if (!commit) {
    std::string why = txn->yielded;
    for (auto& [id, reason] : txn->refusals) {
      why += fmt::format("{}{}", why.empty() ? "" : "; ", reason);
    }
    spdlog::warn("{}: promotion refused: {}", res, why);
    return txn->done(Error(Errc::kState, "primary {}: State change failed: {}", res, why));
  }
  spdlog::info("{}: promotion accepted by every connected peer; committing", res);
  Status s = ApplyLocal(txn->apply, txn->override_fencing);
  if (!s.ok()) {
    // The peers recorded us as Primary on the commit; our unchanged state corrects it.
    for (int id : txn->participants) {
      if (auto c = resource_->connection(id)) c->ResendState();
    }
  }
  txn->done(s);
}

p::StateChangeReply TwoPc::OnRequest(int peer, const p::StateChangeRequest& rq) {
  p::StateChangeReply reply;
  reply.tid = rq.tid;
  int me = resource_->node_id();
  reply.reachable_nodes = uint64_t{1} << me;
  const auto& st = resource_->state();
  if (st.role == Role::kPrimary) reply.primary_nodes |= uint64_t{1} << me;
  if (rq.kind != p::StateChangeKind::kPromote) {
    // Only promotion is cluster-wide so far; other kinds change nothing here.
    return reply;
  }
  PromoteVoteInput in;
  in.my_node_id = me;
  in.initiator = peer;
  in.i_am_primary = st.role == Role::kPrimary;
  in.i_am_promoting = own_ != nullptr;
  in.prepared_for = prepared_ ? prepared_->initiator : -1;
  for (const auto& [id, c] : st.connections) {
    if (c.conn == ConnState::kConnected && c.peer_role == Role::kPrimary) {
      in.primary_peers.push_back(id);
      if (id < 64) reply.primary_nodes |= uint64_t{1} << id;
    }
    if (c.conn == ConnState::kConnected && id < 64) reply.reachable_nodes |= uint64_t{1} << id;
  }
  PromoteVote v = DecidePromoteVote(in);
  reply.vote = v.vote;
  reply.reason = v.reason;
  if (v.vote != p::TwoPcVote::kYes) {
    spdlog::info("{}: refused the promotion of {}: {}", resource_->name(),
                 resource_->PeerName(peer), v.reason);
    return reply;
  }
  if (v.yield_own && own_) {
    own_->yielded = fmt::format("{} is being promoted at the same time (the lower node-id wins)",
                                resource_->PeerName(peer));
    spdlog::info("{}: {}; giving up our own promotion", resource_->name(), own_->yielded);
  }
  prepared_ = Prepared{};  // not emplace(): clang 14 sees no default constructor here
  prepared_->initiator = peer;
  prepared_->tid = rq.tid;
  prepared_->timer = std::make_unique<asio::steady_timer>(*resource_->env().io);
  prepared_->timer->expires_after(Timeout());
  std::weak_ptr<TwoPc> weak = weak_from_this();
  uint32_t tid = rq.tid;
  prepared_->timer->async_wait([weak, tid](std::error_code ec) {
    auto self = weak.lock();
    if (ec || !self || !self->prepared_ || self->prepared_->tid != tid) return;
    spdlog::warn("{}: no commit/abort from {} within twopc-timeout; dropping its change",
                 self->resource_->name(), self->resource_->PeerName(self->prepared_->initiator));
    self->prepared_.reset();
  });
  spdlog::info("{}: agreed to the promotion of {}", resource_->name(), resource_->PeerName(peer));
  return reply;
}

void TwoPc::OnReply(int peer, const p::StateChangeReply& reply) {
  if (!own_ || own_->tid != reply.tid || !own_->waiting.erase(peer)) return;
  if (reply.vote != p::TwoPcVote::kYes) {
    own_->refusals[peer] =
        reply.reason.empty()
            ? fmt::format("{} voted {}", resource_->PeerName(peer), p::TwoPcVoteName(reply.vote))
            : reply.reason;
  }
  Finish();
}

void TwoPc::OnDecision(int peer, bool commit, const p::TwoPcDecisionFields& d) {
  if (!prepared_ || prepared_->initiator != peer || prepared_->tid != d.tid) return;
  prepared_.reset();
  if (!commit) {
    spdlog::info("{}: {} aborted its promotion", resource_->name(), resource_->PeerName(peer));
    return;
  }
  spdlog::info("{}: {} is being promoted (committed)", resource_->name(),
               resource_->PeerName(peer));
  // Until its State packet arrives, the peer counts as Primary here already.
  Status s = resource_->engine().Change(
      "peer promoted",
      [&](ResourceState& st) {
        auto it = st.connections.find(peer);
        if (it != st.connections.end() && it->second.conn == ConnState::kConnected) {
          it->second.peer_role = Role::kPrimary;
        }
      },
      {.internal = true});
  if (!s.ok()) spdlog::warn("{}: {}", resource_->name(), s.message());
}

void TwoPc::OnPeerLost(int peer) {
  if (prepared_ && prepared_->initiator == peer) prepared_.reset();
  if (own_ && own_->waiting.erase(peer)) {
    own_->participants.erase(peer);
    spdlog::info("{}: {} left during the promotion; it no longer votes", resource_->name(),
                 resource_->PeerName(peer));
    // Not from inside the connection's teardown: finish on a fresh stack.
    std::weak_ptr<TwoPc> weak = weak_from_this();
    asio::post(*resource_->env().io, [weak] {
      if (auto self = weak.lock()) self->Finish();
    });
  }
}

}  // namespace bsr::replication
