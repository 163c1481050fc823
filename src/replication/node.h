// Node: everything one bsrd owns: its resources, the minor -> device index, and
// the shared I/O context. Control requests arrive here (via control/) as typed
// calls. Lives on the daemon's io_context thread.
#pragma once

#include <asio.hpp>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "frontend/kernel_device.h"
#include "replication/resource.h"

namespace bsr::replication {

struct NodeOptions {
  std::string run_dir = "/run/bsr";  // NBD sockets live under <run_dir>/<res>/
  // /dev/bsr<minor> for a Primary's volumes: FUSE mounts under <state_dir>/kdev,
  // links in dev_dir (several nodes on one host use their own).
  bool kernel_devices = true;
  std::string state_dir = "/var/lib/bsr";
  std::string dev_dir = "/dev";
  // Program run for handlers (`<helper> <handler> <resource>`); empty: none.
  std::string usermode_helper = "bsradm";
};

class Node {
 public:
  Node(asio::io_context& io, NodeOptions options);
  ~Node();

  asio::io_context& io() { return io_; }
  HandlerRunner& handlers() { return handlers_; }

  Result<Resource*> NewResource(const std::string& name, int node_id,
                                const std::map<std::string, std::string>& opts);
  Status DelResource(const std::string& name);
  Status NewMinor(const std::string& res, int minor, int volume);
  Status DelMinor(int minor);

  Resource* FindResource(const std::string& name) const;
  Result<Resource*> GetResource(const std::string& name) const;
  // The resource and volume of a minor.
  Result<std::pair<Resource*, int>> GetMinor(int minor) const;
  const std::map<std::string, std::unique_ptr<Resource>>& resources() const { return resources_; }

  using Done = std::function<void(Status)>;
  // Role changes with the kernel devices: promotion creates /dev/bsr<minor> for each
  // volume (rolled back if that fails); demotion removes them first and is refused
  // while one is mounted or open. `done` runs on the io thread.
  void Promote(const std::string& name, bool force, Done done);
  // Promote's second half: the kernel devices of a resource that just became Primary.
  void AfterPromote(Resource* res, const std::string& name, Done done);
  void Demote(const std::string& name, Done done);
  // `down`: demote, disconnect every peer, detach and delete every volume, delete
  // the resource. Stops at the first refusal with the state as far as it got.
  void Down(const std::string& name, Done done);
  // Clean shutdown (SIGTERM): kernel devices removed, every resource demoted and
  // detached (metadata written clean). Refused (done gets the reason) while a
  // kernel device is in use, unless `force`.
  void Shutdown(bool force, Done done);
  // Removes what a killed bsrd left (FUSE mounts, loop devices, links). Blocking:
  // call before serving.
  void CleanupStale();

  // Called after every state change of any resource, and when resources come and go
  // (old is null on create, new is null on destroy).
  using Observer =
      std::function<void(const ResourceState* old_state, const ResourceState* new_state)>;
  int Observe(Observer o);
  void Unobserve(int id);

 private:
  void Notify(const ResourceState* o, const ResourceState* n);
  Status DownSync(Resource* r);
  void CreateKernelDevices(Resource* r, std::vector<int> minors, Done done);
  void RemoveKernelDevices(std::vector<int> minors, bool force, Done done);
  std::vector<int> KernelMinors(Resource* r) const;

  asio::io_context& io_;
  NodeOptions options_;
  asio::thread_pool meta_pool_{1};
  HandlerRunner handlers_;
  std::map<std::string, std::unique_ptr<Resource>> resources_;
  std::map<int, std::pair<std::string, int>> minors_;             // minor -> (resource, volume)
  std::map<int, std::unique_ptr<frontend::KernelDevice>> kdevs_;  // by minor
  std::map<int, Observer> observers_;
  int next_observer_ = 1;
};

}  // namespace bsr::replication
