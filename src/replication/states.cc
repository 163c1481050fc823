#include "replication/states.h"

namespace bsr::replication {
namespace {

// The names are the wire module's (protocol/states.cc); parsing is the reverse lookup.
template <typename E>
std::optional<E> Parse(uint8_t count, std::string_view (*name)(E), std::string_view s) {
  for (uint8_t i = 0; i < count; ++i) {
    if (name(static_cast<E>(i)) == s) return static_cast<E>(i);
  }
  return std::nullopt;
}

}  // namespace

std::string_view Name(Role r) {
  return protocol::RoleName(r);
}
std::string_view Name(DiskState d) {
  return protocol::DiskStateName(d);
}
std::string_view Name(ConnState c) {
  return protocol::ConnStateName(c);
}
std::string_view Name(ReplState r) {
  return protocol::ReplStateName(r);
}

std::optional<Role> ParseRole(std::string_view s) {
  return Parse<Role>(protocol::kRoleCount, protocol::RoleName, s);
}
std::optional<DiskState> ParseDiskState(std::string_view s) {
  return Parse<DiskState>(protocol::kDiskStateCount, protocol::DiskStateName, s);
}
std::optional<ConnState> ParseConnState(std::string_view s) {
  return Parse<ConnState>(protocol::kConnStateCount, protocol::ConnStateName, s);
}
std::optional<ReplState> ParseReplState(std::string_view s) {
  return Parse<ReplState>(protocol::kReplStateCount, protocol::ReplStateName, s);
}

}  // namespace bsr::replication
