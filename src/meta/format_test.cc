#include "meta/format.h"

#include <gtest/gtest.h>

namespace bsr::meta {
namespace {

Superblock SampleSb() {
  auto l = ComputeLayout(Placement{}, uint64_t{1} << 30, 2, AlGeometry{});
  EXPECT_TRUE(l.ok()) << l.status().ToString();
  Superblock sb;
  sb.seq = 7;
  sb.flags = kFlagConsistent | kFlagAlClean;
  sb.node_id = 0;
  sb.max_peers = 2;
  sb.md_end = l->md_end;
  sb.md_size = l->md_size();
  sb.data_size = l->md_start;
  sb.bm_blocks_per_peer = l->bm_blocks_per_peer;
  sb.current_uuid = 0x1234567890ABCDEFull;
  sb.history[0] = 42;
  sb.peers[0] = PeerSlot{1, kPeerConnectedOnce, 0x55};
  return sb;
}

TEST(SuperblockTest, RoundTrip) {
  Superblock sb = SampleSb();
  auto enc = EncodeSuperblockCopy(sb);
  ASSERT_EQ(enc.size(), kSuperblockCopySize);
  auto dec = DecodeSuperblockCopy(enc);
  ASSERT_TRUE(dec.ok()) << dec.status().ToString();
  EXPECT_EQ(*dec, sb);
}

TEST(SuperblockTest, CrcMismatch) {
  auto enc = EncodeSuperblockCopy(SampleSb());
  enc[100] ^= 0x01;
  auto dec = DecodeSuperblockCopy(enc);
  ASSERT_FALSE(dec.ok());
  EXPECT_EQ(dec.status().code(), Errc::kCorrupt);
  EXPECT_NE(dec.status().message().find("superblock: crc32c mismatch"), std::string::npos);
}

TEST(SuperblockTest, WrongMagicVersionTruncated) {
  auto enc = EncodeSuperblockCopy(SampleSb());
  auto bad_magic = enc;
  bad_magic[0] = 'X';
  EXPECT_NE(DecodeSuperblockCopy(bad_magic).status().message().find("bad magic"),
            std::string::npos);
  auto bad_version = enc;
  bad_version[5] = 9;
  EXPECT_NE(DecodeSuperblockCopy(bad_version).status().message().find("version 9"),
            std::string::npos);
  auto dec = DecodeSuperblockCopy(std::span<const uint8_t>(enc).subspan(0, 100));
  EXPECT_NE(dec.status().message().find("truncated"), std::string::npos);
}

TEST(SuperblockTest, ValidCrcButBadFieldsNamed) {
  Superblock sb = SampleSb();
  sb.max_peers = 40;
  EXPECT_NE(DecodeSuperblockCopy(EncodeSuperblockCopy(sb)).status().message().find("max-peers"),
            std::string::npos);
  sb = SampleSb();
  sb.peers[1] = PeerSlot{1, 0, 0};
  EXPECT_NE(DecodeSuperblockCopy(EncodeSuperblockCopy(sb)).status().message().find("used twice"),
            std::string::npos);
  sb = SampleSb();
  sb.md_size += kBlockSize;
  EXPECT_NE(DecodeSuperblockCopy(EncodeSuperblockCopy(sb)).status().message().find("parts"),
            std::string::npos);
}

TEST(SuperblockTest, BlockPicksNewerAndFallsBack) {
  Superblock a = SampleSb();
  Superblock b = a;
  b.seq = 8;
  b.current_uuid = 99;
  auto block = EncodeSuperblockCopy(a);
  auto second = EncodeSuperblockCopy(b);
  block.insert(block.end(), second.begin(), second.end());
  auto pick = DecodeSuperblockBlock(block);
  ASSERT_TRUE(pick.ok());
  EXPECT_EQ(pick->copy, 1);
  EXPECT_EQ(pick->sb.current_uuid, 99u);
  EXPECT_TRUE(pick->note.empty());
  // Torn newer copy: fall back to the older one and say why.
  block[kSuperblockCopySize + 300] ^= 0xFF;
  pick = DecodeSuperblockBlock(block);
  ASSERT_TRUE(pick.ok());
  EXPECT_EQ(pick->copy, 0);
  EXPECT_NE(pick->note.find("copy 1 ignored"), std::string::npos);
  block[300] ^= 0xFF;
  pick = DecodeSuperblockBlock(block);
  ASSERT_FALSE(pick.ok());
  EXPECT_NE(pick.status().message().find("both superblock copies invalid"), std::string::npos);
  std::vector<uint8_t> zero(kBlockSize, 0);
  EXPECT_EQ(DecodeSuperblockBlock(zero).status().code(), Errc::kNotFound);
}

TEST(AlTransactionTest, RoundTripAndErrors) {
  AlTransaction tr;
  tr.tr_number = 77;
  tr.updates = {{3, 1000}, {6, 12}};
  tr.context_start = 0;
  tr.context.assign(7, kNoExtent);
  tr.context[3] = 1000;
  auto enc = EncodeAlTransaction(tr);
  ASSERT_EQ(enc.size(), kBlockSize);
  auto dec = DecodeAlTransaction(enc, 7);
  ASSERT_TRUE(dec.ok()) << dec.status().ToString();
  EXPECT_EQ(dec->tr_number, 77u);
  ASSERT_EQ(dec->updates.size(), 2u);
  EXPECT_EQ(dec->updates[0].extent, 1000u);
  EXPECT_EQ(dec->context, tr.context);

  auto flipped = enc;
  flipped[2000] ^= 4;
  EXPECT_NE(DecodeAlTransaction(flipped, 7).status().message().find("crc32c mismatch"),
            std::string::npos);
  auto magic = enc;
  magic[1] ^= 1;
  EXPECT_NE(DecodeAlTransaction(magic, 7).status().message().find("bad magic"), std::string::npos);
  auto version = enc;
  version[5] = 2;
  EXPECT_NE(DecodeAlTransaction(version, 7).status().message().find("version"), std::string::npos);
  EXPECT_NE(DecodeAlTransaction(std::span<const uint8_t>(enc).subspan(0, 4095), 7)
                .status()
                .message()
                .find("truncated"),
            std::string::npos);
  // Valid crc, but slots beyond al-extents.
  EXPECT_NE(DecodeAlTransaction(enc, 5).status().message().find("beyond al-extents"),
            std::string::npos);
}

TEST(BitmapBlockTest, RoundTripAndErrors) {
  std::vector<uint64_t> words(kBitmapWordsPerBlock);
  for (size_t i = 0; i < words.size(); ++i) words[i] = i * 0x9E3779B97F4A7C15ull;
  auto enc = EncodeBitmapBlock(2, 5, words);
  std::vector<uint64_t> out(kBitmapWordsPerBlock);
  ASSERT_TRUE(DecodeBitmapBlock(enc, 2, 5, out).ok());
  EXPECT_EQ(out, words);
  auto flipped = enc;
  flipped[1000] ^= 0x10;
  auto st = DecodeBitmapBlock(flipped, 2, 5, out);
  EXPECT_EQ(st.code(), Errc::kCorrupt);
  EXPECT_NE(st.message().find("bitmap block 5 of peer slot 2: crc32c mismatch"), std::string::npos);
  auto magic = enc;
  magic[0] = 0;
  EXPECT_NE(DecodeBitmapBlock(magic, 2, 5, out).message().find("bad magic"), std::string::npos);
  auto version = enc;
  version[5] = 3;
  EXPECT_NE(DecodeBitmapBlock(version, 2, 5, out).message().find("version"), std::string::npos);
  EXPECT_NE(DecodeBitmapBlock(std::span<const uint8_t>(enc).subspan(0, 10), 2, 5, out)
                .message()
                .find("truncated"),
            std::string::npos);
  EXPECT_NE(DecodeBitmapBlock(enc, 2, 6, out).message().find("misplaced"), std::string::npos);
}

TEST(LayoutTest, InternalShrinksUsableSize) {
  uint64_t dev = uint64_t{1} << 30;  // 1 GiB
  auto l = ComputeLayout(Placement{}, dev, 1, AlGeometry{});
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->md_end, dev);
  // 9 bitmap blocks cover 1 GiB (262144 bits / 32512 per block).
  EXPECT_EQ(l->bm_blocks_per_peer, 9u);
  EXPECT_EQ(l->md_size(), (1 + 8 + 9) * uint64_t{kBlockSize});
  EXPECT_EQ(l->md_start, dev - l->md_size());
  EXPECT_GE(l->capacity(), l->md_start);
  EXPECT_EQ(l->sb_offset(), dev - kBlockSize);
  EXPECT_EQ(l->al_offset(), dev - 9 * kBlockSize);
}

TEST(LayoutTest, ExternalMatchesSeedFormula) {
  // Seed 001: 36 KiB + size/32K x peers. A meta device of that size describes `size`
  // within the 32-byte-per-block header overhead (< 1%).
  uint64_t data = uint64_t{100} << 30;
  uint64_t peers = 2;
  uint64_t meta = 36 * 1024 + data / 32768 * peers;
  auto l = ComputeLayout(Placement{PlacementKind::kFlexExternal, 0}, meta, 2, AlGeometry{});
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->md_end, meta);
  EXPECT_GT(l->capacity(), data * 99 / 100);
  EXPECT_LE(l->capacity(), data);
}

