// Wire values of the replication states and net options carried in packets (role,
// disk, connection, replication state, protocol A/B/C, after-sb policies) and their
// user-visible names. Constant data; any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace bsr::protocol {

enum class Role : uint8_t { kUnknown = 0, kPrimary = 1, kSecondary = 2 };
inline constexpr uint8_t kRoleCount = 3;

enum class DiskState : uint8_t {
  kDiskless = 0,
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
inline constexpr uint8_t kDiskStateCount = 10;

enum class ConnState : uint8_t {
  kStandAlone = 0,
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
inline constexpr uint8_t kConnStateCount = 10;

enum class ReplState : uint8_t {
  kOff = 0,
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
inline constexpr uint8_t kReplStateCount = 15;

// Replication protocol of a connection.
enum class WireProtocol : uint8_t { kA = 1, kB = 2, kC = 3 };

// after-sb-0pri / -1pri / -2pri policies (names as in the config language).
enum class AfterSbPolicy : uint8_t {
  kDisconnect = 0,
  kDiscardYoungerPrimary,
  kDiscardOlderPrimary,
  kDiscardZeroChanges,
  kDiscardLeastChanges,
  kDiscardLocal,
  kDiscardRemote,
  kConsensus,
  kDiscardSecondary,
  kCallPriLostAfterSb,
  kViolentlyAs0p,
};
inline constexpr uint8_t kAfterSbPolicyCount = 11;

std::string_view RoleName(Role v);                    // "Primary"
std::string_view DiskStateName(DiskState v);          // "UpToDate"
std::string_view ConnStateName(ConnState v);          // "Connected"
std::string_view ReplStateName(ReplState v);          // "SyncSource"
std::string_view WireProtocolName(WireProtocol v);    // "C"
std::string_view AfterSbPolicyName(AfterSbPolicy v);  // "discard-younger-primary"
std::optional<AfterSbPolicy> ParseAfterSbPolicy(std::string_view name);
std::optional<WireProtocol> ParseWireProtocol(std::string_view name);  // "A", "B", "C"

}  // namespace bsr::protocol
