// The sync decision on connect, from both sides' generation UUIDs (DRBD's rules,
// simplified): no sync, bitmap-based or full resync in one direction, split brain or
// unrelated data. Pure function; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bsr::replication {

struct GenerationUuids {
  uint64_t current = 0;
  uint64_t bitmap = 0;  // bitmap UUID kept for the other node (0: none)
  std::vector<uint64_t> history;
};

enum class SyncDecision {
  kNone,          // same data generation (or both just created): nothing to sync
  kSourceBitmap,  // local node sends the blocks its bitmap marks
  kTargetBitmap,  // local node receives them
  kSourceFull,    // local node sends everything
  kTargetFull,    // local node receives everything
  kSplitBrain,    // both changed data since they were last in sync
  kUnrelated,     // no common data generation at all
};

std::string_view SyncDecisionName(SyncDecision d);

// local/peer: each side's UUIDs, `bitmap` being the one each keeps for the other.
// Symmetric: Decide(a, b) is the mirror of Decide(b, a). `why` explains the rule used.
SyncDecision DecideSync(const GenerationUuids& local, const GenerationUuids& peer,
                        std::string* why);

}  // namespace bsr::replication
