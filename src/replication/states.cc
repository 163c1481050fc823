#include "replication/states.h"

#include <array>

namespace bsr::replication {
namespace {

constexpr std::array<std::string_view, 3> kRoleNames = {"Unknown", "Primary", "Secondary"};
constexpr std::array<std::string_view, 10> kDiskNames = {
    "Diskless",     "Attaching", "Detaching", "Failed",     "Negotiating",
    "Inconsistent", "Outdated",  "DUnknown",  "Consistent", "UpToDate"};
constexpr std::array<std::string_view, 10> kConnNames = {
    "StandAlone",     "Disconnecting", "Unconnected", "Timeout",    "BrokenPipe",
    "NetworkFailure", "ProtocolError", "TearDown",    "Connecting", "Connected"};
constexpr std::array<std::string_view, 15> kReplNames = {
    "Off",       "Established", "StartingSyncS", "StartingSyncT", "WFBitMapS",
    "WFBitMapT", "WFSyncUUID",  "SyncSource",    "SyncTarget",    "VerifyS",
    "VerifyT",   "PausedSyncS", "PausedSyncT",   "Ahead",         "Behind"};

template <typename E, size_t N>
std::optional<E> Parse(const std::array<std::string_view, N>& names, std::string_view s) {
  for (size_t i = 0; i < N; ++i) {
    if (names[i] == s) return static_cast<E>(i);
  }
  return std::nullopt;
}

}  // namespace

std::string_view Name(Role r) {
  return kRoleNames.at(static_cast<size_t>(r));
}
std::string_view Name(DiskState d) {
  return kDiskNames.at(static_cast<size_t>(d));
}
std::string_view Name(ConnState c) {
  return kConnNames.at(static_cast<size_t>(c));
}
std::string_view Name(ReplState r) {
  return kReplNames.at(static_cast<size_t>(r));
}

std::optional<Role> ParseRole(std::string_view s) {
  return Parse<Role>(kRoleNames, s);
}
std::optional<DiskState> ParseDiskState(std::string_view s) {
  return Parse<DiskState>(kDiskNames, s);
}
std::optional<ConnState> ParseConnState(std::string_view s) {
  return Parse<ConnState>(kConnNames, s);
}
std::optional<ReplState> ParseReplState(std::string_view s) {
  return Parse<ReplState>(kReplNames, s);
}

}  // namespace bsr::replication
