#include "control/io_loop.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <time.h>

#include <asio.hpp>
#include <atomic>
#include <thread>

namespace bsr::control {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

double ThreadCpuMs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// One handler every `every` until `*ticks` reaches `count`.
void TickEvery(asio::steady_timer& timer, std::chrono::microseconds every, int count, int* ticks) {
  timer.expires_after(every);
  timer.async_wait([&timer, every, count, ticks](const asio::error_code&) {
    if (++*ticks < count) TickEvery(timer, every, count, ticks);
  });
}

TEST(IoLoop, ParsesBudget) {
  EXPECT_EQ(*ParseBusyPollUs("0"), 0u);
  EXPECT_EQ(*ParseBusyPollUs("50"), 50u);
  EXPECT_EQ(*ParseBusyPollUs("10000"), 10000u);
  EXPECT_FALSE(ParseBusyPollUs("").ok());
  EXPECT_FALSE(ParseBusyPollUs("-1").ok());
  EXPECT_FALSE(ParseBusyPollUs("50us").ok());
  EXPECT_FALSE(ParseBusyPollUs("10001").ok());
  EXPECT_NE(ParseBusyPollUs("x").status().message().find("'x'"), std::string::npos);
}

TEST(IoLoop, ZeroBudgetRunsLikeRun) {
  asio::io_context io(1);
  int ran = 0;
  for (int i = 0; i < 3; ++i) asio::post(io, [&] { ++ran; });
  IoLoop loop(io, microseconds(0));
  loop.Run();  // returns when the work is done, as run() does
  EXPECT_EQ(ran, 3);
  EXPECT_EQ(loop.stats().polls, 0u);
}

TEST(IoLoop, ReturnsWhenWorkRunsOutOrStopIsCalled) {
  asio::io_context io(1);
  int ran = 0;
  asio::post(io, [&] { asio::post(io, [&] { ++ran; }); });
  IoLoop loop(io, microseconds(100));
  loop.Run();
  EXPECT_EQ(ran, 1);

  // With work outstanding forever, stop() from another thread ends the loop, whether it
  // sleeps or polls at that moment.
  asio::io_context io2(1);
  auto guard = asio::make_work_guard(io2);
  IoLoop loop2(io2, microseconds(10000));
  asio::steady_timer tick(io2);
  std::function<void()> again = [&] {
    tick.expires_after(microseconds(200));
    tick.async_wait([&](const asio::error_code& ec) {
      if (!ec) again();
    });
  };
  again();
  std::thread runner([&] { loop2.Run(); });
  std::this_thread::sleep_for(milliseconds(30));
  io2.stop();
  runner.join();
  EXPECT_TRUE(io2.stopped());
}

// Handlers 2 ms apart are further apart than a 100 us budget: polling would not catch
// them, so the window shrinks to nothing and the thread sleeps between them.
TEST(IoLoop, WindowShrinksWhenGapsExceedTheBudget) {
  asio::io_context io(1);
  IoLoop loop(io, microseconds(100));
  asio::steady_timer timer(io);
  int ticks = 0;
  TickEvery(timer, milliseconds(2), 12, &ticks);
  loop.Run();
  EXPECT_EQ(ticks, 12);
  EXPECT_EQ(loop.window().count(), 0);
  EXPECT_GE(loop.stats().sleeps, 12u);
}

// An idle loop (work outstanding, nothing happening) sleeps: it spends no CPU.
TEST(IoLoop, IdleLoopSleeps) {
  asio::io_context io(1);
  auto guard = asio::make_work_guard(io);
  IoLoop loop(io, microseconds(10000));
  std::atomic<double> cpu_ms{-1};
  asio::post(io, [] {});  // one handler: a full polling window follows it
  std::thread runner([&] {
    double start = ThreadCpuMs();
    loop.Run();
    cpu_ms = ThreadCpuMs() - start;
  });
  std::this_thread::sleep_for(milliseconds(300));
  io.stop();
  runner.join();
  // One 10 ms window at most, then sleep for the rest of the 300 ms.
  EXPECT_LT(cpu_ms.load(), 60.0);
  EXPECT_LE(loop.stats().poll_misses, 2u);
}

// A thread that keeps the loop's CPU busy: a yield gives the CPU away for a whole time
// slice, so the loop stops polling (it would only queue behind that thread).
TEST(IoLoop, StopsPollingWhenItsCpuIsBusy) {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(0, &one);
  asio::io_context io(1);
  IoLoop loop(io, microseconds(50));
  std::atomic<bool> stop{false};
  std::thread hog([&] {
    pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
    while (!stop.load(std::memory_order_relaxed)) {
    }
  });
  asio::steady_timer timer(io);
  int ticks = 0;
  TickEvery(timer, microseconds(20), 200, &ticks);
  std::thread runner([&] {
    pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
    loop.Run();
  });
  runner.join();
  stop = true;
  hog.join();
  EXPECT_EQ(ticks, 200);
  EXPECT_GE(loop.stats().contended, 1u);
  // After the first time, the back-off keeps it from polling on every tick.
  EXPECT_LT(loop.stats().contended, 50u) << loop.stats().polls << " polls";
}

// A ping-pong peer that answers at once: the loop's polling catches the next message
// without sleeping, most of the time.
TEST(IoLoop, PollingCatchesAQuickPeer) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  asio::io_context io(1);
  asio::local::stream_protocol::socket sock(io, asio::local::stream_protocol(), fds[0]);
  IoLoop loop(io, microseconds(10000));
  constexpr int kRounds = 400;
  char byte = 0;
  int echoed = 0;
  std::function<void()> read = [&] {
    sock.async_read_some(asio::buffer(&byte, 1), [&](const asio::error_code& ec, size_t n) {
      if (ec || n == 0) return;
      asio::write(sock, asio::buffer(&byte, 1));
      ++echoed;
      read();
    });
  };
  read();
  std::thread peer([&] {
    char b = 'x';
    for (int i = 0; i < kRounds; ++i) {
      if (::write(fds[1], &b, 1) != 1 || ::read(fds[1], &b, 1) != 1) break;
    }
    ::close(fds[1]);
  });
  loop.Run();
  peer.join();
  EXPECT_EQ(echoed, kRounds);
  // A round that finds no message ready either polls until it comes or sleeps; on an
  // unloaded machine nearly all poll. (One poll may run many rounds: asio reads the
  // socket speculatively when a read starts, so a quick peer keeps it busy.)
  EXPECT_LT(loop.stats().sleeps, static_cast<uint64_t>(kRounds / 4))
      << loop.stats().polls << " polls, " << loop.stats().poll_hits << " hits";
}

}  // namespace
}  // namespace bsr::control
