// Frames whose payload crc leaves out the data block (kFrameFlagBlockOutsideCrc):
// which types may carry the flag, what the crc still covers, the negotiation, and
// that a connection without the feature keeps (and checks) the full crc.
#include <gtest/gtest.h>

#include "common/bytes.h"
#include "common/crc32c.h"
#include "protocol/dispatch.h"
#include "protocol/frame.h"
#include "protocol/test_samples.h"

namespace bsr::protocol {
namespace {

constexpr uint16_t kFlag = kFrameFlagBlockOutsideCrc;
// Sample<DataPacket>: sector, block_id, seq_num, dp_flags, size, digest length, then
// its 4 digest bytes; the block starts after them.
constexpr size_t kSampleFixed = 8 + 8 + 4 + 4 + 4 + 2 + 4;

using testing::PatchHeader;

// Decodes one frame with a decoder that allows `allowed` flags.
Result<Frame> DecodeOne(const std::vector<uint8_t>& wire, uint16_t allowed) {
  StreamDecoder dec;
  dec.set_allowed_flags(allowed);
  dec.Feed(wire);
  BSR_ASSIGN_OR_RETURN(std::optional<Frame> f, dec.Next());
  if (!f) return Error(Errc::kProtocol, "frame incomplete");
  return std::move(*f);
}

void ExpectRefused(const std::vector<uint8_t>& wire, uint16_t allowed, std::string_view needle) {
  auto f = DecodeOne(wire, allowed);
  ASSERT_FALSE(f.ok()) << needle;
  EXPECT_EQ(f.status().code(), Errc::kProtocol);
  EXPECT_NE(f.status().message().find(needle), std::string::npos) << f.status().message();
}

TEST(BlockOutsideCrc, TableNamesTheDigestLengthOfBlockTypesOnly) {
  for (const auto& info : AllPacketTypes()) {
    bool block = info.type == PacketType::kData || info.type == PacketType::kRsDataReply;
    EXPECT_EQ(info.block_digest_at != 0, block) << info.name;
  }
  // The offset is where DataFields puts the digest length.
  DataPacket d = testing::Sample<DataPacket>();
  auto wire = EncodePacket(d, 1);
  size_t at = FindPacketTypeInfo(static_cast<uint16_t>(PacketType::kData))->block_digest_at;
  EXPECT_EQ(LoadBe16(wire.data() + kFrameHeaderSize + at), d.digest.size());
  EXPECT_EQ(at + 2 + d.digest.size(), kSampleFixed);
}

TEST(BlockOutsideCrc, SenderSetsTheFlagOnlyOnBlockTypes) {
  for (const Packet& p : testing::AllSamples()) {
    auto plain = EncodePacket(p, 2);
    auto flagged = EncodePacket(p, 2, kFlag);
    PacketType t = TypeOf(p);
    if (t == PacketType::kData || t == PacketType::kRsDataReply) {
      EXPECT_EQ(LoadBe16(flagged.data() + 8), kFlag);
      std::span<const uint8_t> payload(flagged.data() + kFrameHeaderSize, kSampleFixed);
      EXPECT_EQ(LoadBe32(flagged.data() + 16), Crc32c(payload));
      EXPECT_TRUE(std::equal(plain.begin() + kFrameHeaderSize, plain.end(),
                             flagged.begin() + kFrameHeaderSize, flagged.end()));
    } else {
      EXPECT_EQ(flagged, plain) << PacketTypeName(t);  // flag dropped, full crc
    }
  }
}

TEST(BlockOutsideCrc, ZeroCopyHeadMatchesWholeFrame) {
  RsDataReply d = testing::Sample<RsDataReply>();
  auto head = EncodeDataHead(d, 4, kFlag);
  // The crc does not depend on the block: a different block gives the same head.
  std::vector<uint8_t> other(d.data.begin(), d.data.end());
  other[0] ^= 0xFF;
  RsDataReply d2 = d;
  d2.data = other;
  EXPECT_EQ(EncodeDataHead(d2, 4, kFlag), head);
  head.insert(head.end(), d.data.begin(), d.data.end());
  EXPECT_EQ(head, EncodePacket(d, 4, kFlag));
  auto f = DecodeOne(head, kFlag);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->header.flags, kFlag);
  auto p = DecodePacket(*f, SocketKind::kData);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_TRUE(std::get<RsDataReply>(*p) == d);
}

TEST(BlockOutsideCrc, FixedFieldsStayCoveredTheBlockDoesNot) {
  DataPacket d = testing::Sample<DataPacket>();
  const auto flagged = EncodePacket(d, 1, kFlag);
  const auto plain = EncodePacket(d, 1);
  const size_t last = flagged.size() - 1;
  // A flipped block bit: accepted with the flag (TCP and data-integrity-alg guard the
  // block), refused without it.
  auto f = flagged;
  f[last] ^= 0x10;
  auto ok = DecodeOne(f, kFlag);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->payload.back(), flagged.back() ^ 0x10);
  auto p = plain;
  p[last] ^= 0x10;
  ExpectRefused(p, kFlag, "Data frame payload crc mismatch");
  // Every bit of the fixed fields and the digest is still covered.
  for (size_t i = 0; i < kSampleFixed; ++i) {
    auto bad = flagged;
    bad[kFrameHeaderSize + i] ^= 0x01;
    auto r = DecodeOne(bad, kFlag);
    EXPECT_FALSE(r.ok()) << "payload byte " << i;
  }
  // A digest length past the payload end names the problem.
  auto len = flagged;
  StoreBe16(len.data() + kFrameHeaderSize + 28, 0xFFFF);
  ExpectRefused(len, kFlag, "exceed the");
}

