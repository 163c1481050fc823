#include "replication/sync_decision.h"

#include <gtest/gtest.h>

#include "meta/metadata.h"
#include "replication/connection.h"
#include "replication/connection_socket.h"

namespace bsr::replication {
namespace {

constexpr uint64_t kJc = meta::kUuidJustCreated;

SyncDecision Mirror(SyncDecision d) {
  switch (d) {
    case SyncDecision::kSourceBitmap: return SyncDecision::kTargetBitmap;
    case SyncDecision::kTargetBitmap: return SyncDecision::kSourceBitmap;
    case SyncDecision::kSourceFull: return SyncDecision::kTargetFull;
    case SyncDecision::kTargetFull: return SyncDecision::kSourceFull;
    default: return d;
  }
}

// Checks the decision and that the peer, deciding from its side, agrees.
void Expect(const GenerationUuids& a, const GenerationUuids& b, SyncDecision want) {
  std::string why;
  EXPECT_EQ(DecideSync(a, b, &why), want) << why;
  EXPECT_EQ(DecideSync(b, a, &why), Mirror(want)) << why;
  EXPECT_FALSE(why.empty());
}

TEST(SyncDecision, BothJustCreatedWaitForForce) {
  Expect({kJc, 0, {}}, {kJc, 0, {}}, SyncDecision::kNone);
}

TEST(SyncDecision, ForcedPrimaryFullSyncsJustCreatedPeer) {
  // primary --force: the old just-created UUID went to the history.
  Expect({0xA000, 0, {kJc}}, {kJc, 0, {}}, SyncDecision::kSourceFull);
}

TEST(SyncDecision, EqualCurrentNoSync) {
  Expect({0xA000, 0, {kJc}}, {0xA001, 0, {kJc}}, SyncDecision::kNone);
}

TEST(SyncDecision, BitmapUuidMatchesPeerCurrent) {
  // The Primary lost the peer and started generation B; its slot keeps A.
  Expect({0xB001, 0xA000, {kJc}}, {0xA000, 0, {kJc}}, SyncDecision::kSourceBitmap);
}

TEST(SyncDecision, SplitBrainWhenBothMovedOn) {
  Expect({0xB001, 0xA000, {}}, {0xC001, 0xA000, {}}, SyncDecision::kSplitBrain);
}

TEST(SyncDecision, HistoryMatchMeansFullSync) {
  Expect({0xC000, 0, {0xA000}}, {0xA000, 0, {}}, SyncDecision::kSourceFull);
}

TEST(SyncDecision, UnrelatedDataIsRefused) {
  Expect({0xA000, 0, {0x1000}}, {0xB000, 0, {0x2000}}, SyncDecision::kUnrelated);
}

TEST(SyncDecision, PrimaryMarkerBitIgnored) {
  Expect({0xB001, 0xA001, {}}, {0xA000, 0, {}}, SyncDecision::kSourceBitmap);
}

TEST(ParseAddress, Ipv4AndIpv6) {
  auto a = ParseAddress("ipv4:10.99.0.1:7789");
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(a->port(), 7789);
  EXPECT_EQ(a->address().to_string(), "10.99.0.1");
  auto b = ParseAddress("ipv6:[fd00::1]:7000");
  ASSERT_TRUE(b.ok()) << b.status().message();
  EXPECT_TRUE(b->address().is_v6());
  EXPECT_FALSE(ParseAddress("ipv4:10.99.0.1").ok());
  EXPECT_FALSE(ParseAddress("ipv4:10.99.0.1:99999").ok());
  EXPECT_FALSE(ParseAddress("ipv4:fd00::1:7000").ok());
  EXPECT_FALSE(ParseAddress("ipv4:host:x").ok());
}

TEST(NetConfig, ParsesDrbdUnitsAndRejectsBadValues) {
  auto c = ParseNetConfig({{"protocol", "B"},
                           {"connect-int", "2"},
                           {"ping-timeout", "7"},
                           {"cram-hmac-alg", "sha256"},
                           {"shared-secret", "s"},
                           {"after-sb-0pri", "discard-zero-changes"}});
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->protocol, protocol::WireProtocol::kB);
  EXPECT_EQ(c->connect_int.count(), 2000);
  EXPECT_EQ(c->ping_timeout.count(), 700);
  EXPECT_EQ(c->options.after_sb_0pri, protocol::AfterSbPolicy::kDiscardZeroChanges);
  EXPECT_FALSE(ParseNetConfig({{"protocol", "D"}}).ok());
  EXPECT_FALSE(ParseNetConfig({{"connect-int", "0"}}).ok());
  EXPECT_FALSE(ParseNetConfig({{"cram-hmac-alg", "rot13"}}).ok());
  EXPECT_FALSE(ParseNetConfig({{"after-sb-1pri", "whatever"}}).ok());
}

}  // namespace
}  // namespace bsr::replication
