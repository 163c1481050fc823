#include "replication/split_brain.h"

#include <fmt/format.h>

#include "meta/metadata.h"

namespace bsr::replication {
namespace {

using protocol::AfterSbPolicy;

uint64_t U(uint64_t uuid) {
  return uuid & ~uint64_t{1};
}

bool IsSource(SyncDecision d) {
  return d == SyncDecision::kSourceBitmap || d == SyncDecision::kSourceFull;
}
bool IsTarget(SyncDecision d) {
  return d == SyncDecision::kTargetBitmap || d == SyncDecision::kTargetFull;
}
SyncDecision Direction(bool source, bool full) {
  if (source) return full ? SyncDecision::kSourceFull : SyncDecision::kSourceBitmap;
  return full ? SyncDecision::kTargetFull : SyncDecision::kTargetBitmap;
}

// A disk that holds data another node can sync from (DRBD: disk > D_INCONSISTENT).
bool HasData(DiskState d) {
  return d == DiskState::kOutdated || d == DiskState::kConsistent || d == DiskState::kUpToDate;
}

std::string ConfigError(std::string_view option, AfterSbPolicy p) {
  return fmt::format("Configuration error: {} {} is not a policy for this case", option,
                     protocol::AfterSbPolicyName(p));
}

// DRBD's drbd_asb_recover_0p: no node is Primary now (or a 1/2-primary policy defers to
// the 0-primary one).
int Recover0p(const SyncSide& l, const SyncSide& p, const SplitBrainConfig& cfg, bool yields,
              std::vector<std::string>* log) {
  const AfterSbPolicy pol = cfg.after_sb_0pri;
  const bool self = l.primary_at_split, peer = p.primary_at_split;
  const uint64_t ch_self = l.changes, ch_peer = p.changes;
  const int tie = yields ? -1 : 1;
  switch (pol) {
    case AfterSbPolicy::kConsensus:
    case AfterSbPolicy::kDiscardSecondary:
    case AfterSbPolicy::kCallPriLostAfterSb:
    case AfterSbPolicy::kViolentlyAs0p: log->push_back(ConfigError("after-sb-0pri", pol)); return 0;
    case AfterSbPolicy::kDisconnect: return 0;
    case AfterSbPolicy::kDiscardLocal: return -1;
    case AfterSbPolicy::kDiscardRemote: return 1;
    case AfterSbPolicy::kDiscardYoungerPrimary:
    case AfterSbPolicy::kDiscardOlderPrimary:
    case AfterSbPolicy::kDiscardZeroChanges:
    case AfterSbPolicy::kDiscardLeastChanges: break;
  }
  if (pol == AfterSbPolicy::kDiscardYoungerPrimary || pol == AfterSbPolicy::kDiscardOlderPrimary) {
    // The node that was Primary when the two lost each other is the older Primary; the
    // other one was promoted afterwards (the younger one).
    if (self != peer) {
      bool keep_self = pol == AfterSbPolicy::kDiscardYoungerPrimary ? self : peer;
      return keep_self ? 1 : -1;
    }
    log->push_back(
        "Discard younger/older primary did not find a decision; using discard-least-changes "
        "instead");
  }
  if (pol != AfterSbPolicy::kDiscardLeastChanges) {
    if (ch_peer == 0 && ch_self == 0) return tie;
    if (ch_peer == 0) return 1;
    if (ch_self == 0) return -1;
    if (pol == AfterSbPolicy::kDiscardZeroChanges) return 0;
  }
  if (ch_self < ch_peer) return -1;
  if (ch_self > ch_peer) return 1;
  return tie;
}

}  // namespace

std::optional<RrConflict> ParseRrConflict(std::string_view name) {
  if (name == "disconnect" || name == "auto-discard") return RrConflict::kDisconnect;
  if (name == "call-pri-lost") return RrConflict::kCallPriLost;
  if (name == "violently") return RrConflict::kViolently;
  if (name == "retry-connect") return RrConflict::kRetryConnect;
  return std::nullopt;
}

int RecoverAfterSplitBrain(const SyncSide& l, const SyncSide& p, const SplitBrainConfig& cfg,
                           bool yields, bool* demote_first, std::vector<std::string>* log) {
  *demote_first = false;
  int pcount = (l.primary ? 1 : 0) + (p.primary ? 1 : 0);
  if (pcount == 0) return Recover0p(l, p, cfg, yields, log);
  const AfterSbPolicy pol = pcount == 1 ? cfg.after_sb_1pri : cfg.after_sb_2pri;
  const char* option = pcount == 1 ? "after-sb-1pri" : "after-sb-2pri";
  switch (pol) {
    case AfterSbPolicy::kDisconnect: return 0;
    case AfterSbPolicy::kViolentlyAs0p: return Recover0p(l, p, cfg, yields, log);
    case AfterSbPolicy::kConsensus:
      if (pcount == 1) {
        // Only when the 0-primary policy picks the Secondary as the victim.
        int hg = Recover0p(l, p, cfg, yields, log);
        if (hg == -1 && !l.primary) return -1;
        if (hg == 1 && l.primary) return 1;
        return 0;
      }
      break;
    case AfterSbPolicy::kDiscardSecondary:
      if (pcount == 1) return l.primary ? 1 : -1;
      break;
    case AfterSbPolicy::kCallPriLostAfterSb: {
      int hg = Recover0p(l, p, cfg, yields, log);
      // The losing Primary must give up its role first (pri-lost-after-sb if it can't).
      if (hg == -1 && l.primary) *demote_first = true;
      return hg;
    }
    default: break;
  }
  log->push_back(ConfigError(option, pol));
  return 0;
}

ConnectDecision DecideOnConnect(const SyncSide& local, const SyncSide& peer,
                                const SplitBrainConfig& cfg, bool local_yields) {
  ConnectDecision d;
  SyncDecision s = DecideSync(local.uuids, peer.uuids, &d.why);
  const uint64_t lc = U(local.uuids.current), pc = U(peer.uuids.current);
  const uint64_t jc = meta::kUuidJustCreated;

  // Same generation, but a node crashed while Primary: the extents of its activity log
  // may differ; they are marked in its bitmap and resynced from it (DRBD: "common power
  // failure"; if both crashed as Primary the node that yields ties becomes SyncTarget).
  if (s == SyncDecision::kNone && lc == pc && lc != jc && lc != 0) {
    if (local.crashed_primary && peer.crashed_primary) {
      s = local_yields ? SyncDecision::kTargetBitmap : SyncDecision::kSourceBitmap;
      d.why = "both nodes crashed as Primary; the activity-log extents are resynced";
    } else if (local.crashed_primary) {
      s = SyncDecision::kSourceBitmap;
      d.why = "this node crashed as Primary; its activity-log extents are resynced to the peer";
    } else if (peer.crashed_primary) {
      s = SyncDecision::kTargetBitmap;
      d.why = "the peer crashed as Primary; its activity-log extents are resynced from it";
    }
  }
  if (s == SyncDecision::kUnrelated) {
    d.sync = s;
    d.log.push_back("Unrelated data, aborting!");
    return d;
  }
  // An Inconsistent disk never is a sync source while the other node has data.
  if ((local.disk == DiskState::kInconsistent && HasData(peer.disk)) ||
      (peer.disk == DiskState::kInconsistent && HasData(local.disk))) {
    bool source = HasData(local.disk);
    // A bitmap-based resync only when the UUIDs already chose this direction: otherwise
    // no bitmap describes what the Inconsistent side lacks (e.g. an interrupted resync
    // from a third node), so everything is copied.
    bool keep = source ? s == SyncDecision::kSourceBitmap : s == SyncDecision::kTargetBitmap;
    s = Direction(source, !keep);
    d.log.push_back(
        fmt::format("Becoming sync {} due to disk states.", source ? "source" : "target"));
  }

  bool peer_demotes = false;
  if (s == SyncDecision::kSplitBrain) {
    d.split_brain = true;
    // Both kept the same bitmap UUID: each bitmap covers everything it wrote since then,
    // so the policies may pick a victim and a bitmap-based resync repairs it. Otherwise
    // only with always-asbp, and then with a full sync.
    const bool bitmaps_agree =
        U(local.uuids.bitmap) != 0 && U(local.uuids.bitmap) == U(peer.uuids.bitmap);
    const int pcount = (local.primary ? 1 : 0) + (peer.primary ? 1 : 0);
    int hg = 0;
    if (bitmaps_agree || cfg.always_asbp) {
      hg = RecoverAfterSplitBrain(local, peer, cfg, local_yields, &d.demote_first, &d.log);
      if (hg != 0) {
        d.auto_resolved = true;
        d.log.push_back(fmt::format(
            "Split-Brain detected, {} primaries, automatically solved. Sync from {} node", pcount,
            hg < 0 ? "peer" : "this"));
        if (!bitmaps_agree) d.log.push_back("Doing a full sync, since UUIDs where ambiguous.");
        // The mirror of demote_first, as the peer decides it.
        if (hg > 0 && peer.primary) {
          SplitBrainConfig mirrored = cfg;
          auto mirror = [](AfterSbPolicy p) {
            if (p == AfterSbPolicy::kDiscardLocal) return AfterSbPolicy::kDiscardRemote;
            if (p == AfterSbPolicy::kDiscardRemote) return AfterSbPolicy::kDiscardLocal;
            return p;
          };
          mirrored.after_sb_0pri = mirror(cfg.after_sb_0pri);
          std::vector<std::string> ignore;
          RecoverAfterSplitBrain(peer, local, mirrored, !local_yields, &peer_demotes, &ignore);
        }
      }
    }
    if (hg == 0) {
      if (local.discard_my_data && !peer.discard_my_data) hg = -1;
      if (!local.discard_my_data && peer.discard_my_data) hg = 1;
      if (hg != 0) {
        d.manual_resolved = true;
        d.log.push_back(fmt::format("Split-Brain detected, manually solved. Sync from {} node",
                                    hg < 0 ? "peer" : "this"));
      }
    }
    if (hg == 0) {
      d.demote_first = false;
      d.sync = SyncDecision::kSplitBrain;
      d.log.push_back("Split-Brain detected but unresolved, dropping connection!");
      return d;
    }
    s = Direction(hg > 0, !bitmaps_agree);
    d.discarded_local = hg < 0;
  }
  d.sync = s;

  if (IsSource(s) && !HasData(local.disk)) {
    d.drop = true;
    d.log.push_back("I shall become SyncSource, but I am inconsistent!");
    return d;
  }
  if (IsTarget(s) && !HasData(peer.disk)) {
    d.drop = true;
    d.log.push_back("the peer shall become SyncSource, but it is inconsistent");
    return d;
  }
  // rr-conflict: a Primary with good data would become SyncTarget. Both nodes apply it
  // (the option is taken to be the same on both), so both drop the attempt.
  bool local_conflict =
      IsTarget(s) && local.primary && !d.demote_first && local.disk >= DiskState::kConsistent;
  bool peer_conflict =
      IsSource(s) && peer.primary && !peer_demotes && peer.disk >= DiskState::kConsistent;
  if ((local_conflict || peer_conflict) && cfg.rr_conflict != RrConflict::kViolently) {
    d.drop = true;
    d.retry = cfg.rr_conflict == RrConflict::kRetryConnect;
    d.call_pri_lost = local_conflict && cfg.rr_conflict == RrConflict::kCallPriLost;
    d.log.push_back(local_conflict ? "I shall become SyncTarget, but I am primary!"
                                   : "the peer is Primary and would become SyncTarget");
  } else if (local_conflict) {
    d.log.push_back("Becoming SyncTarget, violating the stable-data assumption");
  }
  return d;
}

}  // namespace bsr::replication
