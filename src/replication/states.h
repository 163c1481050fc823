// The state vocabulary of bsr (DRBD 9's): roles, disk, connection and replication
// states, with the exact names status output and events2 print. Plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace bsr::replication {

enum class Role : uint8_t { kUnknown, kPrimary, kSecondary };

// Ordered as in DRBD: a higher value means "more data available" from kInconsistent up.
enum class DiskState : uint8_t {
  kDiskless,
  kAttaching,
  kDetaching,
  kFailed,
  kNegotiating,
  kInconsistent,
  kOutdated,
  kDUnknown,
  kConsistent,
  kUpToDate,
};

// kConnected is the only state in which peer devices have a replication state.
enum class ConnState : uint8_t {
  kStandAlone,
  kDisconnecting,
  kUnconnected,
  kTimeout,
  kBrokenPipe,
  kNetworkFailure,
  kProtocolError,
  kTearDown,
  kConnecting,
  kConnected,
};

enum class ReplState : uint8_t {
  kOff,
  kEstablished,
  kStartingSyncS,
  kStartingSyncT,
  kWFBitMapS,
  kWFBitMapT,
  kWFSyncUUID,
  kSyncSource,
  kSyncTarget,
  kVerifyS,
  kVerifyT,
  kPausedSyncS,
  kPausedSyncT,
  kAhead,
  kBehind,
};

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
