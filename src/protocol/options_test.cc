// Net-option compatibility, feature negotiation, size agreement and duplicate
// connection resolution.
#include <gtest/gtest.h>

#include "protocol/handshake_packets.h"

namespace bsr::protocol {
namespace {

ProtocolOptions Base() {
  ProtocolOptions o;
  o.protocol = WireProtocol::kC;
  o.integrity_alg = "crc32c";
  return o;
}

void ExpectDiffers(const ProtocolOptions& local, const ProtocolOptions& peer,
                   std::string_view message) {
  Status s = CheckCompatible(local, peer);
  ASSERT_FALSE(s.ok()) << message;
  EXPECT_EQ(s.code(), Errc::kProtocol);
  EXPECT_EQ(s.message(), message);
}

TEST(Options, IdenticalAreCompatible) {
  EXPECT_TRUE(CheckCompatible(Base(), Base()).ok());
}

TEST(Options, EachDifferenceIsNamedWithBothValues) {
  ProtocolOptions p = Base();
  p.protocol = WireProtocol::kA;
  ExpectDiffers(Base(), p, "incompatible net options: protocol is 'C' here but 'A' on the peer");
  p = Base();
  p.after_sb_0pri = AfterSbPolicy::kDiscardYoungerPrimary;
  ExpectDiffers(Base(), p,
                "incompatible net options: after-sb-0pri is 'disconnect' here but "
                "'discard-younger-primary' on the peer");
  p = Base();
  p.after_sb_1pri = AfterSbPolicy::kConsensus;
  ExpectDiffers(Base(), p,
                "incompatible net options: after-sb-1pri is 'disconnect' here but 'consensus' "
                "on the peer");
  p = Base();
  p.after_sb_2pri = AfterSbPolicy::kViolentlyAs0p;
  ExpectDiffers(Base(), p,
                "incompatible net options: after-sb-2pri is 'disconnect' here but "
                "'violently-as0p' on the peer");
  p = Base();
  p.allow_two_primaries = true;
  ExpectDiffers(Base(), p,
                "incompatible net options: allow-two-primaries is 'no' here but 'yes' on the "
                "peer");
  p = Base();
  p.integrity_alg = "";
  ExpectDiffers(Base(), p,
                "incompatible net options: data-integrity-alg is 'crc32c' here but '(none)' on "
                "the peer");
  p = Base();
  p.csums_alg = "md5";
  ExpectDiffers(Base(), p,
                "incompatible net options: csums-alg is '(none)' here but 'md5' on the peer");
  p = Base();
  p.verify_alg = "sha1";
  ExpectDiffers(Base(), p,
                "incompatible net options: verify-alg is '(none)' here but 'sha1' on the peer");
}

TEST(Options, DiscardLocalMirrorsDiscardRemote) {
  ProtocolOptions a = Base(), b = Base();
  a.after_sb_0pri = AfterSbPolicy::kDiscardLocal;
  b.after_sb_0pri = AfterSbPolicy::kDiscardRemote;
  EXPECT_TRUE(CheckCompatible(a, b).ok());
  EXPECT_TRUE(CheckCompatible(b, a).ok());
  b.after_sb_0pri = AfterSbPolicy::kDiscardLocal;  // both want to discard themselves
  ExpectDiffers(a, b,
                "incompatible net options: after-sb-0pri is 'discard-local' here but "
                "'discard-local' on the peer");
}

TEST(Options, DiscardMyDataOnBothSides) {
  ProtocolOptions a = Base(), b = Base();
  a.discard_my_data = true;
  EXPECT_TRUE(CheckCompatible(a, b).ok());
  b.discard_my_data = true;
  Status s = CheckCompatible(a, b);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("discard-my-data is set on both"), std::string::npos);
}

TEST(Features, Negotiation) {
  Features a{1, 3, kFeatureTrim | kFeatureBitmapRle};
  Features b{2, 5, kFeatureBitmapRle | kFeatureTwoPc};
  auto n = NegotiateFeatures(a, b);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->protocol_version, 3u);
  EXPECT_EQ(n->feature_bits, kFeatureBitmapRle);
  Features c{4, 6, kFeatureAll};
  auto bad = NegotiateFeatures(a, c);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "no common protocol version: this node speaks 1..3, the peer 4..6");
}

TEST(Sizes, SmallerAgreedSizeWins) {
  Sizes a, b;
  a.backing_size = a.usable_size = 100 << 20;
  b.backing_size = b.usable_size = 80 << 20;
  EXPECT_EQ(AgreedSize(a, b), 80u << 20);
  a.requested_size = 50 << 20;
  EXPECT_EQ(AgreedSize(a, b), 50u << 20);
  Sizes diskless;
  diskless.max_bio_size = 4096;
  EXPECT_EQ(AgreedSize(a, diskless), 50u << 20);
  EXPECT_EQ(AgreedSize(diskless, diskless), 0u);
}

TEST(Preamble, CheckAgainstExpectations) {
  Preamble dial{SocketKind::kData, 0, 2, 1, 0xC00C1E, "r0"};
  EXPECT_TRUE(CheckPreamble(dial, "r0", 1, 2, std::nullopt).ok());
  auto msg = [](const Status& s) { return s.message(); };
  EXPECT_EQ(msg(CheckPreamble(dial, "r1", 1, 2, std::nullopt)),
            "preamble names resource 'r0', this connection serves 'r1'");
  EXPECT_EQ(msg(CheckPreamble(dial, "r0", 3, 2, std::nullopt)),
            "preamble is addressed to node-id 1, this is node-id 3");
  EXPECT_EQ(msg(CheckPreamble(dial, "r0", 1, 0, std::nullopt)),
            "preamble comes from node-id 2, expected peer node-id 0");
  EXPECT_EQ(msg(CheckPreamble(dial, "r0", 1, 2, 0xC00C1E)),
            "expected a preamble reply, got a dial preamble");
  Preamble reply = dial;
  reply.flags = kPreambleReply;
  EXPECT_TRUE(CheckPreamble(reply, "r0", 1, 2, 0xC00C1E).ok());
  EXPECT_NE(msg(CheckPreamble(reply, "r0", 1, 2, 0xBAD)).find("carries cookie"), std::string::npos);
  EXPECT_FALSE(CheckPreamble(reply, "r0", 1, 2, std::nullopt).ok());
}

TEST(Duplicates, ResolvedTheSameWayOnBothNodes) {
  DialAttempt by0{0, 111}, by1{1, 222};
  // Node 0 holds its own attempt, node 1's arrives: keep node 0's.
  EXPECT_EQ(ResolveDuplicate(by0, by1), DuplicateDecision::kKeepExisting);
  // Node 1 holds its own attempt, node 0's arrives: take node 0's.
  EXPECT_EQ(ResolveDuplicate(by1, by0), DuplicateDecision::kTakeIncoming);
  // The meta socket of the same attempt.
  EXPECT_EQ(ResolveDuplicate(by1, DialAttempt{1, 222}), DuplicateDecision::kSameAttempt);
  // Same dialer, new cookie: it gave the old attempt up.
  EXPECT_EQ(ResolveDuplicate(by1, DialAttempt{1, 333}), DuplicateDecision::kTakeIncoming);
}

}  // namespace
}  // namespace bsr::protocol
