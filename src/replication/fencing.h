// DRBD 9's fencing rules (drbd_nl.c conn_try_outdate_peer, drbd_set_role; drbd_state.c
// SS_PRIMARY_NOP): pure decisions, plus the fence-peer run of a promotion. io thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "replication/resource_state.h"

namespace bsr::replication {

class Resource;

// A peer's `fencing` net option counts from resource-only on ("dont-care" and unset: no).
bool FencingActive(const std::string& policy);

// Peers a Secondary must fence before it may become Primary: fencing resource-only or
// resource-and-stonith (`fencing`, by peer node id), not connected, and a peer disk not
// known to be Outdated or worse (DUnknown, Consistent, UpToDate, or none known yet).
std::vector<int> PeersToFenceBeforePromote(const ResourceState& st,
                                           const std::map<int, std::string>& fencing);

// The reason a promotion is refused while `PeersToFenceBeforePromote` is not empty
// (DRBD's SS_PRIMARY_NOP), naming the peers; empty when nothing is in the way.
std::string UnfencedPeersReason(const ResourceState& st, const std::vector<int>& peers);

// What fence-peer's exit code means (conn_try_outdate_peer).
struct FenceVerdict {
  std::optional<DiskState> peer_disk;  // the peer's disks go down to this
  bool outdate_self = false;           // 6: the peer is Primary; our disks go Outdated
  bool broken = false;                 // not a fence-peer exit code: nothing changes
  std::string what;                    // DRBD's words for it
};
// `my_disk_up_to_date`: our best disk is UpToDate (exit 5 counts as outdated only then).
FenceVerdict InterpretFencePeerExit(int code, bool my_disk_up_to_date);

// Each configured peer's `fencing` net option, by node id ("dont-care" when unset).
std::map<int, std::string> FencingPolicies(const Resource& r);

// Promotion (TwoPc::Promote): runs fence-peer for `peers` one after the other and acts
// on each exit code through the state engine (6: outdates our own disks). `done` gets
// Ok when every peer is now Outdated or worse, else the reasons. Nothing happens after
// `alive` expired (the resource went down while a handler ran).
void FenceBeforePromote(Resource* r, std::vector<int> peers, std::weak_ptr<void> alive,
                        std::function<void(Status)> done);

// A forced promotion past failed fencing (DRBD 9.2 CS_FP_OUTDATE_PEERS): the peers still
// unfenced count as Outdated from now on ("Forced to consider peers as Outdated!").
void ForceOutdateUnfencedPeers(Resource* r);

}  // namespace bsr::replication
