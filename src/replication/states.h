// The state vocabulary of bsr (DRBD 9's): roles, disk, connection and replication
// states, with the exact names status output and events2 print. Plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "protocol/states.h"

namespace bsr::replication {

// The same enums as on the wire (protocol/states.h): one definition, so a state needs no
// conversion between the engine and a packet. DiskState is ordered as in DRBD: a higher
// value means "more data available" from kInconsistent up; a peer device has a
// replication state only while its connection is kConnected.
using Role = protocol::Role;
using DiskState = protocol::DiskState;
using ConnState = protocol::ConnState;
using ReplState = protocol::ReplState;

std::string_view Name(Role r);
std::string_view Name(DiskState d);
std::string_view Name(ConnState c);
std::string_view Name(ReplState r);

std::optional<Role> ParseRole(std::string_view s);
std::optional<DiskState> ParseDiskState(std::string_view s);
std::optional<ConnState> ParseConnState(std::string_view s);
std::optional<ReplState> ParseReplState(std::string_view s);

// A resync (or paused resync) is running: status shows "done:".
inline bool IsSyncing(ReplState r) {
  return r == ReplState::kSyncSource || r == ReplState::kSyncTarget ||
         r == ReplState::kPausedSyncS || r == ReplState::kPausedSyncT;
}
inline bool IsVerifying(ReplState r) {
  return r == ReplState::kVerifyS || r == ReplState::kVerifyT;
}
// A disk that holds a backing device (not Diskless and not on its way out).
inline bool HasDisk(DiskState d) {
  return d != DiskState::kDiskless && d != DiskState::kFailed && d != DiskState::kDetaching;
}

}  // namespace bsr::replication
