#include "meta/activity_log.h"

#include <algorithm>

namespace bsr::meta {

ActivityLog::ActivityLog(uint32_t slots)
    : slot_extent_(slots, kNoExtent), refs_(slots, 0), last_use_(slots, 0) {}

Result<ActivityLog::Plan> ActivityLog::PlanActivate(uint32_t first, uint32_t last) const {
  Plan plan;
  std::vector<uint32_t> missing;
  for (uint64_t e = first; e <= last; ++e) {
    if (!IsActive(static_cast<uint32_t>(e))) missing.push_back(static_cast<uint32_t>(e));
  }
  if (missing.empty()) return plan;
  if (uint64_t{last} - first + 1 > slots()) {
    return Error(Errc::kInvalidArgument, "I/O spans {} extents of 4 MiB, more than al-extents {}",
                 last - first + 1, slots());
  }
  // Candidates: empty slots first, then idle slots least recently used first; never a
  // slot holding an extent of this very range.
  std::vector<uint32_t> cand;
  for (uint32_t s = 0; s < slots(); ++s) {
    if (slot_extent_[s] == kNoExtent) cand.push_back(s);
  }
  if (cand.size() < missing.size()) {
    std::vector<uint32_t> idle;
    for (uint32_t s = 0; s < slots(); ++s) {
      uint32_t e = slot_extent_[s];
      if (e != kNoExtent && refs_[s] == 0 && (e < first || e > last)) idle.push_back(s);
    }
    size_t need = missing.size() - cand.size();
    if (idle.size() < need) {
      return Error(Errc::kBusy, "activity log full: {} extents in use, {} more needed", in_use(),
                   missing.size());
    }
    std::partial_sort(idle.begin(), idle.begin() + static_cast<long>(need), idle.end(),
                      [&](uint32_t a, uint32_t b) { return last_use_[a] < last_use_[b]; });
    for (size_t i = 0; i < need; ++i) {
      cand.push_back(idle[i]);
      plan.evicted.push_back(slot_extent_[idle[i]]);
    }
  }
  for (size_t i = 0; i < missing.size(); ++i) {
    plan.updates.push_back({static_cast<uint16_t>(cand[i]), missing[i]});
  }
  return plan;
}

void ActivityLog::Apply(const Plan& plan) {
  for (const auto& u : plan.updates) {
    uint32_t old = slot_extent_[u.slot];
    if (old != kNoExtent) where_.erase(old);
    slot_extent_[u.slot] = u.extent;
    where_[u.extent] = u.slot;
    if (refs_[u.slot] != 0) --in_use_;
    refs_[u.slot] = 0;
    last_use_[u.slot] = ++clock_;
  }
}

AlTransaction ActivityLog::NextContext(uint16_t type, uint64_t tr_number) {
  AlTransaction tr;
  tr.type = type;
  tr.tr_number = tr_number;
  tr.context_start = context_cursor_;
  uint32_t n = std::min<uint32_t>(kAlContextPerTransaction, slots() - context_cursor_);
  tr.context.assign(slot_extent_.begin() + context_cursor_,
                    slot_extent_.begin() + context_cursor_ + n);
  context_cursor_ = (context_cursor_ + n) % slots();
  return tr;
}

std::vector<AlTransaction> ActivityLog::BuildTransactions(
    const std::vector<AlTransaction::Update>& updates, uint64_t first_tr_number) {
  std::vector<AlTransaction> out;
  for (size_t i = 0; i < updates.size(); i += kAlMaxUpdates) {
    AlTransaction tr = NextContext(AlTransaction::kUpdate, first_tr_number + out.size());
    size_t end = std::min<size_t>(updates.size(), i + kAlMaxUpdates);
    tr.updates.assign(updates.begin() + static_cast<long>(i),
                      updates.begin() + static_cast<long>(end));
    out.push_back(std::move(tr));
  }
  return out;
}

AlTransaction ActivityLog::BuildInit(uint64_t tr_number) {
  return NextContext(AlTransaction::kInit, tr_number);
}

void ActivityLog::Ref(uint32_t first, uint32_t last) {
  for (uint64_t e = first; e <= last; ++e) {
    auto it = where_.find(static_cast<uint32_t>(e));
    if (it == where_.end()) continue;
    if (refs_[it->second]++ == 0) ++in_use_;
    last_use_[it->second] = ++clock_;
  }
}

Status ActivityLog::Unref(uint32_t first, uint32_t last) {
  for (uint64_t e = first; e <= last; ++e) {
    auto it = where_.find(static_cast<uint32_t>(e));
    if (it == where_.end() || refs_[it->second] == 0) {
      return Error(Errc::kState, "CompleteIo: extent {} has no I/O in flight", e);
    }
  }
  for (uint64_t e = first; e <= last; ++e) {
    if (--refs_[where_[static_cast<uint32_t>(e)]] == 0) --in_use_;
  }
  return Status::Ok();
}

std::set<uint32_t> ReplayExtents(const std::vector<AlTransaction>& transactions) {
  std::set<uint32_t> out;
  for (const auto& tr : transactions) {
    for (const auto& u : tr.updates) {
      if (u.extent != kNoExtent) out.insert(u.extent);
    }
    for (uint32_t e : tr.context) {
      if (e != kNoExtent) out.insert(e);
    }
  }
  return out;
}

}  // namespace bsr::meta
