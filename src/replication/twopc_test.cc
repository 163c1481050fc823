#include "replication/twopc.h"

#include <gtest/gtest.h>

namespace bsr::replication {
namespace {

using protocol::TwoPcVote;

PromoteVoteInput In(int me, int initiator) {
  PromoteVoteInput in;
  in.my_node_id = me;
  in.initiator = initiator;
  return in;
}

TEST(DecidePromoteVote, SecondaryWithoutConflictsSaysYes) {
  auto v = DecidePromoteVote(In(1, 0));
  EXPECT_EQ(v.vote, TwoPcVote::kYes);
  EXPECT_FALSE(v.yield_own);
}

TEST(DecidePromoteVote, PrimaryRefusesNamingItself) {
  auto in = In(1, 0);
  in.i_am_primary = true;
  auto v = DecidePromoteVote(in);
  EXPECT_EQ(v.vote, TwoPcVote::kNo);
  EXPECT_EQ(v.reason, "node 1 is Primary");
}

TEST(DecidePromoteVote, AnotherPrimaryPeerRefuses) {
  auto in = In(1, 0);
  in.primary_peers = {2};
  auto v = DecidePromoteVote(in);
  EXPECT_EQ(v.vote, TwoPcVote::kNo);
  EXPECT_NE(v.reason.find("node 2 is Primary"), std::string::npos) << v.reason;
}

TEST(DecidePromoteVote, BusyWithAnotherInitiatorSaysRetry) {
  auto in = In(1, 0);
  in.prepared_for = 2;
  EXPECT_EQ(DecidePromoteVote(in).vote, TwoPcVote::kRetry);
  in.prepared_for = 0;  // the same initiator asking again
  EXPECT_EQ(DecidePromoteVote(in).vote, TwoPcVote::kYes);
}

TEST(DecidePromoteVote, SimultaneousPromotionLowerNodeIdWins) {
  // Node 0 and node 1 both promote. Node 0 refuses node 1's request...
  auto low = In(0, 1);
  low.i_am_promoting = true;
  auto v0 = DecidePromoteVote(low);
  EXPECT_EQ(v0.vote, TwoPcVote::kNo);
  EXPECT_NE(v0.reason.find("node 0 is being promoted"), std::string::npos) << v0.reason;
  // ... and node 1 agrees to node 0's, giving up its own: exactly one wins.
  auto high = In(1, 0);
  high.i_am_promoting = true;
  auto v1 = DecidePromoteVote(high);
  EXPECT_EQ(v1.vote, TwoPcVote::kYes);
  EXPECT_TRUE(v1.yield_own);
}

}  // namespace
}  // namespace bsr::replication
