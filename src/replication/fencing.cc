// DRBD's `fencing` net option and its fence-peer / unfence-peer handlers: a Primary that
// loses a peer whose disk was UpToDate runs fence-peer (resource-and-stonith: I/O is
// suspended until the handler succeeds or `resume-io`); unfence-peer runs when a fenced
// peer is UpToDate again. A state-engine listener of the Resource; io thread only.
#include "replication/fencing.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <set>
#include <string_view>

#include "replication/device.h"
#include "replication/resource.h"

namespace bsr::replication {

namespace {

enum class Policy { kDontCare, kResourceOnly, kResourceAndStonith };

Policy ParsePolicy(std::string_view policy) {
  if (policy == "resource-only") return Policy::kResourceOnly;
  if (policy == "resource-and-stonith") return Policy::kResourceAndStonith;
  return Policy::kDontCare;
}

// Every disk of the peer is known to be Outdated or worse (none known: no).
bool PeerFenced(const ResourceState& st, int peer) {
  auto c = st.connections.find(peer);
  if (c == st.connections.end() || c->second.peer_devices.empty()) return false;
  for (const auto& [vol, pd] : c->second.peer_devices) {
    if (pd.peer_disk > DiskState::kOutdated) return false;
  }
  return true;
}

// The best of our own disks (DRBD's conn_highest_disk); Diskless without any.
DiskState HighestDisk(const ResourceState& st) {
  DiskState best = DiskState::kDiskless;
  for (const auto& [vol, d] : st.devices) best = std::max(best, d.disk);
  return best;
}

}  // namespace

bool FencingActive(const std::string& policy) {
  return ParsePolicy(policy) != Policy::kDontCare;
}

std::vector<int> PeersToFenceBeforePromote(const ResourceState& st,
                                           const std::map<int, std::string>& fencing) {
  std::vector<int> out;
  for (const auto& [peer, policy] : fencing) {
    if (!FencingActive(policy)) continue;
    auto c = st.connections.find(peer);
    if (c != st.connections.end() && c->second.conn == ConnState::kConnected) continue;
    // Never connected, or a disk not known to be Outdated: it may hold newer data.
    if (!PeerFenced(st, peer)) out.push_back(peer);
  }
  return out;
}

std::string UnfencedPeersReason(const ResourceState& st, const std::vector<int>& peers) {
  std::string names;
  for (int id : peers) {
    auto c = st.connections.find(id);
    std::string who = c != st.connections.end() && !c->second.name.empty()
                          ? fmt::format("node {} ({})", id, c->second.name)
                          : fmt::format("node {}", id);
    names += fmt::format("{}{}", names.empty() ? "" : ", ", who);
  }
  if (names.empty()) return {};
  return fmt::format(
      "Refusing to be Primary while peer is not outdated ({} not connected, fencing on, its disk "
      "not known to be Outdated; `primary` runs fence-peer for it)",
      names);
}

FenceVerdict InterpretFencePeerExit(int code, bool my_disk_up_to_date) {
  FenceVerdict v;
  switch (code) {
    case 3:
      v.what = "peer is inconsistent or worse";
      v.peer_disk = DiskState::kInconsistent;
      break;
    case 4:
      v.what = "peer was fenced";
      v.peer_disk = DiskState::kOutdated;
      break;
    case 5:
      if (my_disk_up_to_date) {
        v.what = "peer is unreachable, assumed to be dead";
        v.peer_disk = DiskState::kOutdated;
      } else {
        v.what = "peer unreachable, doing nothing since disk != UpToDate";
      }
      break;
    case 6:
      v.what = "peer is active";
      v.outdate_self = true;
      break;
    case 7:
      v.what = "peer was stonithed";
      v.peer_disk = DiskState::kOutdated;
      break;
    default:
      v.what = fmt::format("fence-peer helper broken, returned {}", code);
      v.broken = true;
      break;
  }
  return v;
}

namespace {

Policy FencingPolicy(const Resource& r, int peer) {
  auto p = r.peers().find(peer);
  if (p == r.peers().end()) return Policy::kDontCare;
  auto f = p->second.net_opts.find("fencing");
  return f == p->second.net_opts.end() ? Policy::kDontCare : ParsePolicy(f->second);
}

std::string_view PolicyName(Policy p) {
  switch (p) {
    case Policy::kDontCare: return "dont-care";
    case Policy::kResourceOnly: return "resource-only";
    case Policy::kResourceAndStonith: return "resource-and-stonith";
  }
  return "?";
}

// The peer's disk on some volume was UpToDate while connected.
bool PeerWasUpToDate(const ConnectionState& c) {
  for (const auto& [vol, pd] : c.peer_devices) {
    if (pd.peer_disk == DiskState::kUpToDate) return true;
  }
  return false;
}

struct FenceState {
  std::set<int> fenced;   // peers fence-peer ran for; unfence-peer once they are UpToDate
  std::set<int> running;  // fence-peer handlers still running
};

void ReleaseIo(Resource* r) {
  if (!r->state().susp_fencing) return;
  Status ch = r->engine().Change(
      "fence-peer done", [](ResourceState& st) { st.susp_fencing = false; }, {.internal = true});
  if (!ch.ok()) {
    spdlog::warn("{}: fence-peer: cannot resume I/O: {}", r->name(), ch.message());
    return;
  }
  spdlog::info("{}: I/O resumed after fencing", r->name());
  for (const auto& [vol, dev] : r->devices()) dev->ReleaseHeld();
}

// The peer's disks go down to `disk` (never up), unless it reconnected meanwhile: then
// the peer tells (DRBD drops the handler's verdict too).
void DowngradePeerDisks(Resource* r, int peer, DiskState disk) {
  Status ch =
      r->engine().Change("fence-peer",
                         [&](ResourceState& st) {
                           auto c = st.connections.find(peer);
                           if (c == st.connections.end() || c->second.conn == ConnState::kConnected)
                             return;
                           for (auto& [vol, pd] : c->second.peer_devices) {
                             if (pd.peer_disk > disk) pd.peer_disk = disk;
                           }
                         },
                         {.internal = true});
  if (!ch.ok()) spdlog::warn("{}: fence-peer: {}", r->name(), ch.message());
}

// Exit 6, "Peer is primary, outdating myself": UpToDate/Consistent disks go Outdated
// (downgrade only, on disk too). The state engine refuses it on a Primary, as DRBD's
// does; returns what happened, for the log and the refusal.
std::string OutdateMyself(Resource* r) {
  // Copied first: each Outdate replaces the engine's state.
  std::map<int, DiskState> disks;
  for (const auto& [vol, d] : r->state().devices) {
    if (d.disk == DiskState::kUpToDate || d.disk == DiskState::kConsistent) disks[vol] = d.disk;
  }
  std::string out;
  for (const auto& [vol, disk] : disks) {
    Status s = r->Outdate(vol);
    std::string one = s.ok() ? fmt::format("volume {} is Outdated now", vol)
                             : fmt::format("volume {} stays {}: {}", vol, Name(disk), s.message());
    out += fmt::format("{}{}", out.empty() ? "" : "; ", one);
  }
  return out.empty() ? "no UpToDate or Consistent disk to outdate" : out;
}

// Acts on fence-peer's exit code as DRBD does (drbd_nl.c, conn_try_outdate_peer).
void OnFenceDone(Resource* r, const std::shared_ptr<FenceState>& fs, int peer, Policy policy,
                 int code) {
  fs->running.erase(peer);
  FenceVerdict v = InterpretFencePeerExit(code, HighestDisk(r->state()) == DiskState::kUpToDate);
  if (code == 7 && policy != Policy::kResourceAndStonith) {
    spdlog::error("{}: fence-peer() = 7 && fencing != resource-and-stonith", r->name());
  }
  if (v.peer_disk) {
    spdlog::info("{}: fence-peer for node-id {} returned {} ({}): peer-disk {}", r->name(), peer,
                 code, v.what, Name(*v.peer_disk));
    DowngradePeerDisks(r, peer, *v.peer_disk);
    if (fs->running.empty()) ReleaseIo(r);
    return;
  }
  std::string what = v.what;
  if (v.outdate_self) {
    // On a Primary the engine refuses (a Primary keeps an UpToDate disk): logged as such.
    spdlog::warn("{}: fence-peer for node-id {} returned 6: Peer is primary, outdating myself",
                 r->name(), peer);
    what = fmt::format("peer is active: {}", OutdateMyself(r));
  }
  if (policy == Policy::kResourceAndStonith) {
    spdlog::error(
        "{}: fence-peer for node-id {} returned {} ({}): I/O stays suspended until resume-io",
        r->name(), peer, code, what);
  } else {
    spdlog::error("{}: fence-peer for node-id {} returned {} ({})", r->name(), peer, code, what);
  }
}

void OnStateChange(Resource* r, const std::shared_ptr<FenceState>& fs, const ResourceState& o,
                   const ResourceState& n) {
  for (const auto& entry : n.connections) {
    int peer = entry.first;  // a plain variable: clang 14 cannot capture a structured binding
    const auto& c = entry.second;
    auto oc = o.connections.find(peer);
    if (oc == o.connections.end()) continue;
    bool lost = oc->second.conn == ConnState::kConnected && c.conn != ConnState::kConnected;
    if (lost && o.role == Role::kPrimary && PeerWasUpToDate(oc->second)) {
      Policy policy = FencingPolicy(*r, peer);
      if (policy == Policy::kDontCare || fs->running.count(peer)) continue;
      fs->running.insert(peer);
      fs->fenced.insert(peer);
      std::weak_ptr<FenceState> weak = fs;
      spdlog::warn("{}: lost UpToDate peer node-id {} as Primary: fencing {}: running fence-peer",
                   r->name(), peer, PolicyName(policy));
      // Not from inside the listener: the engine is still notifying.
      asio::post(*r->env().io, [r, weak, peer, policy] {
        auto fs = weak.lock();
        if (!fs) return;
        if (policy == Policy::kResourceAndStonith && !r->state().susp_fencing) {
          Status ch = r->engine().Change(
              "fencing", [](ResourceState& st) { st.susp_fencing = true; }, {.internal = true});
          if (ch.ok()) spdlog::warn("{}: I/O suspended while fence-peer runs", r->name());
        }
        r->RunHandler(HandlerCall{.handler = "fence-peer",
                                  .peer_node_id = peer,
                                  .extra_env = {{"BSR_FENCING", std::string(PolicyName(policy))}}},
                      [r, weak, peer, policy](int code) {
                        if (auto fs = weak.lock()) OnFenceDone(r, fs, peer, policy, code);
                      });
      });
    }
    // unfence-peer: a fenced peer is UpToDate again (after its resync).
    if (fs->fenced.count(peer) && c.conn == ConnState::kConnected) {
      bool was = false, now = true;
      for (const auto& [vol, pd] : c.peer_devices) {
        auto opd = oc->second.peer_devices.find(vol);
        if (opd != oc->second.peer_devices.end() && opd->second.peer_disk == DiskState::kUpToDate &&
            oc->second.conn == ConnState::kConnected) {
          was = true;
        }
        if (pd.peer_disk != DiskState::kUpToDate) now = false;
      }
      if (now && !was && !c.peer_devices.empty()) {
        fs->fenced.erase(peer);
        spdlog::info("{}: fenced peer node-id {} is UpToDate again: running unfence-peer",
                     r->name(), peer);
        asio::post(*r->env().io, [r, weak = std::weak_ptr<FenceState>(fs), peer] {
          if (weak.lock())
            r->RunHandler(HandlerCall{.handler = "unfence-peer", .peer_node_id = peer});
        });
      }
    }
  }
}

}  // namespace

std::map<int, std::string> FencingPolicies(const Resource& r) {
  std::map<int, std::string> out;
  for (const auto& [id, peer] : r.peers()) {
    auto f = peer.net_opts.find("fencing");
    out[id] = f == peer.net_opts.end() ? "dont-care" : f->second;
  }
  return out;
}

namespace {

struct PromoteFencing {
  Resource* r = nullptr;
  std::vector<int> peers;
  size_t next = 0;
  std::weak_ptr<void> alive;
  std::vector<std::string> failures;
  std::function<void(Status)> done;
};

void FenceNext(const std::shared_ptr<PromoteFencing>& pf);

void OnPromoteFenceDone(const std::shared_ptr<PromoteFencing>& pf, int peer, int code) {
  if (!pf->alive.lock()) return;
  Resource* r = pf->r;
  FenceVerdict v = InterpretFencePeerExit(code, HighestDisk(r->state()) == DiskState::kUpToDate);
  std::string who = r->PeerName(peer);
  if (v.broken) {
    spdlog::error("{}: promotion: {} for {}", r->name(), v.what, who);
    pf->failures.push_back(fmt::format("{} for {}", v.what, who));
    return FenceNext(pf);
  }
  spdlog::info("{}: promotion: fence-peer for {} returned {} ({})", r->name(), who, code, v.what);
  if (v.outdate_self) {
    spdlog::warn("{}: promotion: Peer is primary, outdating myself", r->name());
    std::string what = OutdateMyself(r);
    spdlog::warn("{}: {}", r->name(), what);
    pf->failures.push_back(fmt::format(
        "fence-peer for {} returned 6: peer is Primary, outdating myself ({})", who, what));
    return FenceNext(pf);
  }
  if (v.peer_disk) DowngradePeerDisks(r, peer, *v.peer_disk);
  if (!PeerFenced(r->state(), peer)) {
    pf->failures.push_back(
        fmt::format("fence-peer for {} returned {} ({}): its disk is still not known to be "
                    "Outdated",
                    who, code, v.what));
  }
  FenceNext(pf);
}

void FenceNext(const std::shared_ptr<PromoteFencing>& pf) {
  Resource* r = pf->r;
  if (pf->next == pf->peers.size()) {
    auto done = std::move(pf->done);
    if (pf->failures.empty()) return done(Status::Ok());
    std::string why;
    for (const auto& f : pf->failures) why += fmt::format("{}{}", why.empty() ? "" : "; ", f);
    return done(Error(Errc::kState, "State change failed: {}", why));
  }
  int peer = pf->peers[pf->next++];
  std::string who = r->PeerName(peer);
  if (r->state().connections.count(peer) &&
      r->state().connections.at(peer).conn == ConnState::kConnected) {
    return FenceNext(pf);  // connected meanwhile: it votes in the two-phase commit
  }
  if (HighestDisk(r->state()) < DiskState::kConsistent) {
    // conn_try_outdate_peer: no fencing without a Consistent or UpToDate disk of our own.
    pf->failures.push_back(
        fmt::format("not fencing {}: no local disk is Consistent or UpToDate", who));
    return FenceNext(pf);
  }
  Policy policy = FencingPolicy(*r, peer);
  spdlog::warn(
      "{}: promotion: {} is not connected and its disk is not known to be Outdated: "
      "fencing {}: running fence-peer",
      r->name(), who, PolicyName(policy));
  r->RunHandler(HandlerCall{.handler = "fence-peer",
                            .peer_node_id = peer,
                            .extra_env = {{"BSR_FENCING", std::string(PolicyName(policy))}}},
                [pf, peer](int code) { OnPromoteFenceDone(pf, peer, code); });
}

}  // namespace

void FenceBeforePromote(Resource* r, std::vector<int> peers, std::weak_ptr<void> alive,
                        std::function<void(Status)> done) {
  auto pf = std::make_shared<PromoteFencing>();
  pf->r = r;
  pf->peers = std::move(peers);
  pf->alive = std::move(alive);
  pf->done = std::move(done);
  FenceNext(pf);
}

void ForceOutdateUnfencedPeers(Resource* r) {
  for (int peer : PeersToFenceBeforePromote(r->state(), FencingPolicies(*r))) {
    spdlog::warn("{}: Forced to consider {} as Outdated!", r->name(), r->PeerName(peer));
    DowngradePeerDisks(r, peer, DiskState::kOutdated);
  }
}

void InstallFencing(Resource* r) {
  auto fs = std::make_shared<FenceState>();
  r->engine().Subscribe(
      [r, fs](const ResourceState& o, const ResourceState& n) { OnStateChange(r, fs, o, n); });
}

}  // namespace bsr::replication
