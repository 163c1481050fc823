// Resource: one replicated resource on this node: its options, volumes (Devices),
// configured peers and paths, and the StateEngine every state change goes through.
// Lives on the node's io_context thread.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "replication/connection.h"
#include "replication/device.h"
#include "replication/state_engine.h"

namespace bsr::replication {

class TwoPc;
class PeerAckTracker;

struct PathSpec {
  std::string local;  // "ipv4:10.1.1.31:7789"
  std::string remote;
};

struct PeerSpec {
  int node_id = 0;
  std::string name;
  std::map<std::string, std::string> net_opts;
  std::vector<PathSpec> paths;
  // Per volume peer-device options (resync-rate, c-plan-ahead, ...).
  std::map<int, std::map<std::string, std::string>> peer_device_opts;
};

class Resource {
 public:
  Resource(std::string name, int node_id, std::map<std::string, std::string> opts, DeviceEnv env);
  ~Resource();

  const std::string& name() const { return name_; }
  int node_id() const { return node_id_; }
  StateEngine& engine() { return engine_; }
  const ResourceState& state() const { return engine_.state(); }
  const std::map<std::string, std::string>& options() const { return opts_; }
  Status SetOptions(const std::map<std::string, std::string>& opts);
  bool auto_promote() const;

  // Volumes.
  Result<std::shared_ptr<Device>> AddDevice(int volume, int minor);
  Status RemoveDevice(int volume);
  std::shared_ptr<Device> device(int volume) const;
  const std::map<int, std::shared_ptr<Device>>& devices() const { return devices_; }

  // Peers (connections) and their paths. Connecting them is the replication layer's.
  Status AddPeer(PeerSpec peer);
  Status RemovePeer(int node_id);
  Status AddPath(int node_id, PathSpec path);
  Status RemovePath(int node_id, const PathSpec& path);
  Status SetNetOptions(int node_id, const std::map<std::string, std::string>& opts);
  Status SetPeerDeviceOptions(int node_id, int volume,
                              const std::map<std::string, std::string>& opts);
  // The peer's Connection (nullptr while StandAlone without one).
  std::shared_ptr<Connection> connection(int node_id) const;
  const DeviceEnv& env() const { return env_; }
  // Runs a handler about this resource (fills in resource and my node id; volume,
  // minor, peer and extra environment come from `call`). `done` gets the exit code.
  void RunHandler(HandlerCall call, std::function<void(int)> done = {});
  Status Connect(int node_id);
  Status Disconnect(int node_id, bool force);
  // sync_admin.cc: connect with --discard-my-data; invalidate (full resync of the local
  // disk from `peer_node_id`, -1: any connected UpToDate peer); invalidate-remote.
  Status ConnectDiscardMyData(int node_id);
  Status Invalidate(int volume, int peer_node_id = -1);
  Status InvalidateRemote(int peer_node_id, int volume);
  const std::map<int, PeerSpec>& peers() const { return peers_; }
  // pause-sync / resume-sync and verify of one peer device (verify.cc): refused with
  // a reason unless the peer is connected.
  Status PauseSync(int node_id, int volume, bool pause);
  Status Verify(int node_id, int volume, uint64_t start_sector, uint64_t stop_sector);
  std::vector<int> peer_node_ids() const;
  // "node 2 (bob)" for logs and refusal reasons ("node 2" for an unknown or unnamed peer).
  std::string PeerName(int node_id) const;

  // Roles.
  Status Promote(bool force);
  // Promotion as a cluster-wide state change (twopc.h): every connected peer must
  // agree (two-phase commit) before the local Promote(force) runs; `done` gets why not.
  void Promote(bool force, std::function<void(Status)> done);
  TwoPc& twopc();  // twopc.cc
  // Peer acks (peer_ack.cc): Device::StartWrite opens a write group before it sends the
  // write to its peers and closes it after; the tracker settles it once every peer
  // answered.
  uint64_t BeginReplicatedWrite();  // returns the mark for EndReplicatedWrite
  void EndReplicatedWrite(uint64_t mark);
  // Hands each settled write's PeerAck to the connection it goes out on.
  void SendPeerAcks(const std::vector<PeerAckTracker::Ready>& ready);
  PeerAckTracker& peer_acks();
  Status Demote();

  // Attach/detach go through the state engine: Attaching -> the disk state the
  // metadata implies; detach is refused on a Primary.
  Status Attach(int volume, const AttachSpec& spec);
  Status Detach(int volume);

  // Admin commands (resource_admin.cc). Each checks first and changes nothing when it
  // refuses. outdate: UpToDate/Consistent -> Outdated (refused on a Primary).
  Status Outdate(int volume);
  // suspend-io / resume-io: application requests are held (not failed) while
  // suspended; resume-io also leaves a no-data suspension (on-no-data-accessible).
  Status SuspendIo();
  Status ResumeIo();
  // new-current-uuid [--clear-bitmap] (see Device::NewCurrentUuid).
  Status NewCurrentUuid(int volume, bool clear_bitmap);
  // Tells every connected peer our generation UUIDs of `volume` (after a new current one).
  void SendUuidsToPeers(int volume);

  // Writes received from peers (Data, resync replies) while the disk writes them, of
  // every connection, also of sessions that ended meanwhile: a received write waits for
  // overlapping ones of any connection (Connection::WaitRoom), so writes of one range
  // from two connections land in the order they arrived. Keyed by (session, its key).
  struct ReceivedWrite {
    int volume;
    uint64_t offset, length;
  };
  using ReceivedWrites = std::map<std::pair<const void*, uint64_t>, ReceivedWrite>;
  void AddReceivedWrite(const void* session, uint64_t key, ReceivedWrite w);
  // Also wakes every connection's writes waiting for room (Connection::WakeReceivers).
  void RemoveReceivedWrite(const void* session, uint64_t key);
  bool ReceivedWriteOverlaps(int volume, uint64_t offset, uint64_t length) const;
  // After a detach: the disk dropped the writes still at it, and their completions.
  void ForgetReceivedWrites(int volume);
  const ReceivedWrites& received_writes() const { return received_writes_; }
  // A write from a peer arrived: every connection's resync request for that range is
  // stale (its reply may be older than the write).
  void MarkResyncStale(int volume, uint64_t offset, uint64_t length);
  // get-gi / show-gi of a running volume: the generation identifiers for a peer.
  Result<std::string> GenerationIds(int peer_node_id, int volume, bool verbose) const;

 private:
  Status Refuse(std::string_view what, const Status& s) const;

  std::string name_;
  int node_id_;
  std::map<std::string, std::string> opts_;
  DeviceEnv env_;
  StateEngine engine_;
  std::map<int, std::shared_ptr<Device>> devices_;
  std::map<int, PeerSpec> peers_;
  std::map<int, std::shared_ptr<Connection>> connections_;
  ReceivedWrites received_writes_;
  std::shared_ptr<TwoPc> twopc_;               // created on first use
  std::shared_ptr<PeerAckTracker> peer_acks_;  // created on first use
};

// fencing.cc: runs fence-peer / unfence-peer for the `fencing` net option (a state-engine
// listener; the Resource constructor installs it).
void InstallFencing(Resource* r);

}  // namespace bsr::replication
