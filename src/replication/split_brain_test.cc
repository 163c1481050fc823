#include "replication/split_brain.h"

#include <gtest/gtest.h>

#include "meta/metadata.h"

namespace bsr::replication {
namespace {

using P = protocol::AfterSbPolicy;
using D = SyncDecision;
constexpr uint64_t kJc = meta::kUuidJustCreated;

D Mirror(D d) {
  switch (d) {
    case D::kSourceBitmap: return D::kTargetBitmap;
    case D::kTargetBitmap: return D::kSourceBitmap;
    case D::kSourceFull: return D::kTargetFull;
    case D::kTargetFull: return D::kSourceFull;
    default: return d;
  }
}

P MirrorPolicy(P p) {
  if (p == P::kDiscardLocal) return P::kDiscardRemote;
  if (p == P::kDiscardRemote) return P::kDiscardLocal;
  return p;
}

std::string Log(const ConnectDecision& d) {
  std::string s;
  for (const auto& l : d.log) s += l + "\n";
  return s;
}

bool Logged(const ConnectDecision& d, std::string_view text) {
  return Log(d).find(text) != std::string::npos;
}

// Decides from both sides (the peer with the mirrored policy and the other tie role)
// and checks they agree; returns the local decision.
ConnectDecision Decide(const SyncSide& l, const SyncSide& p, const SplitBrainConfig& cfg,
                       bool yields = false) {
  ConnectDecision a = DecideOnConnect(l, p, cfg, yields);
  SplitBrainConfig m = cfg;
  m.after_sb_0pri = MirrorPolicy(cfg.after_sb_0pri);
  ConnectDecision b = DecideOnConnect(p, l, m, !yields);
  EXPECT_EQ(b.sync, Mirror(a.sync)) << "local:\n" << Log(a) << "peer:\n" << Log(b);
  EXPECT_EQ(a.split_brain, b.split_brain);
  EXPECT_EQ(a.drop, b.drop) << Log(a) << Log(b);
  return a;
}

// Both changed data since the common generation A (same bitmap UUID on both).
struct SplitBrainTest : ::testing::Test {
  SyncSide l, p;
  SplitBrainConfig cfg;
  void SetUp() override {
    l.uuids = {0xB001, 0xA000, {kJc}};
    p.uuids = {0xC000, 0xA000, {kJc}};
    l.changes = 10;
    p.changes = 20;
  }
};

TEST_F(SplitBrainTest, DisconnectLeavesItUnresolved) {
  auto d = Decide(l, p, cfg);
  EXPECT_EQ(d.sync, D::kSplitBrain);
  EXPECT_TRUE(d.split_brain);
  EXPECT_FALSE(d.auto_resolved);
  EXPECT_TRUE(Logged(d, "Split-Brain detected but unresolved, dropping connection!"));
}

TEST_F(SplitBrainTest, DiscardYoungerPrimaryKeepsTheOneThatWasPrimaryAtTheSplit) {
  cfg.after_sb_0pri = P::kDiscardYoungerPrimary;
  l.primary_at_split = true;  // the peer was promoted afterwards
  auto d = Decide(l, p, cfg);
  EXPECT_EQ(d.sync, D::kSourceBitmap);
  EXPECT_TRUE(d.auto_resolved);
  EXPECT_TRUE(
      Logged(d, "Split-Brain detected, 0 primaries, automatically solved. Sync from this node"));
  cfg.after_sb_0pri = P::kDiscardOlderPrimary;
  EXPECT_EQ(Decide(l, p, cfg).sync, D::kTargetBitmap);
}

TEST_F(SplitBrainTest, YoungerPrimaryWithoutAnswerFallsBackToLeastChanges) {
  cfg.after_sb_0pri = P::kDiscardYoungerPrimary;
  auto d = Decide(l, p, cfg);
  EXPECT_EQ(d.sync, D::kTargetBitmap);  // 10 < 20 changes: the local node is discarded
  EXPECT_TRUE(Logged(d, "did not find a decision"));
}

TEST_F(SplitBrainTest, ZeroChanges) {
  cfg.after_sb_0pri = P::kDiscardZeroChanges;
  EXPECT_EQ(Decide(l, p, cfg).sync, D::kSplitBrain);  // both wrote
  l.changes = 0;
  auto d = Decide(l, p, cfg);
  EXPECT_EQ(d.sync, D::kTargetBitmap);
  EXPECT_TRUE(d.discarded_local);
  p.changes = 0;  // neither wrote: the node that yields ties is the victim
  EXPECT_EQ(Decide(l, p, cfg, true).sync, D::kTargetBitmap);
  EXPECT_EQ(Decide(l, p, cfg, false).sync, D::kSourceBitmap);
}

TEST_F(SplitBrainTest, LeastChanges) {
  cfg.after_sb_0pri = P::kDiscardLeastChanges;
  EXPECT_EQ(Decide(l, p, cfg).sync, D::kTargetBitmap);
  l.changes = 30;
  EXPECT_EQ(Decide(l, p, cfg).sync, D::kSourceBitmap);
  l.changes = 20;
  EXPECT_EQ(Decide(l, p, cfg, true).sync, D::kTargetBitmap);
}

TEST_F(SplitBrainTest, DiscardLocalAndRemote) {
  cfg.after_sb_0pri = P::kDiscardLocal;
  EXPECT_EQ(Decide(l, p, cfg).sync, D::kTargetBitmap);
  cfg.after_sb_0pri = P::kDiscardRemote;
  EXPECT_EQ(Decide(l, p, cfg).sync, D::kSourceBitmap);
}

TEST_F(SplitBrainTest, OnePrimaryConsensus) {
  cfg.after_sb_0pri = P::kDiscardZeroChanges;
  cfg.after_sb_1pri = P::kConsensus;
  p.primary = true;
  l.changes = 0;  // the Secondary wrote nothing: it is the victim both policies agree on
  auto d = Decide(l, p, cfg);
  EXPECT_EQ(d.sync, D::kTargetBitmap);
  EXPECT_TRUE(Logged(d, "1 primaries, automatically solved. Sync from peer node"));
  l.changes = 10;
  p.changes = 0;  // the 0-primary policy would discard the Primary: no consensus
  EXPECT_EQ(Decide(l, p, cfg).sync, D::kSplitBrain);
}

TEST_F(SplitBrainTest, OnePrimaryDiscardSecondary) {
  cfg.after_sb_1pri = P::kDiscardSecondary;
  l.primary = true;
  l.changes = 1;
  EXPECT_EQ(Decide(l, p, cfg).sync, D::kSourceBitmap);
}

TEST_F(SplitBrainTest, CallPriLostAfterSbDemotesTheLosingPrimary) {
  cfg.after_sb_0pri = P::kDiscardLeastChanges;
  cfg.after_sb_1pri = P::kCallPriLostAfterSb;
  l.primary = true;  // fewer changes than the peer: the Primary loses
  auto d = Decide(l, p, cfg);
  EXPECT_EQ(d.sync, D::kTargetBitmap);
  EXPECT_TRUE(d.demote_first);
  EXPECT_FALSE(d.drop);
  // Seen from the winner: no demotion there, and no rr-conflict either.
  SplitBrainConfig m = cfg;
  auto w = DecideOnConnect(p, l, m, true);
  EXPECT_EQ(w.sync, D::kSourceBitmap);
  EXPECT_FALSE(w.demote_first);
  EXPECT_FALSE(w.drop);
}

TEST_F(SplitBrainTest, TwoPrimaries) {
  l.primary = p.primary = true;
  cfg.after_sb_0pri = P::kDiscardLeastChanges;
  EXPECT_EQ(Decide(l, p, cfg).sync, D::kSplitBrain);
  cfg.after_sb_2pri = P::kCallPriLostAfterSb;
  auto d = Decide(l, p, cfg);
  EXPECT_EQ(d.sync, D::kTargetBitmap);
  EXPECT_TRUE(d.demote_first);
  cfg.after_sb_2pri = P::kDiscardSecondary;  // not a 2-primary policy
  d = Decide(l, p, cfg);
  EXPECT_EQ(d.sync, D::kSplitBrain);
  EXPECT_TRUE(Logged(d, "Configuration error"));
}

TEST_F(SplitBrainTest, ViolentlyAs0pStillMeetsRrConflict) {
  cfg.after_sb_0pri = P::kDiscardLeastChanges;
  cfg.after_sb_1pri = P::kViolentlyAs0p;
  l.primary = true;  // loses on changes
  auto d = Decide(l, p, cfg);
  EXPECT_EQ(d.sync, D::kTargetBitmap);
  EXPECT_TRUE(d.drop);
  EXPECT_TRUE(Logged(d, "I shall become SyncTarget, but I am primary!"));
  cfg.rr_conflict = RrConflict::kViolently;
  d = Decide(l, p, cfg);
  EXPECT_FALSE(d.drop);
  EXPECT_TRUE(Logged(d, "violating the stable-data assumption"));
}

TEST_F(SplitBrainTest, DiscardMyDataResolvesManually) {
  l.discard_my_data = true;
  auto d = Decide(l, p, cfg);
  EXPECT_EQ(d.sync, D::kTargetBitmap);
  EXPECT_TRUE(d.manual_resolved);
  EXPECT_TRUE(Logged(d, "Split-Brain detected, manually solved. Sync from peer node"));
}

TEST_F(SplitBrainTest, DiscardMyDataOnTheSecondaryUnderAPrimary) {
  p.primary = true;
  l.discard_my_data = true;
  auto d = Decide(l, p, cfg);
  EXPECT_EQ(d.sync, D::kTargetBitmap);
  EXPECT_FALSE(d.drop);
}

TEST_F(SplitBrainTest, HistoryOnlyNeedsAlwaysAsbpAndSyncsFully) {
  // No common bitmap UUID, only a common ancestor in the history.
  l.uuids = {0xB000, 0xD000, {0xA000, kJc}};
  p.uuids = {0xC000, 0xE000, {0xA000, kJc}};
  cfg.after_sb_0pri = P::kDiscardRemote;
  EXPECT_EQ(Decide(l, p, cfg).sync, D::kSplitBrain);
  cfg.always_asbp = true;
  auto d = Decide(l, p, cfg);
  EXPECT_EQ(d.sync, D::kSourceFull);
  EXPECT_TRUE(Logged(d, "Doing a full sync"));
  // discard-my-data resolves it too, with a full sync.
  cfg = {};
  p.discard_my_data = true;
  EXPECT_EQ(Decide(l, p, cfg).sync, D::kSourceFull);
}

TEST(ConnectDecision, CrashedPrimaryIsSyncSourceOfItsActivityLog) {
  SyncSide l, p;
  l.uuids = {0xA001, 0, {kJc}};
  p.uuids = {0xA000, 0, {kJc}};
  l.crashed_primary = true;
  auto d = Decide(l, p, {});
  EXPECT_EQ(d.sync, D::kSourceBitmap);
  EXPECT_FALSE(d.split_brain);
  p.crashed_primary = true;  // both: the node that yields ties is SyncTarget
  EXPECT_EQ(Decide(l, p, {}, true).sync, D::kTargetBitmap);
  EXPECT_EQ(Decide(l, p, {}, false).sync, D::kSourceBitmap);
  l.crashed_primary = p.crashed_primary = false;
  EXPECT_EQ(Decide(l, p, {}).sync, D::kNone);
}

TEST(ConnectDecision, CrashedPrimaryDoesNotOverrideANewerGeneration) {
  // The Secondary was promoted after the crash: its bitmap UUID for the old Primary is
  // the old Primary's current UUID; the merged bitmaps carry the AL extents.
  SyncSide l, p;
  l.uuids = {0xA001, 0, {kJc}};
  l.crashed_primary = true;
  p.uuids = {0xB000, 0xA000, {kJc}};
  p.primary = true;
  EXPECT_EQ(Decide(l, p, {}).sync, D::kTargetBitmap);
}

TEST(ConnectDecision, InconsistentDiskBecomesTarget) {
  SyncSide l, p;
  l.uuids = {0xB000, 0xA000, {kJc}};  // UUIDs alone: local is SyncSource
  p.uuids = {0xA000, 0, {kJc}};
  l.disk = DiskState::kInconsistent;
  auto d = Decide(l, p, {});
  EXPECT_EQ(d.sync, D::kTargetFull);  // no bitmap says what the local disk lacks
  EXPECT_TRUE(Logged(d, "Becoming sync target due to disk states."));
  // Same generation, but Inconsistent (an interrupted resync from a third node): full.
  l.uuids = {0xA000, 0, {kJc}};
  EXPECT_EQ(Decide(l, p, {}).sync, D::kTargetFull);
  // The UUIDs already make it SyncTarget of a bitmap-based resync: that one continues.
  l.uuids = {0xA000, 0, {kJc}};
  p.uuids = {0xB000, 0xA000, {kJc}};
  EXPECT_EQ(Decide(l, p, {}).sync, D::kTargetBitmap);
}

TEST(ConnectDecision, RrConflict) {
  SyncSide l, p;
  l.uuids = {0xA000, 0, {kJc}};
  p.uuids = {0xB000, 0xA000, {kJc}};  // the peer is newer: local would be SyncTarget
  l.primary = true;
  SplitBrainConfig cfg;
  auto d = Decide(l, p, cfg);
  EXPECT_TRUE(d.drop);
  EXPECT_FALSE(d.retry);
  EXPECT_TRUE(Logged(d, "I shall become SyncTarget, but I am primary!"));
  cfg.rr_conflict = RrConflict::kCallPriLost;
  d = Decide(l, p, cfg);
  EXPECT_TRUE(d.drop);
  EXPECT_TRUE(d.call_pri_lost);
  cfg.rr_conflict = RrConflict::kRetryConnect;
  EXPECT_TRUE(Decide(l, p, cfg).retry);
  cfg.rr_conflict = RrConflict::kViolently;
  d = Decide(l, p, cfg);
  EXPECT_FALSE(d.drop);
  EXPECT_EQ(d.sync, D::kTargetBitmap);
}

TEST(ConnectDecision, UnrelatedAndInconsistentSource) {
  SyncSide l, p;
  l.uuids = {0xB000, 0, {kJc}};
  p.uuids = {0xC000, 0, {kJc}};
  auto d = Decide(l, p, {});
  EXPECT_EQ(d.sync, D::kUnrelated);
  EXPECT_TRUE(Logged(d, "Unrelated data, aborting!"));
  l.uuids = {0xB000, 0xA000, {kJc}};
  p.uuids = {0xA000, 0, {kJc}};
  l.disk = p.disk = DiskState::kInconsistent;
  d = Decide(l, p, {});
  EXPECT_TRUE(d.drop);
  EXPECT_TRUE(Logged(d, "I shall become SyncSource, but I am inconsistent!"));
}

TEST(ConnectDecision, RrConflictNames) {
  EXPECT_EQ(ParseRrConflict("disconnect"), RrConflict::kDisconnect);
  EXPECT_EQ(ParseRrConflict("call-pri-lost"), RrConflict::kCallPriLost);
  EXPECT_EQ(ParseRrConflict("violently"), RrConflict::kViolently);
  EXPECT_EQ(ParseRrConflict("retry-connect"), RrConflict::kRetryConnect);
  EXPECT_EQ(ParseRrConflict("auto-discard"), RrConflict::kDisconnect);
  EXPECT_FALSE(ParseRrConflict("bogus").has_value());
}

}  // namespace
}  // namespace bsr::replication
