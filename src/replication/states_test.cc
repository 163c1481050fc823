#include "replication/states.h"

#include <gtest/gtest.h>

namespace bsr::replication {
namespace {

TEST(States, NamesMatchDrbd) {
  EXPECT_EQ(Name(Role::kPrimary), "Primary");
  EXPECT_EQ(Name(DiskState::kUpToDate), "UpToDate");
  EXPECT_EQ(Name(DiskState::kDUnknown), "DUnknown");
  EXPECT_EQ(Name(ConnState::kStandAlone), "StandAlone");
  EXPECT_EQ(Name(ConnState::kConnecting), "Connecting");
  EXPECT_EQ(Name(ReplState::kWFBitMapS), "WFBitMapS");
  EXPECT_EQ(Name(ReplState::kPausedSyncT), "PausedSyncT");
}

TEST(States, ParseIsInverseOfName) {
  for (int i = 0; i <= static_cast<int>(DiskState::kUpToDate); ++i) {
    auto d = static_cast<DiskState>(i);
    EXPECT_EQ(ParseDiskState(Name(d)), d);
  }
  for (int i = 0; i <= static_cast<int>(ReplState::kBehind); ++i) {
    auto r = static_cast<ReplState>(i);
    EXPECT_EQ(ParseReplState(Name(r)), r);
  }
  for (int i = 0; i <= static_cast<int>(ConnState::kConnected); ++i) {
    auto c = static_cast<ConnState>(i);
    EXPECT_EQ(ParseConnState(Name(c)), c);
  }
  EXPECT_EQ(ParseRole("Secondary"), Role::kSecondary);
  EXPECT_FALSE(ParseRole("secondary").has_value());
  EXPECT_FALSE(ParseDiskState("UpToDateX").has_value());
}

TEST(States, Predicates) {
  EXPECT_TRUE(IsSyncing(ReplState::kSyncTarget));
  EXPECT_TRUE(IsSyncing(ReplState::kPausedSyncS));
  EXPECT_FALSE(IsSyncing(ReplState::kEstablished));
  EXPECT_TRUE(HasDisk(DiskState::kInconsistent));
  EXPECT_FALSE(HasDisk(DiskState::kDiskless));
}

}  // namespace
}  // namespace bsr::replication
