#include "replication/node.h"

#include <spdlog/spdlog.h>

namespace bsr::replication {

Node::Node(asio::io_context& io, NodeOptions options)
    : io_(io), options_(std::move(options)), handlers_(io, options_.usermode_helper) {}

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
  DeviceEnv env{&io_, &meta_pool_, options_.run_dir, &handlers_};
  auto res = std::make_unique<Resource>(name, node_id, opts, env);
  Resource* r = res.get();
  r->engine().Subscribe([this](const ResourceState& o, const ResourceState& n) { Notify(&o, &n); });
  resources_[name] = std::move(res);
  Notify(nullptr, &r->state());
  spdlog::info("{}: created (node-id {})", name, node_id);
  return r;
}

Status Node::DelResource(const std::string& name_ref) {
  const std::string name = name_ref;  // may refer to the resource's own name
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

void Node::Promote(const std::string& name, bool force, Done done) {
  auto r = GetResource(name);
  if (!r.ok()) return done(r.status());
  Resource* res = *r;
  bool was_primary = res->state().role == Role::kPrimary;
  // Cluster-wide: every connected peer agrees first (two-phase commit, twopc.h).
  res->Promote(force, [this, name, was_primary, done](Status s) {
    Resource* res = FindResource(name);
    if (!s.ok() || was_primary || !options_.kernel_devices || !res) return done(s);
    AfterPromote(res, name, done);
  });
}

void Node::AfterPromote(Resource* res, const std::string& name, Done done) {
  std::vector<int> minors;
  for (const auto& [vol, dev] : res->devices()) {
    if (dev->attached() && !kdevs_.count(dev->minor())) minors.push_back(dev->minor());
  }
  CreateKernelDevices(res, std::move(minors), [this, name, done](Status ks) {
    if (ks.ok()) return done(ks);
    // Leave the resource as it was: Secondary, no device links.
    Resource* res = FindResource(name);
    RemoveKernelDevices(KernelMinors(res), true, [res, ks, done](Status) {
      Status d = res->Demote();
      if (!d.ok()) spdlog::error("{}: rollback of promotion: {}", res->name(), d.message());
      done(ks);
    });
  });
}

void Node::Demote(const std::string& name, Done done) {
  auto r = GetResource(name);
  if (!r.ok()) return done(r.status());
  Resource* res = *r;
  if (res->state().role != Role::kPrimary) return done(Status::Ok());
  // Check the rules before touching the devices, so a refusal changes nothing.
  Status pre =
      res->engine().Check("secondary", [](ResourceState& st) { st.role = Role::kSecondary; });
  if (!pre.ok()) return done(pre);
  RemoveKernelDevices(KernelMinors(res), false, [this, name, done](Status ks) {
    Resource* res = FindResource(name);
    if (!ks.ok()) return done(ks);
    done(res->Demote());
  });
}

void Node::Down(const std::string& name, Done done) {
  Demote(name, [this, name, done](Status s) {
    if (!s.ok()) return done(s);
    auto r = GetResource(name);
    if (!r.ok()) return done(r.status());
    done(DownSync(*r));
  });
}

Status Node::DownSync(Resource* r) {
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
  return DelResource(r->name());
}

std::vector<int> Node::KernelMinors(Resource* r) const {
  std::vector<int> minors;
  if (!r) return minors;
  for (const auto& [vol, dev] : r->devices()) {
    if (kdevs_.count(dev->minor())) minors.push_back(dev->minor());
  }
  return minors;
}

void Node::CreateKernelDevices(Resource* r, std::vector<int> minors, Done done) {
  if (minors.empty()) return done(Status::Ok());
  int minor = minors.back();
  minors.pop_back();
  auto rv = GetMinor(minor);
  if (!rv.ok()) return done(rv.status());
  auto dev = r->device(rv->second);
  frontend::KernelDeviceOptions o;
  o.minor = static_cast<unsigned>(minor);
  o.resource = r->name();
  o.volume = rv->second;
  o.state_dir = options_.state_dir;
  o.dev_dir = options_.dev_dir;
  std::string name = r->name();
  frontend::KernelDevice::CreateAsync(
      io_, dev->block_export(), o,
      [this, name, minor, minors = std::move(minors), done](auto kd) mutable {
        if (!kd.ok()) {
          return done(kd.status().WithContext(fmt::format("/dev/bsr{}", minor)));
        }
        spdlog::info("{}: /dev/bsr{} -> {}", name, minor, (*kd)->loop_path());
        kdevs_[minor] = std::move(*kd);
        Resource* res = FindResource(name);
        if (!res) return done(Error(Errc::kNotFound, "resource {} went away", name));
        CreateKernelDevices(res, std::move(minors), std::move(done));
      });
}

void Node::RemoveKernelDevices(std::vector<int> minors, bool force, Done done) {
  if (minors.empty()) return done(Status::Ok());
  int minor = minors.back();
  minors.pop_back();
  auto it = kdevs_.find(minor);
  if (it == kdevs_.end()) return RemoveKernelDevices(std::move(minors), force, std::move(done));
  frontend::KernelDevice* kd = it->second.get();
  kd->TeardownAsync([this, minor, minors = std::move(minors), force, done](Status s) mutable {
    if (!s.ok() && !force) {
      return done(Error(Errc::kState,
                        "State change failed: Device is held open by someone (/dev/bsr{}: {})",
                        minor, s.message()));
    }
    if (!s.ok()) spdlog::warn("/dev/bsr{}: {}", minor, s.message());
    if (s.ok()) kdevs_.erase(minor);
    RemoveKernelDevices(std::move(minors), force, std::move(done));
  });
}

void Node::Shutdown(bool force, Done done) {
  std::vector<int> minors;
  for (const auto& [minor, kd] : kdevs_) minors.push_back(minor);
  RemoveKernelDevices(minors, force, [this, force, done](Status ks) {
    if (!ks.ok() && !force) return done(ks);
    for (const auto& [name, r] : resources_) {
      // Demotion is refused while NBD clients hold a volume; detach regardless so the
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
      if (--*remaining == 0) done(Status::Ok());
    };
    for (const auto& [name, r] : resources_) {
      for (const auto& [vol, dev] : r->devices()) {
        ++*remaining;
        dev->StopExport(finish);
      }
    }
    finish();
  });
}

void Node::CleanupStale() {
  if (!options_.kernel_devices) return;
  auto report = frontend::CleanupStaleKernelDevices(options_.state_dir, options_.dev_dir);
  for (const auto& a : report.actions) spdlog::info("cleanup: {}", a);
  for (const auto& p : report.problems) spdlog::warn("cleanup: {}", p);
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
