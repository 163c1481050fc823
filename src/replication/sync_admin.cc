// Admin requests that start or steer a resync: invalidate, invalidate-remote and
// connect --discard-my-data (Resource and Connection members). io thread only.
#include <spdlog/spdlog.h>

#include "replication/connection.h"
#include "replication/connection_internal.h"
#include "replication/device.h"
#include "replication/resource.h"

namespace bsr::replication {

namespace {

// The peer device is connected and idle: no resync, verify or bitmap exchange running.
Status CheckIdle(const ResourceState& st, int peer, int volume, std::string_view what) {
  auto c = st.connections.find(peer);
  if (c == st.connections.end() || c->second.conn != ConnState::kConnected) {
    return Error(Errc::kState,
                 "{}: State change failed: Need a connection to start verify or resync (peer "
                 "node-id {} is {})",
                 what, peer, c == st.connections.end() ? "not configured" : Name(c->second.conn));
  }
  auto pd = c->second.peer_devices.find(volume);
  if (pd == c->second.peer_devices.end() || pd->second.repl != ReplState::kEstablished) {
    return Error(Errc::kState,
                 "{}: State change failed: a resync or verify with peer node-id {} "
                 "is running ({})",
                 what, peer,
                 pd == c->second.peer_devices.end() ? "no peer device" : Name(pd->second.repl));
  }
  return Status::Ok();
}

}  // namespace

Status Connection::Invalidate(int volume) {
  auto s = session_;
  auto dev = device(volume);
  if (!s || !s->established || s->closed || !dev || !dev->attached()) {
    return Error(Errc::kState, "invalidate: not connected to peer node-id {}", peer_id_);
  }
  if (pd(volume).sync != PeerDevice::Sync::kNone) {
    return Error(Errc::kState, "invalidate: a resync with peer node-id {} is running", peer_id_);
  }
  spdlog::info("{}/{}: invalidate: full sync of the local disk from the peer", Tag(), volume);
  BeginSync(s, volume, false, true);
  return Status::Ok();
}

Status Connection::InvalidateRemote(int volume) {
  auto s = session_;
  auto dev = device(volume);
  if (!s || !s->established || s->closed || !dev || !dev->attached()) {
    return Error(Errc::kState, "invalidate-remote: not connected to peer node-id {}", peer_id_);
  }
  if (pd(volume).sync != PeerDevice::Sync::kNone) {
    return Error(Errc::kState, "invalidate-remote: a resync with peer node-id {} is running",
                 peer_id_);
  }
  spdlog::info("{}/{}: invalidate-remote: full sync of the peer's disk from this node", Tag(),
               volume);
  BeginSync(s, volume, true, true);
  return Status::Ok();
}

Status Resource::ConnectDiscardMyData(int node_id) {
  BSR_RETURN_IF_ERROR(Connect(node_id));
  // Connect only started dialing: no handshake can have decided anything yet.
  if (auto c = connection(node_id)) c->SetDiscardMyData(true);
  spdlog::info(
      "{}: connect to node-id {} with --discard-my-data: this node's data is the one "
      "discarded if a split brain is found",
      name_, node_id);
  return Status::Ok();
}

Status Resource::Invalidate(int volume, int peer_node_id) {
  std::string what = fmt::format("invalidate {}/{}", name_, volume);
  auto dev = device(volume);
  if (!dev) return Error(Errc::kNotFound, "{}: no such volume", what);
  if (!dev->attached()) return Error(Errc::kState, "{}: no disk attached (Diskless)", what);
  if (state().role == Role::kPrimary) {
    return Error(Errc::kState,
                 "{}: refused on a Primary: its reads are served from the local disk, which "
                 "would be Inconsistent; demote it first",
                 what);
  }
  // The sync source: the given peer, else the first connected UpToDate one.
  std::vector<int> candidates;
  if (peer_node_id >= 0) {
    candidates.push_back(peer_node_id);
  } else {
    candidates = peer_node_ids();
  }
  Status last = Error(Errc::kState,
                      "{}: State change failed: Need a connection to a peer with UpToDate data "
                      "to start a resync",
                      what);
  for (int id : candidates) {
    Status idle = CheckIdle(state(), id, volume, what);
    if (!idle.ok()) {
      if (peer_node_id >= 0) return idle;
      continue;
    }
    const auto& pds = state().connections.at(id).peer_devices.at(volume);
    if (pds.peer_disk != DiskState::kUpToDate) {
      last = Error(Errc::kState,
                   "{}: State change failed: peer node-id {} is {}, not UpToDate: there is "
                   "nothing to sync from",
                   what, id, Name(pds.peer_disk));
      if (peer_node_id >= 0) return last;
      continue;
    }
    auto c = connection(id);
    if (!c) continue;
    return c->Invalidate(volume);
  }
  return last;
}

Status Resource::InvalidateRemote(int peer_node_id, int volume) {
  std::string what = fmt::format("invalidate-remote {} {} {}", name_, peer_node_id, volume);
  auto dev = device(volume);
  if (!dev) return Error(Errc::kNotFound, "{}: no such volume", what);
  if (!peers_.count(peer_node_id)) {
    return Error(Errc::kNotFound, "{}: no connection to node-id {}", what, peer_node_id);
  }
  auto d = state().devices.find(volume);
  if (!dev->attached() || d == state().devices.end() || d->second.disk != DiskState::kUpToDate) {
    return Error(Errc::kState,
                 "{}: State change failed: the local disk is {}, a full sync needs UpToDate data "
                 "here",
                 what, d == state().devices.end() ? "missing" : Name(d->second.disk));
  }
  BSR_RETURN_IF_ERROR(CheckIdle(state(), peer_node_id, volume, what));
  if (state().connections.at(peer_node_id).peer_role == Role::kPrimary) {
    return Error(Errc::kState,
                 "{}: State change failed: peer node-id {} is Primary and cannot become "
                 "SyncTarget",
                 what, peer_node_id);
  }
  auto c = connection(peer_node_id);
  if (!c) return Error(Errc::kState, "{}: not connected", what);
  return c->InvalidateRemote(volume);
}

}  // namespace bsr::replication
