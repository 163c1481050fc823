#include "replication/state_engine.h"

#include <fmt/format.h>

namespace bsr::replication {
namespace {

Status Refuse(std::string_view reason) {
  return Status(Errc::kState, fmt::format("State change failed: {}", reason));
}

// A device's data is reachable when the local disk is UpToDate or a connected peer
// holds UpToDate data for it.
bool HasUpToDateData(const ResourceState& s, const DeviceState& dev) {
  if (dev.disk == DiskState::kUpToDate) return true;
  for (const auto& [id, conn] : s.connections) {
    if (conn.conn != ConnState::kConnected) continue;
    auto it = conn.peer_devices.find(dev.volume);
    if (it != conn.peer_devices.end() && it->second.peer_disk == DiskState::kUpToDate) {
      return true;
    }
  }
  return false;
}

Status ValidateRole(const ResourceState& o, const ResourceState& n, ChangeFlags flags) {
  if (n.role == Role::kPrimary) {
    for (const auto& [id, conn] : n.connections) {
      if (conn.conn == ConnState::kConnected && conn.peer_role == Role::kPrimary) {
        return Refuse(fmt::format(
            "peer {} (node-id {}) is Primary; only one Primary is allowed (demote it first)",
            conn.name, id));
      }
    }
    if (o.role != Role::kPrimary) {
      if (n.devices.empty()) return Refuse("resource has no volumes to promote");
      for (const auto& [vol, dev] : n.devices) {
        if (!HasUpToDateData(n, dev)) {
          return Refuse(
              fmt::format("Need access to UpToDate data (volume {} is {}; use --force to make it "
                          "UpToDate and start a full sync to its peers)",
                          vol, Name(dev.disk)));
        }
      }
    }
  }
  if (o.role == Role::kPrimary && n.role == Role::kSecondary && !flags.internal) {
    for (const auto& [vol, dev] : n.devices) {
      if (dev.open_writable) {
        return Refuse(
            fmt::format("Device is held open by someone (volume {}, minor {})", vol, dev.minor));
      }
    }
  }
  return Status::Ok();
}

Status ValidateDevices(const ResourceState& o, const ResourceState& n, ChangeFlags flags) {
  for (const auto& [vol, dev] : n.devices) {
    auto it = o.devices.find(vol);
    DiskState before = it == o.devices.end() ? DiskState::kDiskless : it->second.disk;
    bool losing_disk = HasDisk(before) && !HasDisk(dev.disk);
    // bsr removes detach of a Primary's volume: losing the disk would fail I/O.
    if (losing_disk && n.role == Role::kPrimary && !flags.internal) {
      return Refuse(fmt::format(
          "detach is not allowed on a Primary resource (volume {}); demote it first", vol));
    }
  }
  for (const auto& [vol, dev] : o.devices) {
    if (!n.devices.count(vol) && HasDisk(dev.disk)) {
      return Refuse(fmt::format("volume {} still has a disk attached; detach it first", vol));
    }
    if (!n.devices.count(vol) && n.role == Role::kPrimary) {
      return Refuse(fmt::format("cannot remove volume {} of a Primary resource", vol));
    }
  }
  return Status::Ok();
}

Status ValidateConnections(const ResourceState& n) {
  for (const auto& [id, conn] : n.connections) {
    if (id == n.node_id) {
      return Refuse(fmt::format("connection {} uses this node's own node-id {}", conn.name, id));
    }
    for (const auto& [vol, pd] : conn.peer_devices) {
      if (conn.conn != ConnState::kConnected && pd.repl != ReplState::kOff) {
        return Refuse(fmt::format("volume {} to {} cannot be {} while the connection is {}", vol,
                                  conn.name, Name(pd.repl), Name(conn.conn)));
      }
      auto dev = n.devices.find(vol);
      DiskState local = dev == n.devices.end() ? DiskState::kDiskless : dev->second.disk;
      if (pd.repl == ReplState::kSyncTarget && local != DiskState::kInconsistent) {
        return Refuse(
            fmt::format("volume {} cannot be SyncTarget with a {} disk", vol, Name(local)));
      }
      if (pd.repl == ReplState::kSyncSource && !HasDisk(local)) {
        return Refuse(fmt::format("volume {} cannot be SyncSource without a disk", vol));
      }
    }
  }
  return Status::Ok();
}

}  // namespace

Status ValidateTransition(const ResourceState& old_state, const ResourceState& new_state,
                          ChangeFlags flags) {
  BSR_RETURN_IF_ERROR(ValidateRole(old_state, new_state, flags));
  BSR_RETURN_IF_ERROR(ValidateDevices(old_state, new_state, flags));
  return ValidateConnections(new_state);
}

Status StateEngine::Change(std::string_view what, const Mutation& mutate, ChangeFlags flags) {
  ResourceState next = state_;
  mutate(next);
  Status s = ValidateTransition(state_, next, flags);
  if (!s.ok()) return s.WithContext(fmt::format("{} {}", what, state_.name));
  ResourceState old = std::exchange(state_, std::move(next));
  // Copy: a listener may unsubscribe itself while we iterate.
  auto listeners = listeners_;
  for (auto& [id, listener] : listeners) listener(old, state_);
  return Status::Ok();
}

Status StateEngine::Check(std::string_view what, const Mutation& mutate, ChangeFlags flags) const {
  ResourceState next = state_;
  mutate(next);
  return ValidateTransition(state_, next, flags)
      .WithContext(fmt::format("{} {}", what, state_.name));
}

int StateEngine::Subscribe(Listener listener) {
  int id = next_listener_id_++;
  listeners_.emplace(id, std::move(listener));
  return id;
}

void StateEngine::Unsubscribe(int id) {
  listeners_.erase(id);
}

}  // namespace bsr::replication
