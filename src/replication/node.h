// Node: everything one bsrd owns: its resources, the minor -> device index, and
// the shared I/O context. Control requests arrive here (via control/) as typed
// calls. Lives on the daemon's io_context thread.
#pragma once

#include <asio.hpp>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "replication/resource.h"

namespace bsr::replication {

struct NodeOptions {
  std::string run_dir = "/run/bsr";  // NBD sockets live under <run_dir>/<res>/
};

class Node {
 public:
  Node(asio::io_context& io, NodeOptions options);
  ~Node();

  asio::io_context& io() { return io_; }

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

  // `down`: demote, disconnect every peer, detach and delete every volume, delete
  // the resource. Stops at the first refusal with the state as far as it got.
  Status Down(const std::string& name);
  // Clean shutdown (SIGTERM): every resource down as far as possible, metadata
  // written clean. Returns when every NBD server has stopped.
  void Shutdown(std::function<void()> done);

  // Called after every state change of any resource, and when resources come and go
  // (old is null on create, new is null on destroy).
  using Observer =
      std::function<void(const ResourceState* old_state, const ResourceState* new_state)>;
  int Observe(Observer o);
  void Unobserve(int id);

 private:
  void Notify(const ResourceState* o, const ResourceState* n);

  asio::io_context& io_;
  NodeOptions options_;
  asio::thread_pool meta_pool_{1};
  std::map<std::string, std::unique_ptr<Resource>> resources_;
  std::map<int, std::pair<std::string, int>> minors_;  // minor -> (resource, volume)
  std::map<int, Observer> observers_;
  int next_observer_ = 1;
};

}  // namespace bsr::replication
