#include "replication/twopc.h"

#include <gtest/gtest.h>

#include "replication/fencing.h"

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

// Fencing at promotion (fencing.h): which peers a Secondary must fence first.
ResourceState TwoPeers(ConnState c1, DiskState d1, ConnState c2, DiskState d2) {
  ResourceState st;
  st.devices[0].disk = DiskState::kUpToDate;
  st.connections[1].conn = c1;
  st.connections[1].peer_devices[0].peer_disk = d1;
  st.connections[2].conn = c2;
  st.connections[2].peer_devices[0].peer_disk = d2;
  return st;
}

TEST(PeersToFenceBeforePromote, OnlyUnconnectedPeersWithUnknownDisksAndFencingOn) {
  auto st = TwoPeers(ConnState::kConnecting, DiskState::kDUnknown, ConnState::kConnected,
                     DiskState::kUpToDate);
  std::map<int, std::string> on = {{1, "resource-only"}, {2, "resource-and-stonith"}};
  EXPECT_EQ(PeersToFenceBeforePromote(st, on), std::vector<int>{1});
  // dont-care (or unset): never fenced.
  EXPECT_TRUE(PeersToFenceBeforePromote(st, {{1, "dont-care"}, {2, "dont-care"}}).empty());
  // Already known Outdated or Inconsistent: nothing to do.
  st.connections[1].peer_devices[0].peer_disk = DiskState::kOutdated;
  EXPECT_TRUE(PeersToFenceBeforePromote(st, on).empty());
  st.connections[1].peer_devices[0].peer_disk = DiskState::kInconsistent;
  EXPECT_TRUE(PeersToFenceBeforePromote(st, on).empty());
  // A peer never connected (no peer devices, or no connection state yet) is unknown.
  st.connections[1].peer_devices.clear();
  EXPECT_EQ(PeersToFenceBeforePromote(st, on), std::vector<int>{1});
  EXPECT_EQ(PeersToFenceBeforePromote(st, {{3, "resource-only"}}), std::vector<int>{3});
}

TEST(PeersToFenceBeforePromote, ReasonNamesThePeers) {
  auto st = TwoPeers(ConnState::kConnecting, DiskState::kDUnknown, ConnState::kStandAlone,
                     DiskState::kUpToDate);
  st.connections[2].name = "b";
  std::string why = UnfencedPeersReason(st, {1, 2});
  EXPECT_NE(why.find("Refusing to be Primary while peer is not outdated"), std::string::npos);
  EXPECT_NE(why.find("node 1, node 2 (b)"), std::string::npos) << why;
  EXPECT_TRUE(UnfencedPeersReason(st, {}).empty());
}

TEST(InterpretFencePeerExit, DrbdExitCodes) {
  EXPECT_EQ(InterpretFencePeerExit(3, true).peer_disk, DiskState::kInconsistent);
  EXPECT_EQ(InterpretFencePeerExit(4, false).peer_disk, DiskState::kOutdated);
  EXPECT_EQ(InterpretFencePeerExit(7, true).peer_disk, DiskState::kOutdated);
  // 5: the peer is unreachable; outdated only when our own disk is UpToDate.
  EXPECT_EQ(InterpretFencePeerExit(5, true).peer_disk, DiskState::kOutdated);
  auto down = InterpretFencePeerExit(5, false);
  EXPECT_FALSE(down.peer_disk.has_value());
  EXPECT_FALSE(down.broken);
  // 6: the peer is Primary; we outdate ourselves, the peer's disk stays unknown.
  auto six = InterpretFencePeerExit(6, true);
  EXPECT_TRUE(six.outdate_self);
  EXPECT_FALSE(six.peer_disk.has_value());
  EXPECT_EQ(six.what, "peer is active");
  for (int code : {0, 1, 2, 8, 255, -1}) {
    auto v = InterpretFencePeerExit(code, true);
    EXPECT_TRUE(v.broken) << code;
    EXPECT_FALSE(v.peer_disk.has_value()) << code;
    EXPECT_FALSE(v.outdate_self) << code;
    EXPECT_EQ(v.what, fmt::format("fence-peer helper broken, returned {}", code));
  }
}

TEST(FencingActive, OnlyResourcePolicies) {
  EXPECT_TRUE(FencingActive("resource-only"));
  EXPECT_TRUE(FencingActive("resource-and-stonith"));
  EXPECT_FALSE(FencingActive("dont-care"));
  EXPECT_FALSE(FencingActive(""));
}

}  // namespace
}  // namespace bsr::replication
