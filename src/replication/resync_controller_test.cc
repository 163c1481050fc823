#include "replication/resync_controller.h"

#include <gtest/gtest.h>

namespace bsr::replication {
namespace {

using std::chrono::milliseconds;

// A link that completes at most `cap` sectors per step: what was requested in one
// step comes back (up to the cap) before the next one.
struct Link {
  uint64_t cap;
  uint64_t in_flight = 0;
  uint64_t Complete() {
    uint64_t done = std::min(in_flight, cap);
    in_flight -= done;
    return done;
  }
};

TEST(ResyncOptions, DefaultsAreTheSchemas) {
  auto o = ParseResyncOptions({});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_FALSE(o->configured);
  EXPECT_EQ(o->resync_rate_kib, 250u);
  EXPECT_EQ(o->c_plan_ahead, 20u);
  EXPECT_EQ(o->c_delay_target, 1u);
  EXPECT_EQ(o->c_fill_target, 0u);
  EXPECT_EQ(o->c_max_rate_kib, 102400u);
  EXPECT_EQ(o->c_min_rate_kib, 250u);
}

TEST(ResyncOptions, UnitsAndErrors) {
  auto o = ParseResyncOptions({{"resync-rate", "10M"}, {"c-fill-target", "1M"}, {"x", "y"}});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_TRUE(o->configured);
  EXPECT_EQ(o->resync_rate_kib, 10240u);
  EXPECT_EQ(o->c_fill_target, 2048u);  // sectors
  auto bad = ParseResyncOptions({{"c-max-rate", "1X"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("c-max-rate"), std::string::npos);
  EXPECT_FALSE(ParseResyncOptions({{"c-plan-ahead", "301"}}).ok());
  EXPECT_FALSE(ParseResyncOptions({{"resync-rate", "fast"}}).ok());
}

TEST(ResyncController, FixedRateWhenPlanAheadIsZero) {
  ResyncOptions o;
  o.c_plan_ahead = 0;
  o.resync_rate_kib = 4096;
  ResyncController c(o);
  EXPECT_FALSE(c.dynamic());
  for (int i = 0; i < 5; ++i) EXPECT_EQ(c.Step(i * 100, 7), 819u);  // 4 MiB/s in 100 ms
  EXPECT_EQ(c.want_kib(), 4095u);
}

TEST(ResyncController, StartsAtResyncRateSpreadOverThePlan) {
  ResyncOptions o;  // c-plan-ahead 20 steps, resync-rate 250 KiB/s
  ResyncController c(o);
  EXPECT_TRUE(c.dynamic());
  // want = 50 sectors/step * 20 steps = 1000; a twentieth of it now.
  EXPECT_EQ(c.Step(0, 0), 50u);
  EXPECT_EQ(c.plan_total(), 950);
  EXPECT_EQ(c.want_kib(), 250u);
}

TEST(ResyncController, DelayTargetRampsUpToMaxRate) {
  ResyncOptions o;
  o.c_delay_target = 10;
  o.c_max_rate_kib = 20480;  // 4096 sectors per step
  ResyncController c(o);
  Link link{1u << 30};
  uint64_t in = 0, req = 0;
  int steps_to_max = -1;
  for (int i = 0; i < 100 && steps_to_max < 0; ++i) {
    req = c.Step(in, link.in_flight);
    link.in_flight += req;
    in = link.Complete();
    if (req == 4096) steps_to_max = i;
  }
  ASSERT_GE(steps_to_max, 5) << "the controller ramps up, it does not jump";
  EXPECT_LE(steps_to_max, 40);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(c.Step(4096, 0), 4096u) << "c-max-rate caps every step";
  }
}

TEST(ResyncController, FollowsALinkThatIsSlowerThanMaxRate) {
  ResyncOptions o;
  o.c_delay_target = 10;
  ResyncController c(o);  // c-max-rate 100 MiB/s
  Link link{2000};        // about 10 MiB/s
  uint64_t in = 0, sum = 0;
  for (int i = 0; i < 300; ++i) {
    uint64_t req = c.Step(in, link.in_flight);
    link.in_flight += req;
    in = link.Complete();
    if (i >= 200) sum += req;
  }
  double avg = static_cast<double>(sum) / 100.0;
  EXPECT_GT(avg, 2000 * 0.8);
  EXPECT_LT(avg, 2000 * 1.2);
  // What it keeps in flight is about c-delay-target (1 s) of the link's throughput.
  EXPECT_GT(link.in_flight, 2000u * 5);
  EXPECT_LT(link.in_flight, 2000u * 15);
}

TEST(ResyncController, FillTargetBoundsInFlight) {
  ResyncOptions o;
  o.c_fill_target = 4000;
  ResyncController c(o);
  Link link{500};
  uint64_t in = 0;
  for (int i = 0; i < 400; ++i) {
    link.in_flight += c.Step(in, link.in_flight);
    in = link.Complete();
  }
  EXPECT_GT(link.in_flight, 2000u);
  EXPECT_LT(link.in_flight, 6000u);
}

TEST(ResyncController, NeverNegative) {
  ResyncOptions o;
  o.c_fill_target = 10;
  ResyncController c(o);
  // Far more in flight than wanted: the plan goes negative, requests stop at 0.
  for (int i = 0; i < 30; ++i) EXPECT_EQ(c.Step(1, 1u << 20), 0u);
}

TEST(ResyncThrottle, OnlyWithApplicationIoAboveMinRate) {
  EXPECT_FALSE(ShouldThrottleResync(0, 1000, 100000));  // c-min-rate 0: never
  EXPECT_FALSE(ShouldThrottleResync(250, 64, 100000));  // no (real) application I/O
  EXPECT_FALSE(ShouldThrottleResync(250, 1000, 200));   // already at or below c-min-rate
  EXPECT_TRUE(ShouldThrottleResync(250, 1000, 100000));
}

TEST(SyncMarks, RateOverTheWindow) {
  SyncMarks m;
  auto t0 = SyncMarks::Clock::time_point{} + std::chrono::hours(1);
  EXPECT_EQ(m.RateKib(), 0u);
  m.Add(t0, 0);
  EXPECT_EQ(m.RateKib(), 0u);
  for (int i = 1; i <= 10; ++i) m.Add(t0 + milliseconds(100 * i), 2048u * i / 10);
  EXPECT_EQ(m.RateKib(), 1024u);  // 1 MiB in 1 s
  // Samples closer than kSpacing replace the newest one.
  m.Add(t0 + milliseconds(1010), 2048 + 20);
  m.Add(t0 + milliseconds(1020), 2048 + 40);
  EXPECT_NEAR(static_cast<double>(m.RateKib()), (2048 + 40) / 2 / 1.02, 2);
  // Old samples fall out of the window: the rate is the recent one.
  for (int i = 11; i <= 60; ++i) m.Add(t0 + milliseconds(100 * i), 2088 + 4096u * (i - 10) / 10);
  EXPECT_NEAR(static_cast<double>(m.RateKib()), 2048, 40);
}

}  // namespace
}  // namespace bsr::replication
