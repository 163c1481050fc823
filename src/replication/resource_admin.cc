// Resource's admin commands beyond the lifecycle: outdate, suspend-io / resume-io,
// new-current-uuid, get-gi / show-gi. io thread; each validates through the state
// engine (or its own checks) before it writes metadata, so a refusal changes nothing.
#include <spdlog/spdlog.h>

#include "replication/resource.h"

namespace bsr::replication {

Status Resource::Outdate(int volume) {
  auto dev = device(volume);
  if (!dev) return Error(Errc::kNotFound, "resource {} has no volume {}", name_, volume);
  if (!dev->attached()) {
    return Error(Errc::kState, "outdate {}: minor {} has no disk attached", name_, dev->minor());
  }
  DiskState disk = state().devices.at(volume).disk;
  if (state().role == Role::kPrimary) {
    return Error(Errc::kState,
                 "outdate {}: State change failed: Refusing to outdate the disk of a Primary "
                 "(volume {}); demote it first",
                 name_, volume);
  }
  if (disk == DiskState::kOutdated) return Status::Ok();
  if (disk != DiskState::kUpToDate && disk != DiskState::kConsistent) {
    return Error(Errc::kState,
                 "outdate {}: State change failed: Disk state is lower than outdated (volume {} "
                 "is {})",
                 name_, volume, Name(disk));
  }
  for (const auto& [id, c] : state().connections) {
    auto p = c.peer_devices.find(volume);
    if (p != c.peer_devices.end() && (IsSyncing(p->second.repl) || IsVerifying(p->second.repl))) {
      return Error(Errc::kState, "outdate {}: State change failed: volume {} is {} with {}", name_,
                   volume, Name(p->second.repl), c.name);
    }
  }
  auto mutate = [volume](ResourceState& st) { st.devices[volume].disk = DiskState::kOutdated; };
  BSR_RETURN_IF_ERROR(engine_.Check("outdate", mutate));
  BSR_RETURN_IF_ERROR(dev->Outdate());
  return engine_.Change("outdate", mutate);
}

Status Resource::SuspendIo() {
  if (state().susp_user) return Status::Ok();
  spdlog::info("{}: I/O suspended by the administrator", name_);
  return engine_.Change("suspend-io", [](ResourceState& st) { st.susp_user = true; });
}

Status Resource::ResumeIo() {
  const auto& st = state();
  if (!st.suspended()) return Status::Ok();
  bool no_data = st.susp_no_data;
  BSR_RETURN_IF_ERROR(engine_.Change("resume-io", [](ResourceState& s) {
    s.susp_user = false;
    s.susp_no_data = false;
    s.susp_fencing = false;  // a failed fence-peer (resource-and-stonith)
  }));
  spdlog::info("{}: I/O resumed", name_);
  for (const auto& [vol, dev] : devices_) {
    // Forced resume without data: those requests fail as with on-no-data-accessible
    // io-error (DRBD) until a disk is attached again.
    if (no_data && !dev->attached()) dev->SetNoDataFailsFast();
    dev->ReleaseHeld();
  }
  return Status::Ok();
}

void Resource::SendUuidsToPeers(int volume) {
  for (const auto& [id, c] : connections_) c->ResendUuids(volume);
}

void Resource::AddReceivedWrite(const void* session, uint64_t key, ReceivedWrite w) {
  received_writes_[{session, key}] = w;
}

void Resource::RemoveReceivedWrite(const void* session, uint64_t key) {
  received_writes_.erase({session, key});
  for (const auto& [id, c] : connections_) c->WakeReceivers();
}

void Resource::ForgetReceivedWrites(int volume) {
  std::erase_if(received_writes_, [volume](const auto& e) { return e.second.volume == volume; });
  for (const auto& [id, c] : connections_) c->WakeReceivers();
}

bool Resource::ReceivedWriteOverlaps(int volume, uint64_t offset, uint64_t length) const {
  for (const auto& [k, w] : received_writes_) {
    if (w.volume == volume && offset < w.offset + w.length && w.offset < offset + length) {
      return true;
    }
  }
  return false;
}

void Resource::MarkResyncStale(int volume, uint64_t offset, uint64_t length) {
  for (const auto& [id, c] : connections_) c->MarkResyncStale(volume, offset, length);
}

Status Resource::NewCurrentUuid(int volume, bool clear_bitmap) {
  auto dev = device(volume);
  if (!dev) return Error(Errc::kNotFound, "resource {} has no volume {}", name_, volume);
  if (!dev->attached()) {
    return Error(Errc::kState, "new-current-uuid {}: minor {} has no disk attached", name_,
                 dev->minor());
  }
  if (clear_bitmap) {
    for (const auto& [id, c] : state().connections) {
      if (c.conn == ConnState::kConnected) {
        return Error(Errc::kState,
                     "new-current-uuid {}: --clear-bitmap while connected to {} is not supported "
                     "by bsr; run it while the connection is down (the peers then get a full "
                     "sync) or on a single node",
                     name_, c.name);
      }
    }
  }
  bool up_to_date = false;
  BSR_RETURN_IF_ERROR(dev->NewCurrentUuid(clear_bitmap, &up_to_date));
  SendUuidsToPeers(volume);
  if (!up_to_date) return Status::Ok();
  Status s = engine_.Change(
      "new-current-uuid",
      [volume](ResourceState& st) { st.devices[volume].disk = DiskState::kUpToDate; },
      {.internal = true});
  dev->UpdatePeerOosStats();
  return s;
}

Result<std::string> Resource::GenerationIds(int peer_node_id, int volume, bool verbose) const {
  auto dev = device(volume);
  if (!dev) return Error(Errc::kNotFound, "resource {} has no volume {}", name_, volume);
  if (!peers_.count(peer_node_id)) {
    return Error(Errc::kNotFound, "resource {} has no connection to node-id {}", name_,
                 peer_node_id);
  }
  return dev->GenerationIds(peer_node_id, verbose);
}

}  // namespace bsr::replication