TEST(LayoutTest, IndexedSlots) {
  Placement p{PlacementKind::kIndexed, 2};
  auto l = ComputeLayout(p, uint64_t{512} << 20, 1, AlGeometry{});
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->md_end, uint64_t{3} * kIndexedSlotSize);
  EXPECT_GE(l->md_start, uint64_t{2} * kIndexedSlotSize);
  // Seed 001: 128 MiB per index describe about 4 TiB with two nodes.
  EXPECT_GT(l->capacity(), (uint64_t{39} << 40) / 10);
  EXPECT_FALSE(
      ComputeLayout(Placement{PlacementKind::kIndexed, 4}, uint64_t{512} << 20, 1, AlGeometry{})
          .ok());
}

TEST(LayoutTest, AlGeometryLimits) {
  AlGeometry g;
  EXPECT_TRUE(g.Validate().ok());
  g.extents = 6433;  // 919 x 7
  EXPECT_TRUE(g.Validate().ok());
  g.extents = 6434;
  EXPECT_NE(g.Validate().message().find("919"), std::string::npos);
  g.extents = 6;
  EXPECT_FALSE(g.Validate().ok());
  g = AlGeometry{2, 40, 65536};  // 80 slots: 919 x 79 >= 65536
  EXPECT_TRUE(g.Validate().ok());
  EXPECT_EQ(g.SlotBlock(0), 0u);
  EXPECT_EQ(g.SlotBlock(1), 40u);
  EXPECT_EQ(g.SlotBlock(2), 1u);
}

TEST(PlacementTest, Parse) {
  EXPECT_EQ(Placement::Parse("internal")->kind, PlacementKind::kInternal);
  EXPECT_EQ(Placement::Parse("flexible")->kind, PlacementKind::kFlexExternal);
  EXPECT_EQ(Placement::Parse("flex-external")->kind, PlacementKind::kFlexExternal);
  EXPECT_EQ(Placement::Parse("3")->index, 3u);
  EXPECT_FALSE(Placement::Parse("3x").ok());
  EXPECT_FALSE(Placement::Parse("").ok());
  EXPECT_FALSE(Placement::Parse("-1").ok());
}

}  // namespace
}  // namespace bsr::meta
