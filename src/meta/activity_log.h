// In-memory activity-log cache: which 4 MiB extents are "hot" (covered by the on-disk AL),
// their in-flight reference counts, LRU victims, and the transactions that record changes.
// No I/O; owned by Metadata, i.e. by the device's metadata strand.
#pragma once

#include <cstdint>
#include <set>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "meta/format.h"

namespace bsr::meta {

class ActivityLog {
 public:
  explicit ActivityLog(uint32_t slots);

  uint32_t slots() const { return static_cast<uint32_t>(slot_extent_.size()); }
  bool IsActive(uint32_t extent) const { return where_.count(extent) != 0; }
  uint32_t active() const { return static_cast<uint32_t>(where_.size()); }
  // Extents with in-flight I/O (DRBD's act_log->used): kept as a count because
  // congestion-extents reads it for every replicated write.
  uint32_t in_use() const { return in_use_; }

  // Slot changes needed to make [first, last] active: (slot, new extent) pairs, plus
  // the extents being evicted. kBusy when too few idle slots (caller retries after
  // CompleteIo); kInvalidArgument when the range needs more slots than the AL has.
  struct Plan {
    std::vector<AlTransaction::Update> updates;
    std::vector<uint32_t> evicted;
  };
  Result<Plan> PlanActivate(uint32_t first, uint32_t last) const;
  // Applies a plan to the table (after its transactions are on disk).
  void Apply(const Plan& plan);
  // Builds the transactions for `updates` (<= 64 each), each with the next context window.
  // Must be called after Apply so contexts show the new state.
  std::vector<AlTransaction> BuildTransactions(const std::vector<AlTransaction::Update>& updates,
                                               uint64_t first_tr_number);
  // One init transaction carrying the next context window (ring initialization).
  AlTransaction BuildInit(uint64_t tr_number);

  void Ref(uint32_t first, uint32_t last);
  Status Unref(uint32_t first, uint32_t last);

 private:
  std::vector<uint32_t> slot_extent_;
  std::vector<uint32_t> refs_;
  uint32_t in_use_ = 0;  // slots whose refs_ are not 0
  std::vector<uint64_t> last_use_;
  std::unordered_map<uint32_t, uint32_t> where_;  // extent -> slot
  uint64_t clock_ = 0;
  uint32_t context_cursor_ = 0;
  AlTransaction NextContext(uint16_t type, uint64_t tr_number);
};

// Extents to mark out of sync after a crash: every extent named by any valid transaction
// in the ring (updates and context). A superset of the extents hot at the crash, because
// each hot extent appears in a context window within the last (slots - 1) transactions.
std::set<uint32_t> ReplayExtents(const std::vector<AlTransaction>& transactions);

}  // namespace bsr::meta
