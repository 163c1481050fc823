// Resync rate control of one peer device: the peer-device options (resync-rate, c-*),
// DRBD's dynamic controller (a fifo planner stepped every 100 ms), the c-min-rate
// throttle decision and the speed marks behind status's dbdt1/eta. Plain values, no
// I/O; owned by a Connection's PeerDevice on the io thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"

namespace bsr::replication {

// Peer-device options in DRBD units. `configured` is false when none of them is set:
// the resync then runs as fast as max-buffers allows (bsr's default; see
// docs/replication.md).
struct ResyncOptions {
  bool configured = false;
  uint64_t resync_rate_kib = 250;  // fixed rate, and the start rate of the controller
  uint32_t c_plan_ahead = 20;      // tenths of a second; 0: fixed resync-rate
  uint32_t c_delay_target = 1;     // tenths of a second (used when c_fill_target is 0)
  uint64_t c_fill_target = 0;      // sectors in flight to aim for
  uint64_t c_max_rate_kib = 102400;
  uint64_t c_min_rate_kib = 250;  // 0: application I/O never slows the resync
};

// Parses the peer-device options of one volume (unknown keys are ignored; defaults
// are the configuration schema's). A bad value -> kInvalidArgument naming it.
Result<ResyncOptions> ParseResyncOptions(const std::map<std::string, std::string>& opts);

// DRBD's drbd_rs_controller / drbd_rs_number_requests. Call Step() every kStep with the
// sectors that completed since the last step and the sectors still in flight; it
// returns how many sectors the SyncTarget may request in this step.
class ResyncController {
 public:
  static constexpr std::chrono::milliseconds kStep{100};

  ResyncController() : ResyncController(ResyncOptions{}) {}
  explicit ResyncController(const ResyncOptions& o);

  // Dynamic (c-plan-ahead > 0) or fixed resync-rate.
  bool dynamic() const { return !plan_.empty(); }
  uint64_t Step(uint64_t sect_in, uint64_t in_flight);
  // The rate the last step asked for (drbdsetup's "want"), KiB/s.
  uint64_t want_kib() const { return want_kib_; }
  // Sum of the planned corrections still in the fifo (tests).
  int64_t plan_total() const { return total_; }

 private:
  ResyncOptions o_;
  std::vector<int64_t> plan_;  // one slot per step of c-plan-ahead
  size_t head_ = 0;
  int64_t total_ = 0;
  uint64_t want_kib_ = 0;
};

// c-min-rate (drbd_rs_c_min_rate_throttle): slow the resync down when application I/O
// (more than 64 sectors since the last check) competes and the resync currently runs
// faster than c-min-rate.
bool ShouldThrottleResync(uint64_t c_min_rate_kib, uint64_t app_sectors_since_check,
                          uint64_t resync_rate_kib);

// Progress marks of a running resync or verify: (time, sectors done) samples over the
// last few seconds; Rate() is drbdsetup's db1/dt1 in KiB/s.
class SyncMarks {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kSpacing{100};
  static constexpr std::chrono::milliseconds kWindow{3000};

  void Reset() { marks_.clear(); }
  void Add(Clock::time_point now, uint64_t done_sectors);
  uint64_t RateKib() const;

 private:
  std::deque<std::pair<Clock::time_point, uint64_t>> marks_;
};

// Per peer device: the rate control and counters of the running resync (target side
// mostly); reset when a resync starts or the connection ends. io thread.
struct ResyncRun {
  uint64_t run_id = 0;  // changes on every Reset(): timers of an older run stop
  ResyncOptions opts;
  ResyncController controller;
  SyncMarks marks;
  bool tick_running = false;
  uint64_t max_in_flight = 8u << 20;  // bytes: max-buffers pages of 4 KiB
  uint64_t in_flight = 0;             // bytes requested and not completed
  uint64_t sect_in = 0;               // sectors completed since the last step
  uint64_t budget = 0;                // bytes the controller allows to request now
  uint64_t own_io = 0;                // sectors of our own resync/verify disk I/O
  uint64_t app_io_mark = 0;           // application I/O sectors at the last check
  uint64_t same_csum = 0;             // sectors csums-alg found identical
  bool throttled = false;             // c-min-rate held back the last step

  void Reset() {
    uint64_t id = run_id + 1;
    *this = ResyncRun{};
    run_id = id;
  }
};

// Online verify of one peer device (verify.cc). VerifyS requests 4 KiB blocks and
// compares digests; VerifyT answers. io thread.
struct VerifyRun {
  bool active = false;
  bool source = false;
  uint64_t start_bit = 0;
  uint64_t stop_bit = 0;  // exclusive
  uint64_t position = 0;  // source: next bit to request
  uint64_t total_sectors = 0;
  uint64_t left_sectors = 0;
  uint64_t oos_blocks = 0;  // 4 KiB blocks found different
  uint64_t replied = 0;     // target: OvReply sent
  uint64_t results = 0;     // target: OvResult received
  bool peer_done = false;   // target: VerifyS ended
  bool finishing = false;
  uint64_t next_id = 1;
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> requests;  // source: id -> (offset, len)
  uint64_t oos_run_start = 0;  // the run of differing blocks being collected for the log
  uint64_t oos_run_len = 0;
  std::chrono::steady_clock::time_point started;
};

}  // namespace bsr::replication
