#include "replication/node.h"

#include <spdlog/spdlog.h>

namespace bsr::replication {

Node::Node(asio::io_context& io, NodeOptions options) : io_(io), options_(std::move(options)) {}

Node::~Node() {
  meta_pool_.join();
}

Result<Resource*> Node::NewResource(const std::string& name, int node_id,
                                    const std::map<std::string, std::string>& opts) {
  if (name.empty() || name.find_first_of("/ \t") != std::string::npos) {
    return Error(Errc::kInvalidArgument, "invalid resource name '{}'", name);
  }
  if (resources_.count(name)) return Error(Errc::kExists, "resource {} already exists", name);
  if (node_id < 0 || node_id > 31) {
    return Error(Errc::kInvalidArgument, "node-id {} out of range 0..31", node_id);
  }
  DeviceEnv env{&io_, &meta_pool_, options_.run_dir};
  auto res = std::make_unique<Resource>(name, node_id, opts, env);
  Resource* r = res.get();
  r->engine().Subscribe([this](const ResourceState& o, const ResourceState& n) { Notify(&o, &n); });
  resources_[name] = std::move(res);
  Notify(nullptr, &r->state());
  spdlog::info("{}: created (node-id {})", name, node_id);
  return r;
}

Status Node::DelResource(const std::string& name) {
  BSR_ASSIGN_OR_RETURN(Resource * r, GetResource(name));
  if (!r->devices().empty()) {
    return Error(Errc::kState, "resource {} still has volumes; del-minor them (or down) first",
                 name);
  }
  if (!r->peers().empty()) {
    return Error(Errc::kState, "resource {} still has connections; del-peer them (or down) first",
                 name);
  }
  ResourceState last = r->state();
  resources_.erase(name);
  Notify(&last, nullptr);
  spdlog::info("{}: deleted", name);
  return Status::Ok();
}

Status Node::NewMinor(const std::string& res, int minor, int volume) {
  BSR_ASSIGN_OR_RETURN(Resource * r, GetResource(res));
  if (minor < 0 || minor > 1048575) {
    return Error(Errc::kInvalidArgument, "minor {} out of range 0..1048575", minor);
  }
  if (volume < 0 || volume > 65534) {
    return Error(Errc::kInvalidArgument, "volume {} out of range 0..65534", volume);
  }
  if (auto it = minors_.find(minor); it != minors_.end()) {
    return Error(Errc::kExists, "minor {} is already used by {}/{}", minor, it->second.first,
                 it->second.second);
  }
  BSR_RETURN_IF_ERROR(r->AddDevice(volume, minor).status());
  minors_[minor] = {res, volume};
  return Status::Ok();
}

Status Node::DelMinor(int minor) {
  BSR_ASSIGN_OR_RETURN(auto rv, GetMinor(minor));
  BSR_RETURN_IF_ERROR(rv.first->RemoveDevice(rv.second));
  minors_.erase(minor);
  return Status::Ok();
}

Resource* Node::FindResource(const std::string& name) const {
  auto it = resources_.find(name);
  return it == resources_.end() ? nullptr : it->second.get();
}

Result<Resource*> Node::GetResource(const std::string& name) const {
  if (Resource* r = FindResource(name)) return r;
  return Error(Errc::kNotFound, "unknown resource '{}'", name);
}

Result<std::pair<Resource*, int>> Node::GetMinor(int minor) const {
  auto it = minors_.find(minor);
  if (it == minors_.end()) return Error(Errc::kNotFound, "unknown minor {}", minor);
  return std::make_pair(FindResource(it->second.first), it->second.second);
}

Status Node::Down(const std::string& name) {
  BSR_ASSIGN_OR_RETURN(Resource * r, GetResource(name));
  BSR_RETURN_IF_ERROR(r->Demote());
  for (int id : r->peer_node_ids()) {
    BSR_RETURN_IF_ERROR(r->Disconnect(id, false));
    BSR_RETURN_IF_ERROR(r->RemovePeer(id));
  }
  std::vector<int> vols;
  for (const auto& [vol, dev] : r->devices()) vols.push_back(vol);
  for (int vol : vols) {
    auto dev = r->device(vol);
    if (dev->attached()) BSR_RETURN_IF_ERROR(r->Detach(vol));
    BSR_RETURN_IF_ERROR(DelMinor(dev->minor()));
  }
  return DelResource(name);
}

void Node::Shutdown(std::function<void()> done) {
  std::vector<std::string> names;
  for (const auto& [name, r] : resources_) names.push_back(name);
  for (const auto& name : names) {
    Resource* r = FindResource(name);
    // Demotion is refused while clients hold a volume; detach regardless so the
    // metadata is written clean (a Primary's data stays consistent on disk).
    Status s = r->Demote();
    if (!s.ok()) spdlog::warn("shutdown: {}", s.message());
    for (const auto& [vol, dev] : r->devices()) {
      if (!dev->attached()) continue;
      Status d = dev->Detach();
      if (!d.ok()) spdlog::error("shutdown: {}/{}: {}", name, vol, d.message());
    }
  }
  auto remaining = std::make_shared<int>(1);
  auto finish = [remaining, done] {
    if (--*remaining == 0) done();
  };
  for (const auto& [name, r] : resources_) {
    for (const auto& [vol, dev] : r->devices()) {
      ++*remaining;
      dev->StopExport(finish);
    }
  }
  finish();
}

int Node::Observe(Observer o) {
  int id = next_observer_++;
  observers_[id] = std::move(o);
  return id;
}

void Node::Unobserve(int id) {
  observers_.erase(id);
}

void Node::Notify(const ResourceState* o, const ResourceState* n) {
  auto copy = observers_;
  for (auto& [id, obs] : copy) obs(o, n);
}

}  // namespace bsr::replication
