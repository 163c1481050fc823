// DRBD's `fencing` net option and its fence-peer / unfence-peer handlers: a Primary that
// loses a peer whose disk was UpToDate runs fence-peer (resource-and-stonith: I/O is
// suspended until the handler succeeds or `resume-io`); unfence-peer runs when a fenced
// peer is UpToDate again. A state-engine listener of the Resource; io thread only.
#include <spdlog/spdlog.h>

#include <memory>
#include <set>

#include "replication/device.h"
#include "replication/resource.h"

namespace bsr::replication {

namespace {

enum class Policy { kDontCare, kResourceOnly, kResourceAndStonith };

Policy FencingPolicy(const Resource& r, int peer) {
  auto p = r.peers().find(peer);
  if (p == r.peers().end()) return Policy::kDontCare;
  auto f = p->second.net_opts.find("fencing");
  if (f == p->second.net_opts.end()) return Policy::kDontCare;
  if (f->second == "resource-only") return Policy::kResourceOnly;
  if (f->second == "resource-and-stonith") return Policy::kResourceAndStonith;
  return Policy::kDontCare;
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

// Acts on fence-peer's exit code as DRBD does (drbd_nl.c, conn_try_outdate_peer).
void OnFenceDone(Resource* r, const std::shared_ptr<FenceState>& fs, int peer, Policy policy,
                 int code) {
  fs->running.erase(peer);
  DiskState peer_disk = DiskState::kDUnknown;
  std::string_view what;
  bool resolved = true;
  switch (code) {
    case 3:
      what = "peer is already Inconsistent or worse";
      peer_disk = DiskState::kInconsistent;
      break;
    case 4:
      what = "peer was fenced (outdated)";
      peer_disk = DiskState::kOutdated;
      break;
    case 5:
      what = "peer is down or unreachable; it counts as outdated";
      peer_disk = DiskState::kOutdated;
      break;
    case 6:
      what = "peer is Primary: fencing refused";
      resolved = false;
      break;
    case 7:
      what = "peer was stonithed";
      peer_disk = DiskState::kOutdated;
      break;
    default:
      what = "handler failed";
      resolved = false;
      break;
  }
  if (resolved) {
    spdlog::info("{}: fence-peer for node-id {} returned {} ({}): peer-disk {}", r->name(), peer,
                 code, what, Name(peer_disk));
    Status ch = r->engine().Change(
        "fence-peer",
        [&](ResourceState& st) {
          auto c = st.connections.find(peer);
          if (c == st.connections.end() || c->second.conn == ConnState::kConnected) {
            return;  // reconnected meanwhile: the peer tells
          }
          for (auto& [vol, pd] : c->second.peer_devices) {
            pd.peer_disk = peer_disk;
          }
        },
        {.internal = true});
    if (!ch.ok()) spdlog::warn("{}: fence-peer: {}", r->name(), ch.message());
    if (fs->running.empty()) ReleaseIo(r);
    return;
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
  for (const auto& [peer, c] : n.connections) {
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

void InstallFencing(Resource* r) {
  auto fs = std::make_shared<FenceState>();
  r->engine().Subscribe(
      [r, fs](const ResourceState& o, const ResourceState& n) { OnStateChange(r, fs, o, n); });
}

}  // namespace bsr::replication
