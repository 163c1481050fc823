#include "replication/resync_controller.h"

#include <algorithm>

#include "config/schema.h"

namespace bsr::replication {

namespace {

// One option in the schema's unit; its default when unset.
Result<int64_t> Option(const std::map<std::string, std::string>& opts, std::string_view name,
                       bool* set) {
  const config::OptionDef* def = config::FindOption(config::OptSection::kPeerDevice, name);
  if (!def) return Error(Errc::kInternal, "peer-device option {} missing from the schema", name);
  auto it = opts.find(std::string(name));
  std::string_view value = def->def;
  if (it != opts.end()) {
    value = it->second;
    *set = true;
  }
  auto n = config::ParseNumber(*def, value);
  if (!n.ok()) return Error(Errc::kInvalidArgument, "{} {}: {}", name, value, n.status().message());
  if (*n < def->min || *n > def->max) {
    return Error(Errc::kInvalidArgument, "{} {}: out of range {}..{} {}", name, value, def->min,
                 def->max, def->unit);
  }
  return *n;
}

}  // namespace

Result<ResyncOptions> ParseResyncOptions(const std::map<std::string, std::string>& opts) {
  ResyncOptions o;
  bool set = false;
  BSR_ASSIGN_OR_RETURN(int64_t rate, Option(opts, "resync-rate", &set));
  BSR_ASSIGN_OR_RETURN(int64_t plan, Option(opts, "c-plan-ahead", &set));
  BSR_ASSIGN_OR_RETURN(int64_t delay, Option(opts, "c-delay-target", &set));
  BSR_ASSIGN_OR_RETURN(int64_t fill, Option(opts, "c-fill-target", &set));
  BSR_ASSIGN_OR_RETURN(int64_t max, Option(opts, "c-max-rate", &set));
  BSR_ASSIGN_OR_RETURN(int64_t min, Option(opts, "c-min-rate", &set));
  o.configured = set;
  o.resync_rate_kib = static_cast<uint64_t>(rate);
  o.c_plan_ahead = static_cast<uint32_t>(plan);
  o.c_delay_target = static_cast<uint32_t>(delay);
  o.c_fill_target = static_cast<uint64_t>(fill);
  o.c_max_rate_kib = static_cast<uint64_t>(max);
  o.c_min_rate_kib = static_cast<uint64_t>(min);
  return o;
}

ResyncController::ResyncController(const ResyncOptions& o) : o_(o) {
  // One plan slot per 100 ms step of c-plan-ahead (tenths of a second).
  plan_.assign(o.c_plan_ahead, 0);
}

uint64_t ResyncController::Step(uint64_t sect_in, uint64_t in_flight) {
  constexpr int64_t kStepsPerSecond = 10;
  int64_t req;
  if (plan_.empty()) {
    // Fixed resync-rate: KiB/s -> sectors per step.
    req = static_cast<int64_t>(o_.resync_rate_kib) * 2 / kStepsPerSecond;
  } else {
    auto steps = static_cast<int64_t>(plan_.size());
    int64_t want;
    if (in_flight + sect_in == 0) {
      // Start of the resync: plan resync-rate for the whole c-plan-ahead horizon.
      want = static_cast<int64_t>(o_.resync_rate_kib) * 2 / kStepsPerSecond * steps;
    } else if (o_.c_fill_target) {
      want = static_cast<int64_t>(o_.c_fill_target);
    } else {
      // c-delay-target tenths of a second worth of what came in during one step.
      want = static_cast<int64_t>(sect_in) * o_.c_delay_target;
    }
    int64_t correction = want - static_cast<int64_t>(in_flight) - total_;
    // Spread the correction over the plan: every future step gets its share.
    int64_t cps = correction / steps;
    for (auto& v : plan_) v += cps;
    total_ += cps * steps;
    // This step's share leaves the fifo.
    int64_t curr = plan_[head_];
    plan_[head_] = 0;
    head_ = (head_ + 1) % plan_.size();
    total_ -= curr;
    req = static_cast<int64_t>(sect_in) + curr;
    req =
        std::clamp<int64_t>(req, 0, static_cast<int64_t>(o_.c_max_rate_kib) * 2 / kStepsPerSecond);
  }
  want_kib_ = static_cast<uint64_t>(req) * kStepsPerSecond / 2;
  return static_cast<uint64_t>(req);
}

bool ShouldThrottleResync(uint64_t c_min_rate_kib, uint64_t app_sectors_since_check,
                          uint64_t resync_rate_kib) {
  if (c_min_rate_kib == 0) return false;
  return app_sectors_since_check > 64 && resync_rate_kib > c_min_rate_kib;
}

void SyncMarks::Add(Clock::time_point now, uint64_t done_sectors) {
  // Samples at least kSpacing apart; the newest one is always current.
  if (marks_.size() >= 2 && now - marks_[marks_.size() - 2].first < kSpacing) {
    marks_.back() = {now, done_sectors};
  } else {
    marks_.emplace_back(now, done_sectors);
  }
  while (marks_.size() > 2 && now - marks_[1].first >= kWindow) marks_.pop_front();
}

uint64_t SyncMarks::RateKib() const {
  if (marks_.size() < 2) return 0;
  const auto& [t0, d0] = marks_.front();
  const auto& [t1, d1] = marks_.back();
  double secs = std::chrono::duration<double>(t1 - t0).count();
  if (secs < 0.05 || d1 < d0) return 0;
  return static_cast<uint64_t>(static_cast<double>(d1 - d0) / 2.0 / secs);
}

}  // namespace bsr::replication
