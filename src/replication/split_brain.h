// The connect-time sync decision as DRBD makes it in its sync handshake: the UUID
// comparison (DecideSync) refined by the crashed-primary flags and the disk states, split
// brain recovery by the after-sb-0pri/1pri/2pri policies or discard-my-data, and the
// rr-conflict check of a Primary that would become SyncTarget. Pure functions; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "protocol/states.h"
#include "replication/states.h"
#include "replication/sync_decision.h"

namespace bsr::replication {

// rr-conflict: what a Primary does when the decision makes it SyncTarget.
enum class RrConflict : uint8_t {
  kDisconnect,    // "I shall become SyncTarget, but I am primary!", StandAlone
  kCallPriLost,   // run the pri-lost handler, then as kDisconnect
  kViolently,     // become SyncTarget anyway
  kRetryConnect,  // drop this attempt and keep connecting
};
// "disconnect", "call-pri-lost", "violently", "retry-connect"; auto-discard is taken as
// disconnect. Unknown names: nullopt.
std::optional<RrConflict> ParseRrConflict(std::string_view name);

// What one node brings to the decision (the local node, or the peer as it reported).
struct SyncSide {
  GenerationUuids uuids;  // `bitmap`: the one kept for the other node
  bool primary = false;   // role now
  DiskState disk = DiskState::kUpToDate;
  uint64_t changes = 0;          // bits set in its bitmap toward the other node
  bool crashed_primary = false;  // it was Primary when it crashed (its AL was replayed)
  bool discard_my_data = false;  // `connect --discard-my-data` / net option
  // It was Primary when it lost the other node: the lowest bit of its current UUID (the
  // Primary starts a new generation with that bit set when the peer drops out).
  bool primary_at_split = false;
};

// The local node's net options that steer the decision (the peer's after-sb policies are
// the mirror of these: the handshake refuses anything else).
struct SplitBrainConfig {
  protocol::AfterSbPolicy after_sb_0pri = protocol::AfterSbPolicy::kDisconnect;
  protocol::AfterSbPolicy after_sb_1pri = protocol::AfterSbPolicy::kDisconnect;
  protocol::AfterSbPolicy after_sb_2pri = protocol::AfterSbPolicy::kDisconnect;
  bool always_asbp = false;
  RrConflict rr_conflict = RrConflict::kDisconnect;
};

struct ConnectDecision {
  // Final: kNone, kSource*/kTarget* (the resync to run), kSplitBrain (unresolved: the
  // split-brain handler, StandAlone) or kUnrelated (StandAlone).
  SyncDecision sync = SyncDecision::kNone;
  bool split_brain = false;      // a split brain was detected (initial-split-brain handler)
  bool auto_resolved = false;    // an after-sb policy picked the victim
  bool manual_resolved = false;  // discard-my-data picked the victim
  bool discarded_local = false;  // resolved with this node as the victim
  // call-pri-lost-after-sb made this Primary the victim: it must become Secondary before
  // the resync; if it cannot, run pri-lost-after-sb and drop the connection.
  bool demote_first = false;
  // The decision is incompatible with the roles (rr-conflict): drop the connection;
  // retry: keep connecting (retry-connect) instead of going StandAlone.
  bool drop = false;
  bool retry = false;
  bool call_pri_lost = false;  // rr-conflict call-pri-lost: run the pri-lost handler
  std::string why;             // the UUID rule that decided (DecideSync's text)
  // DRBD's log lines for this decision, in order ("Split-Brain detected, 1 primaries,
  // automatically solved. Sync from this node", ...).
  std::vector<std::string> log;
};

// local/peer as seen from the local node; `local_yields`: this node loses ties (the
// node with the higher node id does, so both nodes decide the same way). Symmetric:
// with the sides swapped, the mirrored config and !local_yields, the peer reaches the
// mirrored decision.
ConnectDecision DecideOnConnect(const SyncSide& local, const SyncSide& peer,
                                const SplitBrainConfig& cfg, bool local_yields);

// after-sb recovery alone: +1 local is SyncSource, -1 local is SyncTarget, 0 unresolved.
// `log` gets DRBD's notes ("Discard younger/older primary did not find a decision", ...).
int RecoverAfterSplitBrain(const SyncSide& local, const SyncSide& peer, const SplitBrainConfig& cfg,
                           bool local_yields, bool* demote_first, std::vector<std::string>* log);

}  // namespace bsr::replication
