#include "control/io_loop.h"

#include <sched.h>

#include <charconv>

namespace bsr::control {

namespace {

// Below this a window is not worth a poll: it goes to zero instead.
constexpr std::chrono::nanoseconds kMinWindow = std::chrono::microseconds(1);

}  // namespace

Result<uint32_t> ParseBusyPollUs(std::string_view text) {
  uint32_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    return Error(Errc::kInvalidArgument, "busy-poll budget '{}' is not a number of microseconds",
                 text);
  }
  if (value > kMaxBusyPollUs) {
    return Error(Errc::kInvalidArgument, "busy-poll budget {} us is above the maximum {} us", value,
                 kMaxBusyPollUs);
  }
  return value;
}

IoLoop::IoLoop(asio::io_context& io, std::chrono::microseconds budget)
    : io_(io), budget_(budget), window_(budget) {}

void IoLoop::Run() {
  if (budget_.count() <= 0) {
    io_.run();
    return;
  }
  for (;;) {
    // Sleeps in the reactor until something is ready, then runs one handler.
    Clock::time_point before = Clock::now();
    ++stats_.sleeps;
    if (io_.run_one() == 0) return;  // stopped, or no work left (as run() returns)
    // How long the thread waited (plus the one handler, which is short). If polling
    // would have caught it, a longer window pays off; if not, a shorter one saves CPU.
    auto waited = Clock::now() - before;
    if (stats_.sleeps > 1) {
      if (window_ + waited <= budget_) {
        if (before + waited >= resume_at_) Grow();
      } else {
        Shrink();
      }
    }
    if (window_ == std::chrono::nanoseconds::zero()) {
      // No polling, but what is ready now still runs before the next wait is timed.
      io_.poll();
    } else {
      // Polls until a window passes without work; each poll runs what is ready.
      while (PollWindow()) {
      }
    }
    if (io_.stopped()) return;
  }
}

bool IoLoop::PollWindow() {
  Clock::time_point deadline = Clock::now() + window_;
  for (;;) {
    ++stats_.polls;
    size_t ran = io_.poll();
    if (io_.stopped()) return false;
    if (ran > 0) {
      ++stats_.poll_hits;
      return true;
    }
    if (Clock::now() >= deadline) {
      ++stats_.poll_misses;
      return false;
    }
    // Gives the CPU to any other runnable thread at once. QD1 replication is a chain
    // of three processes (client, Primary, Secondary) on what may be two CPUs: a
    // poller that kept its CPU would make the next link in the chain wait for it.
    Clock::time_point yielded = Clock::now();
    sched_yield();
    Clock::time_point back = Clock::now();
    if (back - yielded > budget_) {
      // Another thread held this CPU longer than the whole budget: the CPUs are busy.
      // A poller is runnable, not asleep, so when its message arrives nothing wakes it
      // ahead of that thread; a sleeper would be woken with priority. Stop polling.
      Contended(back);
      return false;
    }
  }
}

void IoLoop::Contended(Clock::time_point now) {
  ++stats_.contended;
  // Contention seen again soon after the last time: wait longer before trying again.
  bool again = now - last_contended_ < 4 * backoff_;
  backoff_ = again ? std::min(backoff_ * 2, kMaxBackoff) : kMinBackoff;
  last_contended_ = now;
  resume_at_ = now + backoff_;
  window_ = std::chrono::nanoseconds::zero();
}

void IoLoop::Grow() {
  if (window_ >= budget_) return;
  auto start = std::max<std::chrono::nanoseconds>(budget_ / 4, kMinWindow);
  window_ = window_ < start ? start : std::min<std::chrono::nanoseconds>(window_ * 2, budget_);
}

void IoLoop::Shrink() {
  window_ /= 2;
  if (window_ < kMinWindow) window_ = std::chrono::nanoseconds::zero();
}

}  // namespace bsr::control
