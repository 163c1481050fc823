#include "replication/resource.h"

#include <spdlog/spdlog.h>

#include "replication/twopc.h"

namespace bsr::replication {

Resource::Resource(std::string name, int node_id, std::map<std::string, std::string> opts,
                   DeviceEnv env)
    : name_(std::move(name)), node_id_(node_id), opts_(std::move(opts)), env_(env), engine_([&] {
        ResourceState s;
        s.name = name_;
        s.node_id = node_id_;
        s.role = Role::kSecondary;
        return s;
      }()) {
  InstallFencing(this);
}

Resource::~Resource() {
  for (auto& [id, c] : connections_) c->Stop("resource removed");
}

std::shared_ptr<Connection> Resource::connection(int node_id) const {
  auto it = connections_.find(node_id);
  return it == connections_.end() ? nullptr : it->second;
}

Status Resource::SetOptions(const std::map<std::string, std::string>& opts) {
  for (const auto& [k, v] : opts) opts_[k] = v;
  return Status::Ok();
}

bool Resource::auto_promote() const {
  auto it = opts_.find("auto-promote");
  return it == opts_.end() || it->second == "yes" || it->second == "true" || it->second == "on";
}

std::vector<int> Resource::peer_node_ids() const {
  std::vector<int> ids;
  for (const auto& [id, p] : peers_) ids.push_back(id);
  return ids;
}

std::string Resource::PeerName(int node_id) const {
  auto p = peers_.find(node_id);
  if (p == peers_.end() || p->second.name.empty()) return fmt::format("node {}", node_id);
  return fmt::format("node {} ({})", node_id, p->second.name);
}

void Resource::RunHandler(HandlerCall call, std::function<void(int)> done) {
  call.resource = name_;
  call.my_node_id = node_id_;
  if (call.peer_node_id >= 0 && call.peer_name.empty()) {
    auto p = peers_.find(call.peer_node_id);
    if (p != peers_.end()) call.peer_name = p->second.name;
  }
  if (!env_.handlers) {
    if (done) asio::post(*env_.io, [done] { done(-1); });
    return;
  }
  env_.handlers->Run(call, std::move(done));
}

Result<std::shared_ptr<Device>> Resource::AddDevice(int volume, int minor) {
  if (devices_.count(volume)) {
    return Error(Errc::kExists, "resource {} already has volume {}", name_, volume);
  }
  auto dev = std::make_shared<Device>(this, env_, volume, minor);
  BSR_RETURN_IF_ERROR(dev->StartExport());
  Status s = engine_.Change("new-minor", [&](ResourceState& st) {
    DeviceState d;
    d.volume = volume;
    d.minor = minor;
    d.disk = DiskState::kDiskless;
    st.devices[volume] = d;
    for (auto& [id, c] : st.connections) {
      PeerDeviceState p;
      p.volume = volume;
      c.peer_devices[volume] = p;
    }
  });
  if (!s.ok()) {
    dev->StopExport([dev] {});
    return s;
  }
  devices_[volume] = dev;
  return dev;
}

Status Resource::RemoveDevice(int volume) {
  auto it = devices_.find(volume);
  if (it == devices_.end())
    return Error(Errc::kNotFound, "resource {} has no volume {}", name_, volume);
  if (it->second->attached()) {
    return Error(Errc::kState, "volume {} of {} still has a disk attached; detach it first", volume,
                 name_);
  }
  BSR_RETURN_IF_ERROR(engine_.Change("del-minor", [&](ResourceState& st) {
    st.devices.erase(volume);
    for (auto& [id, c] : st.connections) c.peer_devices.erase(volume);
  }));
  auto dev = it->second;
  devices_.erase(it);
  dev->StopExport([dev] {});
  return Status::Ok();
}

std::shared_ptr<Device> Resource::device(int volume) const {
  auto it = devices_.find(volume);
  return it == devices_.end() ? nullptr : it->second;
}

Status Resource::AddPeer(PeerSpec peer) {
  if (peer.node_id == node_id_) {
    return Error(Errc::kInvalidArgument, "peer node-id {} is this node's own node-id",
                 peer.node_id);
  }
  if (peers_.count(peer.node_id)) {
    return Error(Errc::kExists, "resource {} already has a connection to node-id {}", name_,
                 peer.node_id);
  }
  if (peer.name.empty()) peer.name = fmt::format("peer{}", peer.node_id);
  BSR_RETURN_IF_ERROR(engine_.Change("new-peer", [&](ResourceState& st) {
    ConnectionState c;
    c.peer_node_id = peer.node_id;
    c.name = peer.name;
    c.conn = ConnState::kStandAlone;
    for (const auto& [vol, d] : st.devices) {
      PeerDeviceState p;
      p.volume = vol;
      c.peer_devices[vol] = p;
    }
    st.connections[peer.node_id] = c;
  }));
  for (auto& [vol, dev] : devices_) BSR_RETURN_IF_ERROR(dev->EnsurePeerSlot(peer.node_id));
  peers_[peer.node_id] = std::move(peer);
  return Status::Ok();
}

Status Resource::RemovePeer(int node_id) {
  if (!peers_.count(node_id)) {
    return Error(Errc::kNotFound, "resource {} has no connection to node-id {}", name_, node_id);
  }
  if (auto c = connection(node_id)) {
    c->Stop("peer removed");
    connections_.erase(node_id);
  }
  BSR_RETURN_IF_ERROR(
      engine_.Change("del-peer", [&](ResourceState& st) { st.connections.erase(node_id); }));
  peers_.erase(node_id);
  return Status::Ok();
}

Status Resource::AddPath(int node_id, PathSpec path) {
  auto it = peers_.find(node_id);
  if (it == peers_.end()) {
    return Error(Errc::kNotFound, "resource {} has no connection to node-id {}", name_, node_id);
  }
  for (const auto& p : it->second.paths) {
    if (p.local == path.local && p.remote == path.remote) {
      return Error(Errc::kExists, "path {} -> {} already exists", path.local, path.remote);
    }
  }
  it->second.paths.push_back(std::move(path));
  return Status::Ok();
}

Status Resource::RemovePath(int node_id, const PathSpec& path) {
  auto it = peers_.find(node_id);
  if (it == peers_.end()) {
    return Error(Errc::kNotFound, "resource {} has no connection to node-id {}", name_, node_id);
  }
  auto& paths = it->second.paths;
  for (auto p = paths.begin(); p != paths.end(); ++p) {
    if (p->local == path.local && p->remote == path.remote) {
      paths.erase(p);
      return Status::Ok();
    }
  }
  return Error(Errc::kNotFound, "no path {} -> {}", path.local, path.remote);
}

Status Resource::SetNetOptions(int node_id, const std::map<std::string, std::string>& opts) {
  auto it = peers_.find(node_id);
  if (it == peers_.end()) {
    return Error(Errc::kNotFound, "resource {} has no connection to node-id {}", name_, node_id);
  }
  auto merged = it->second.net_opts;
  for (const auto& [k, v] : opts) merged[k] = v;
  // Bad values or options a connected peer cannot change leave everything as it was.
  if (auto c = connection(node_id)) {
    BSR_RETURN_IF_ERROR(c->ApplyNetOptions(merged));
  } else {
    BSR_RETURN_IF_ERROR(
        ParseNetConfig(merged).status().WithContext(fmt::format("net-options {}", name_)));
  }
  it->second.net_opts = std::move(merged);
  return Status::Ok();
}

Status Resource::SetPeerDeviceOptions(int node_id, int volume,
                                      const std::map<std::string, std::string>& opts) {
  auto it = peers_.find(node_id);
  if (it == peers_.end()) {
    return Error(Errc::kNotFound, "resource {} has no connection to node-id {}", name_, node_id);
  }
  if (!devices_.count(volume))
    return Error(Errc::kNotFound, "resource {} has no volume {}", name_, volume);
  for (const auto& [k, v] : opts) it->second.peer_device_opts[volume][k] = v;
  return Status::Ok();
}

Status Resource::Connect(int node_id) {
  auto it = peers_.find(node_id);
  if (it == peers_.end()) {
    return Error(Errc::kNotFound, "resource {} has no connection to node-id {}", name_, node_id);
  }
  if (it->second.paths.empty()) {
    return Error(Errc::kState, "connection to {} has no path (new-path first)", it->second.name);
  }
  if (auto c = connection(node_id)) {
    if (state().connections.at(node_id).conn != ConnState::kStandAlone) {
      return Error(Errc::kState, "connection to {} is already {}", it->second.name,
                   Name(state().connections.at(node_id).conn));
    }
    connections_.erase(node_id);
  }
  auto c = std::make_shared<Connection>(this, node_id);
  BSR_RETURN_IF_ERROR(c->Start().WithContext(fmt::format("connect {} {}", name_, it->second.name)));
  connections_[node_id] = c;
  return Status::Ok();
}

Status Resource::Disconnect(int node_id, bool /*force*/) {
  if (!peers_.count(node_id)) {
    return Error(Errc::kNotFound, "resource {} has no connection to node-id {}", name_, node_id);
  }
  if (auto c = connection(node_id)) {
    c->Stop("disconnect requested");
    connections_.erase(node_id);
  }
  return engine_.Change("disconnect", [&](ResourceState& st) {
    auto& c = st.connections[node_id];
    c.conn = ConnState::kStandAlone;
    c.peer_role = Role::kUnknown;
    for (auto& [vol, p] : c.peer_devices) {
      p.repl = ReplState::kOff;
      p.peer_disk = DiskState::kDUnknown;
    }
  });
}

void Resource::Promote(bool force, std::function<void(Status)> done) {
  if (state().role == Role::kPrimary) return done(Status::Ok());
  twopc().Promote(
      force, [this, force] { return Promote(force); }, std::move(done));
}

Status Resource::Promote(bool force) {
  if (state().role == Role::kPrimary) return Status::Ok();
  // Refused while this node agreed to a peer's promotion (two-phase commit, twopc.h).
  BSR_RETURN_IF_ERROR(twopc().CheckLocalPromote().WithContext("primary " + name_));
  auto mutate = [force](ResourceState& st) {
    st.role = Role::kPrimary;
    if (!force) return;
    for (auto& [vol, d] : st.devices) {
      if (HasDisk(d.disk) && d.disk != DiskState::kAttaching) d.disk = DiskState::kUpToDate;
    }
  };
  BSR_RETURN_IF_ERROR(engine_.Check("primary", mutate));
  for (auto& [vol, dev] : devices_) {
    Status s = dev->OnPromote(force);
    if (!s.ok()) return s.WithContext(fmt::format("primary {}", name_));
  }
  BSR_RETURN_IF_ERROR(engine_.Change("primary", mutate));
  // Peers learn the new UUIDs; with --force an Inconsistent peer gets a full sync.
  for (auto& [id, c] : connections_) c->OnPromoted(force);
  return Status::Ok();
}

Status Resource::Demote() {
  if (state().role == Role::kSecondary) return Status::Ok();
  auto mutate = [](ResourceState& st) { st.role = Role::kSecondary; };
  BSR_RETURN_IF_ERROR(engine_.Check("secondary", mutate));
  for (auto& [vol, dev] : devices_) {
    if (dev->open_count() > 0) {
      return Error(Errc::kState,
                   "secondary {}: State change failed: Device is held open by someone "
                   "(volume {}, {} NBD client(s))",
                   name_, vol, dev->open_count());
    }
  }
  for (auto& [vol, dev] : devices_) {
    Status s = dev->OnDemote();
    if (!s.ok()) return s.WithContext(fmt::format("secondary {}", name_));
  }
  return engine_.Change("secondary", mutate);
}

Status Resource::Attach(int volume, const AttachSpec& spec) {
  auto dev = device(volume);
  if (!dev) return Error(Errc::kNotFound, "resource {} has no volume {}", name_, volume);
  if (dev->attached()) {
    return Error(Errc::kState, "minor {} already has a disk attached ({})", dev->minor(),
                 dev->attach_spec().disk);
  }
  BSR_RETURN_IF_ERROR(engine_.Change(
      "attach", [&](ResourceState& st) { st.devices[volume].disk = DiskState::kAttaching; }));
  auto ds = dev->Attach(spec, peer_node_ids());
  if (!ds.ok()) {
    engine_
        .Change("attach",
                [&](ResourceState& st) { st.devices[volume].disk = DiskState::kDiskless; },
                {.internal = true})
        .ok();
    return ds.status();
  }
  return engine_.Change("attach",
                        [&](ResourceState& st) {
                          auto& d = st.devices[volume];
                          d.disk = *ds;
                          d.stats.size_sectors = dev->size_bytes() / 512;
                          for (auto& [id, c] : st.connections) {
                            auto p = c.peer_devices.find(volume);
                            if (p != c.peer_devices.end()) {
                              p->second.stats.out_of_sync_sectors = dev->OutOfSyncSectors(id);
                            }
                          }
                        },
                        {.internal = true});
}

Status Resource::Detach(int volume) {
  auto dev = device(volume);
  if (!dev) return Error(Errc::kNotFound, "resource {} has no volume {}", name_, volume);
  if (!dev->attached()) return Error(Errc::kState, "minor {} has no disk attached", dev->minor());
  DiskState before = state().devices.at(volume).disk;
  BSR_RETURN_IF_ERROR(engine_.Change(
      "detach", [&](ResourceState& st) { st.devices[volume].disk = DiskState::kDetaching; }));
  Status s = dev->Detach();
  if (!s.ok()) {
    engine_
        .Change("detach", [&](ResourceState& st) { st.devices[volume].disk = before; },
                {.internal = true})
        .ok();
    return s;
  }
  ForgetReceivedWrites(volume);
  return engine_.Change("detach",
                        [&](ResourceState& st) { st.devices[volume].disk = DiskState::kDiskless; },
                        {.internal = true});
}

}  // namespace bsr::replication
