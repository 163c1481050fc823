#include "protocol/states.h"

#include <array>

namespace bsr::protocol {
namespace {

constexpr std::array<std::string_view, kRoleCount> kRoles = {"Unknown", "Primary", "Secondary"};
constexpr std::array<std::string_view, kDiskStateCount> kDisks = {
    "Diskless",     "Attaching", "Detaching", "Failed",     "Negotiating",
    "Inconsistent", "Outdated",  "DUnknown",  "Consistent", "UpToDate"};
constexpr std::array<std::string_view, kConnStateCount> kConns = {
    "StandAlone",     "Disconnecting", "Unconnected", "Timeout",    "BrokenPipe",
    "NetworkFailure", "ProtocolError", "TearDown",    "Connecting", "Connected"};
constexpr std::array<std::string_view, kReplStateCount> kRepls = {
    "Off",       "Established", "StartingSyncS", "StartingSyncT", "WFBitMapS",
    "WFBitMapT", "WFSyncUUID",  "SyncSource",    "SyncTarget",    "VerifyS",
    "VerifyT",   "PausedSyncS", "PausedSyncT",   "Ahead",         "Behind"};
constexpr std::array<std::string_view, kAfterSbPolicyCount> kPolicies = {"disconnect",
                                                                         "discard-younger-primary",
                                                                         "discard-older-primary",
                                                                         "discard-zero-changes",
                                                                         "discard-least-changes",
                                                                         "discard-local",
                                                                         "discard-remote",
                                                                         "consensus",
                                                                         "discard-secondary",
                                                                         "call-pri-lost-after-sb",
                                                                         "violently-as0p"};

template <size_t N>
std::string_view Lookup(const std::array<std::string_view, N>& names, uint8_t v) {
  return v < N ? names[v] : "invalid";
}

}  // namespace

std::string_view RoleName(Role v) {
  return Lookup(kRoles, static_cast<uint8_t>(v));
}
std::string_view DiskStateName(DiskState v) {
  return Lookup(kDisks, static_cast<uint8_t>(v));
}
std::string_view ConnStateName(ConnState v) {
  return Lookup(kConns, static_cast<uint8_t>(v));
}
std::string_view ReplStateName(ReplState v) {
  return Lookup(kRepls, static_cast<uint8_t>(v));
}
std::string_view AfterSbPolicyName(AfterSbPolicy v) {
  return Lookup(kPolicies, static_cast<uint8_t>(v));
}

std::string_view WireProtocolName(WireProtocol v) {
  switch (v) {
    case WireProtocol::kA: return "A";
    case WireProtocol::kB: return "B";
    case WireProtocol::kC: return "C";
  }
  return "invalid";
}

std::optional<AfterSbPolicy> ParseAfterSbPolicy(std::string_view name) {
  for (uint8_t i = 0; i < kAfterSbPolicyCount; ++i) {
    if (kPolicies[i] == name) return static_cast<AfterSbPolicy>(i);
  }
  return std::nullopt;
}

std::optional<WireProtocol> ParseWireProtocol(std::string_view name) {
  if (name == "A") return WireProtocol::kA;
  if (name == "B") return WireProtocol::kB;
  if (name == "C") return WireProtocol::kC;
  return std::nullopt;
}

}  // namespace bsr::protocol
