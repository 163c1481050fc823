#include "replication/peer_ack.h"

#include <gtest/gtest.h>

namespace bsr::replication {
namespace {

constexpr uint64_t kSession1 = 7, kSession2 = 9;

TEST(PeerAckTracker, SettlesOnceEveryPeerAnsweredAndTheGroupIsClosed) {
  PeerAckTracker t(0);  // this node is node-id 0
  t.NextWrite();
  bool first = false;
  uint64_t tag = t.Join(1, kSession1, 10, &first);
  EXPECT_TRUE(first);
  EXPECT_EQ(t.Join(2, kSession2, 20, &first), tag);
  EXPECT_FALSE(first);
  EXPECT_TRUE(t.Done(tag, 1, true).empty());  // node 2 has not answered
  EXPECT_TRUE(t.Done(tag, 2, true).empty());  // more peers may still join
  auto ready = t.Close(tag);
  ASSERT_EQ(ready.size(), 2u);
  EXPECT_EQ(ready[0].peer, 1);
  EXPECT_EQ(ready[0].session, kSession1);
  EXPECT_EQ(ready[0].token, 10u);
  EXPECT_EQ(ready[1].token, 20u);
  EXPECT_EQ(ready[0].mask, 0b111u);
  EXPECT_EQ(ready[1].mask, 0b111u);
  EXPECT_EQ(t.open_writes(), 0u);
}

TEST(PeerAckTracker, APeerWithoutTheDataIsNotInTheMask) {
  PeerAckTracker t(1);
  t.NextWrite();
  bool first;
  uint64_t tag = t.Join(0, kSession1, 5, &first);
  t.Join(2, kSession2, 6, &first);
  EXPECT_TRUE(t.Close(tag).empty());
  EXPECT_TRUE(t.Done(tag, 2, false).empty());  // e.g. its session ended
  auto ready = t.Done(tag, 0, true);
  ASSERT_EQ(ready.size(), 2u);
  // Node 2 still gets its PeerAck (its own bit clear) so that its order advances.
  EXPECT_EQ(ready[0].mask, 0b011u);
  EXPECT_EQ(ready[1].mask, 0b011u);
}

TEST(PeerAckTracker, CloseSinceClosesTheGroupsOfTheWrite) {
  PeerAckTracker t(0);
  uint64_t mark = t.last_dagtag();
  t.NextWrite();
  EXPECT_TRUE(t.CloseSince(mark).empty());  // nobody joined: no group
  EXPECT_EQ(t.open_writes(), 0u);
  bool first;
  uint64_t tag = t.Join(1, kSession1, 4, &first);
  // Another write begins and ends inside this one (its own group).
  uint64_t inner_mark = t.last_dagtag();
  t.NextWrite();
  uint64_t inner = t.Join(2, kSession2, 6, &first);
  EXPECT_TRUE(t.CloseSince(inner_mark).empty());          // open until node 2 answers
  EXPECT_EQ(t.Join(2, kSession2, 8, &first), inner + 1);  // the outer write goes on
  EXPECT_TRUE(t.Done(tag, 1, true).empty());
  EXPECT_TRUE(t.Done(inner + 1, 2, true).empty());
  auto ready = t.CloseSince(mark);  // closes both of the outer write's groups
  ASSERT_EQ(ready.size(), 2u);
  EXPECT_EQ(ready[0].token, 4u);
  EXPECT_EQ(ready[0].mask, 0b011u);
  EXPECT_EQ(ready[1].token, 8u);
  EXPECT_EQ(ready[1].mask, 0b101u);
  auto late = t.Done(inner, 2, true);
  ASSERT_EQ(late.size(), 1u);
  EXPECT_EQ(late[0].token, 6u);
  EXPECT_TRUE(t.CloseSince(mark).empty());  // closed once
  EXPECT_EQ(t.open_writes(), 0u);
}

TEST(PeerAckTracker, EachWriteIsItsOwnGroup) {
  PeerAckTracker t(0);
  bool first;
  t.NextWrite();
  uint64_t a = t.Join(1, kSession1, 1, &first);
  t.NextWrite();
  uint64_t b = t.Join(1, kSession1, 2, &first);
  EXPECT_TRUE(first);
  EXPECT_NE(a, b);
  EXPECT_TRUE(t.Close(a).empty());
  EXPECT_TRUE(t.Close(b).empty());
  auto rb = t.Done(b, 1, true);  // completions may come in any order
  ASSERT_EQ(rb.size(), 1u);
  EXPECT_EQ(rb[0].token, 2u);
  auto ra = t.Done(a, 1, true);
  ASSERT_EQ(ra.size(), 1u);
  EXPECT_EQ(ra[0].token, 1u);
  // A join after the group closed starts a new one even without NextWrite.
  uint64_t c = t.Join(1, kSession1, 3, &first);
  EXPECT_TRUE(first);
  EXPECT_GT(c, b);
  // Unknown or settled dagtags are ignored.
  EXPECT_TRUE(t.Done(a, 1, true).empty());
  EXPECT_TRUE(t.Close(12345).empty());
}

TEST(PeerAckOrder, PeerAcksLeaveInSendOrderAndRunsShareAPacket) {
  PeerAckOrder o;
  for (uint32_t tok : {1u, 2u, 4u, 5u, 6u}) o.Sent(tok);
  EXPECT_TRUE(o.Ready(2, 0b111).empty());  // 1 is not settled yet
  EXPECT_TRUE(o.Ready(5, 0b011).empty());
  auto out = o.Ready(1, 0b111);
  ASSERT_EQ(out.size(), 1u);  // 1 and 2: one run up to 2
  EXPECT_EQ(out[0].dagtag, 2u);
  EXPECT_EQ(out[0].node_mask, 0b111u);
  out = o.Ready(4, 0b111);
  ASSERT_EQ(out.size(), 2u);  // 4 with the full mask, then 5 without node 2
  EXPECT_EQ(out[0].dagtag, 4u);
  EXPECT_EQ(out[1].dagtag, 5u);
  EXPECT_EQ(out[1].node_mask, 0b011u);
  EXPECT_EQ(o.waiting(), 1u);
  out = o.Ready(6, 0b111);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(o.waiting(), 0u);
}

TEST(UnstableWrites, APeerAckReleasesTheWritesUpToItsDagtag) {
  UnstableWrites u;
  u.Add(1, 0, 0, 4096);
  u.Add(2, 0, 8192, 4096);
  u.Add(3, 1, 4096, 512);
  auto acked = u.Ack(2);
  ASSERT_EQ(acked.size(), 2u);
  EXPECT_EQ(acked[1].offset, 8192u);
  EXPECT_EQ(u.size(), 1u);
  EXPECT_TRUE(u.Ack(2).empty());
  auto rest = u.TakeAll();
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].volume, 1);
  EXPECT_EQ(rest[0].length, 512u);
  EXPECT_EQ(u.size(), 0u);
}

TEST(UnstableWrites, SequenceNumbersWrap) {
  UnstableWrites u;
  u.Add(0xFFFFFFFEu, 0, 0, 4096);
  u.Add(0xFFFFFFFFu, 0, 4096, 4096);
  u.Add(0, 0, 8192, 4096);
  u.Add(1, 0, 12288, 4096);
  EXPECT_EQ(u.Ack(0xFFFFFFFFu).size(), 2u);
  EXPECT_EQ(u.Ack(0).size(), 1u);
  EXPECT_EQ(u.size(), 1u);
  // A dagtag behind every entry releases nothing.
  EXPECT_TRUE(u.Ack(0xFFFFFFF0u).empty());
}

}  // namespace
}  // namespace bsr::replication
