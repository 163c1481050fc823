#include "replication/sync_decision.h"

#include <fmt/format.h>

#include "meta/metadata.h"

namespace bsr::replication {
namespace {

// The lowest bit is DRBD's "was Primary" marker; it never distinguishes generations.
uint64_t U(uint64_t uuid) {
  return uuid & ~uint64_t{1};
}

bool InHistory(const GenerationUuids& g, uint64_t uuid) {
  if (U(uuid) == 0) return false;
  for (uint64_t h : g.history) {
    if (U(h) == U(uuid)) return true;
  }
  return false;
}

// Every UUID this side has ever had besides its current one.
bool SharesAncestor(const GenerationUuids& a, const GenerationUuids& b) {
  std::vector<uint64_t> as = a.history;
  as.push_back(a.bitmap);
  std::vector<uint64_t> bs = b.history;
  bs.push_back(b.bitmap);
  for (uint64_t x : as) {
    if (U(x) == 0 || U(x) == meta::kUuidJustCreated) continue;
    for (uint64_t y : bs) {
      if (U(x) == U(y)) return true;
    }
  }
  return false;
}

}  // namespace

std::string_view SyncDecisionName(SyncDecision d) {
  switch (d) {
    case SyncDecision::kNone: return "no-sync";
    case SyncDecision::kSourceBitmap: return "bitmap-based sync as SyncSource";
    case SyncDecision::kTargetBitmap: return "bitmap-based sync as SyncTarget";
    case SyncDecision::kSourceFull: return "full sync as SyncSource";
    case SyncDecision::kTargetFull: return "full sync as SyncTarget";
    case SyncDecision::kSplitBrain: return "split-brain";
    case SyncDecision::kUnrelated: return "unrelated data";
  }
  return "?";
}

SyncDecision DecideSync(const GenerationUuids& local, const GenerationUuids& peer,
                        std::string* why) {
  auto say = [&](std::string s) {
    if (why) *why = std::move(s);
  };
  const uint64_t jc = meta::kUuidJustCreated;
  uint64_t lc = U(local.current), pc = U(peer.current);
  if (lc == jc && pc == jc) {
    say("both nodes have just-created metadata; waiting for primary --force");
    return SyncDecision::kNone;
  }
  if (lc == jc || lc == 0) {
    say("this node has no data generation yet; the peer has");
    return SyncDecision::kTargetFull;
  }
  if (pc == jc || pc == 0) {
    say("the peer has no data generation yet; this node has");
    return SyncDecision::kSourceFull;
  }
  if (lc == pc) {
    say("current UUIDs are equal");
    return SyncDecision::kNone;
  }
  if (U(local.bitmap) != 0 && U(local.bitmap) == pc) {
    say(fmt::format("our bitmap UUID for the peer {:016X} is its current UUID", U(local.bitmap)));
    return SyncDecision::kSourceBitmap;
  }
  if (U(peer.bitmap) != 0 && U(peer.bitmap) == lc) {
    say(fmt::format("the peer's bitmap UUID for us {:016X} is our current UUID", U(peer.bitmap)));
    return SyncDecision::kTargetBitmap;
  }
  if (U(local.bitmap) != 0 && U(local.bitmap) == U(peer.bitmap)) {
    say(fmt::format("both changed data since the common generation {:016X}", U(local.bitmap)));
    return SyncDecision::kSplitBrain;
  }
  if (InHistory(local, pc)) {
    say("the peer's current UUID is in our history");
    return SyncDecision::kSourceFull;
  }
  if (InHistory(peer, lc)) {
    say("our current UUID is in the peer's history");
    return SyncDecision::kTargetFull;
  }
  if (SharesAncestor(local, peer)) {
    say("both changed data since a common ancestor generation");
    return SyncDecision::kSplitBrain;
  }
  say(fmt::format("current UUIDs {:016X} and {:016X} share no history", lc, pc));
  return SyncDecision::kUnrelated;
}

}  // namespace bsr::replication
