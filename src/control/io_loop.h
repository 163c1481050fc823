// IoLoop: runs bsrd's io_context on the calling thread, polling it for a short,
// adaptive time after work before it sleeps. Owned and run by bsrd's main thread.
#pragma once

#include <asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

#include "common/status.h"

namespace bsr::control {

// Busy-poll budget for bsrd's io thread, in microseconds: --busy-poll-us or
// $BSR_BUSY_POLL_US. 0 turns polling off (the thread sleeps in epoll_wait at once).
inline constexpr uint32_t kDefaultBusyPollUs = 200;
inline constexpr uint32_t kMaxBusyPollUs = 10000;

// Parses a budget given as text (the environment variable): a decimal number of
// microseconds up to kMaxBusyPollUs.
Result<uint32_t> ParseBusyPollUs(std::string_view text);

struct IoLoopStats {
  uint64_t sleeps = 0;       // blocking waits (run_one calls)
  uint64_t polls = 0;        // non-blocking polls of the io_context
  uint64_t poll_hits = 0;    // polling windows that found work before they ran out
  uint64_t poll_misses = 0;  // windows that ran out: the thread went to sleep
  uint64_t contended = 0;    // polling stopped because other threads wanted the CPU
};

// Why poll: a thread that sleeps in epoll_wait is woken by the kernel when a request
// or an ack arrives, and on a virtual machine waking an idle vCPU costs microseconds
// (an IPI and a VM exit). A QD1 client sends its next request a few microseconds after
// our reply, and a peer's ack comes back tens of microseconds after our Data: polling
// through that gap catches it without the sleep and the wake-up.
//
// How long: the window starts only after handlers ran (an idle daemon sleeps and costs
// nothing) and adapts like KVM's halt polling: a sleep that ended within the budget
// would have been caught by a longer window, so the window grows (doubling, up to the
// budget); a sleep longer than the budget, or a window that ran out, shrinks it
// (halving, to zero), so a daemon whose traffic comes in gaps wider than the budget
// stops spinning after a few requests. Between polls the thread yields the CPU
// (sched_yield), so polling only uses time no other runnable thread wants; when a
// yield comes back later than the whole budget, the CPUs are oversubscribed and a
// poller would only queue behind other threads where a sleeper is woken ahead of
// them, so polling stops for a back-off (1 ms, doubling while it recurs, up to 1 s).
class IoLoop {
 public:
  IoLoop(asio::io_context& io, std::chrono::microseconds budget);

  // Runs until the io_context is stopped or runs out of work (as io_context::run).
  void Run();

  std::chrono::microseconds budget() const { return budget_; }
  // The current polling window (between 0 and the budget).
  std::chrono::nanoseconds window() const { return window_; }
  const IoLoopStats& stats() const { return stats_; }

 private:
  using Clock = std::chrono::steady_clock;
  // Polls for up to window_; true when a handler ran meanwhile.
  bool PollWindow();
  void Grow();
  void Shrink();
  // A yield gave the CPU away for longer than the budget: no polling for a while.
  void Contended(Clock::time_point now);

  static constexpr std::chrono::nanoseconds kMinBackoff = std::chrono::milliseconds(1);
  static constexpr std::chrono::nanoseconds kMaxBackoff = std::chrono::seconds(1);

  asio::io_context& io_;
  std::chrono::microseconds budget_;
  std::chrono::nanoseconds window_;
  std::chrono::nanoseconds backoff_ = kMinBackoff;
  Clock::time_point last_contended_;
  Clock::time_point resume_at_;  // no polling window grows before this
  IoLoopStats stats_;
};

}  // namespace bsr::control