TEST(BlockOutsideCrc, RefusedWhenNotNegotiated) {
  auto wire = EncodePacket(testing::Sample<DataPacket>(), 1, kFlag);
  ExpectRefused(wire, 0, "Data frame has header flags 0x0001 that this connection did not");
  // A negotiated connection still accepts (and fully checks) unflagged frames, as an
  // old sender or a flagless frame sends them.
  auto plain = EncodePacket(testing::Sample<DataPacket>(), 1);
  EXPECT_TRUE(DecodeOne(plain, kFlag).ok());
}

TEST(BlockOutsideCrc, RefusedOnTypesWithoutABlock) {
  for (const Packet& p : testing::AllSamples()) {
    PacketType t = TypeOf(p);
    if (t == PacketType::kData || t == PacketType::kRsDataReply) continue;
    auto wire = EncodePacket(p, 1);
    const uint8_t flag[] = {0, 1};
    PatchHeader(&wire, 8, flag);
    ExpectRefused(wire, kFlag, "flag but this type carries no block");
  }
}

TEST(BlockOutsideCrc, OtherFlagBitsStayUnknown) {
  auto wire = EncodePacket(testing::Sample<DataPacket>(), 1, kFlag);
  for (uint16_t bit = 1; bit < 16; ++bit) {
    auto w = wire;
    uint8_t f[2];
    StoreBe16(f, static_cast<uint16_t>(kFlag | (1u << bit)));
    PatchHeader(&w, 8, f);
    ExpectRefused(w, kFlag, "unknown header flags");
  }
}

TEST(BlockOutsideCrc, TooShortForTheFixedFields) {
  // A Data frame with the flag whose payload ends inside the fixed fields.
  std::vector<uint8_t> payload(20, 7);
  std::vector<uint8_t> wire(kFrameHeaderSize);
  wire.insert(wire.end(), payload.begin(), payload.end());
  SealFrame(wire, PacketType::kData, 1);
  const uint8_t flag[] = {0, 1};
  PatchHeader(&wire, 8, flag);
  ExpectRefused(wire, kFlag, "shorter than its 30 bytes of fixed fields");
  // The encoder cannot produce one: it keeps the full crc and no flag.
  std::vector<uint8_t> again(kFrameHeaderSize);
  again.insert(again.end(), payload.begin(), payload.end());
  SealFrame(again, PacketType::kData, 1, 0, {}, kFlag);
  EXPECT_EQ(LoadBe16(again.data() + 8), 0);
  EXPECT_EQ(LoadBe32(again.data() + 16), Crc32c(payload));
}

TEST(BlockOutsideCrc, DiscardIsCoveredWhole) {
  DataPacket d = testing::Sample<DataPacket>();
  d.dp_flags |= kDpDiscard;
  d.data = {};
  auto wire = EncodeDataHead(d, 1, kFlag);
  EXPECT_EQ(LoadBe32(wire.data() + 16), Crc32c(std::span(wire).subspan(kFrameHeaderSize)));
  auto f = DecodeOne(wire, kFlag);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_TRUE(std::get<DataPacket>(*DecodePacket(*f, SocketKind::kData)) == d);
}

// The socket's large-block path: the payload received outside the decoder.
TEST(BlockOutsideCrc, ExternalPayload) {
  std::vector<uint8_t> block;
  DataPacket big = testing::RandomDataPacket(16, 64 * 1024, 11, &block);
  auto head = EncodeDataHead(big, 2, kFlag);
  for (bool damage_fixed : {false, true}) {
    StreamDecoder dec;
    dec.set_allowed_flags(kFlag);
    dec.Feed(std::span(head).first(kFrameHeaderSize));
    auto n = dec.NextView();
    ASSERT_TRUE(n.ok() && !n->has_value());
    ASSERT_NE(dec.pending_header(), nullptr);
    std::vector<uint8_t> payload(head.begin() + kFrameHeaderSize, head.end());
    payload.insert(payload.end(), block.begin(), block.end());
    payload[payload.size() / 2] ^= 1;   // in the block: not covered
    if (damage_fixed) payload[3] ^= 1;  // sector: covered
    EXPECT_EQ(dec.TakePendingPayload(payload), 0u);
    auto h = dec.FinishExternal(payload);
    EXPECT_EQ(h.ok(), !damage_fixed) << (h.ok() ? "" : h.status().ToString());
  }
}

TEST(BlockOutsideCrc, FeatureIsNegotiatedByBothSides) {
  EXPECT_NE(kFeatureAll & kFeatureBlockOutsideCrc, 0u);
  Features now;  // this build
  Features old{kProtocolVersionMin, kProtocolVersionMax, kFeatureAll & ~kFeatureBlockOutsideCrc};
  for (auto [a, b] : {std::pair{now, old}, std::pair{old, now}}) {
    auto n = NegotiateFeatures(a, b);
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(n->feature_bits & kFeatureBlockOutsideCrc, 0u);
  }
  auto both = NegotiateFeatures(now, now);
  ASSERT_TRUE(both.ok());
  EXPECT_NE(both->feature_bits & kFeatureBlockOutsideCrc, 0u);
  // An old peer's Features packet decodes the same as any other bit set.
  auto wire = EncodePacket(old);
  auto f = Features::Decode(std::span(wire).subspan(kFrameHeaderSize));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->feature_bits, old.feature_bits);
}

}  // namespace
}  // namespace bsr::protocol
