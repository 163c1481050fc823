// A snapshot of one resource's state: its role, devices (volumes), connections
// and peer devices, with the counters status output shows. Plain value; the
// resource's strand owns the live copy inside its StateEngine.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "replication/states.h"

namespace bsr::replication {

struct DeviceStats {
  uint64_t size_sectors = 0;  // usable size, 512-byte sectors
  uint64_t read_sectors = 0;
  uint64_t written_sectors = 0;
  uint64_t al_writes = 0;
  uint64_t bm_writes = 0;
  uint32_t upper_pending = 0;  // application requests in flight
  uint32_t lower_pending = 0;  // backing-device requests in flight
  bool al_suspended = false;
  bool upper_blocked = false;
  bool lower_blocked = false;
};

struct DeviceState {
  int volume = 0;
  int minor = 0;
  DiskState disk = DiskState::kDiskless;
  bool open = false;           // an NBD client or /dev/bsrN user holds it
  bool open_writable = false;  // such a user may write
  DeviceStats stats;
};

struct PeerDeviceStats {
  uint64_t received_sectors = 0;
  uint64_t sent_sectors = 0;
  uint64_t out_of_sync_sectors = 0;
  uint32_t pending = 0;           // requests sent to the peer, not yet answered
  uint32_t unacked = 0;           // requests received from the peer, not yet acknowledged
  uint64_t rs_total_sectors = 0;  // size of the running resync, 0 when none
  uint64_t rs_done_sectors = 0;
  uint64_t rs_rate_kib = 0;  // current resync speed, KiB/s
  // Resync/verify details (drbdsetup status -vs, --json): verify blocks left, sectors
  // csums-alg found identical, the rate controller's current target.
  uint64_t ov_left_sectors = 0;
  uint64_t rs_same_csum_sectors = 0;
  uint64_t rs_want_kib = 0;
};

struct PeerDeviceState {
  int volume = 0;
  ReplState repl = ReplState::kOff;
  DiskState peer_disk = DiskState::kDUnknown;
  bool resync_susp_user = false;
  bool resync_susp_peer = false;
  bool resync_susp_dependency = false;
  PeerDeviceStats stats;
};

struct ConnectionState {
  int peer_node_id = 0;
  std::string name;  // the peer's host name, or the connection's name
  ConnState conn = ConnState::kStandAlone;
  Role peer_role = Role::kUnknown;
  bool congested = false;
  std::map<int, PeerDeviceState> peer_devices;  // by volume
};

struct ResourceState {
  std::string name;
  int node_id = 0;
  Role role = Role::kSecondary;
  bool susp_user = false;
  bool susp_no_data = false;
  bool susp_fencing = false;
  std::map<int, DeviceState> devices;          // by volume
  std::map<int, ConnectionState> connections;  // by peer node-id

  // Application I/O is held: by the administrator, for lack of data, or while fencing.
  bool suspended() const { return susp_user || susp_no_data || susp_fencing; }
};

}  // namespace bsr::replication
