#include "meta/dump.h"

#include <gtest/gtest.h>

#include <cstring>

#include "meta/metadata.h"
#include "meta/signature.h"

namespace bsr::meta {
namespace {

constexpr uint64_t kDev = uint64_t{64} << 20;

std::string DumpOf(MemIo& io) {
  OpenOptions o;
  o.read_only = true;
  auto m = Metadata::Open(std::make_unique<MemIo>(io.bytes()), o);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? DumpText(**m) : "";
}

TEST(DumpTest, DumpRestoreDumpIsIdentical) {
  MemIo io(kDev);
  CreateOptions c;
  c.max_peers = 3;
  c.node_id = 1;
  ASSERT_TRUE(Metadata::Create(io, c).ok());
  auto m = Metadata::Open(std::make_unique<MemIo>(io.bytes()), OpenOptions{});
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE((*m)->AssignPeerSlot(0, false).ok());
  ASSERT_TRUE((*m)->AssignPeerSlot(2, true).ok());
  ASSERT_TRUE((*m)->SetBits(0, 5, 100).ok());
  ASSERT_TRUE((*m)->SetBits(0, 1000, 1).ok());
  ASSERT_TRUE((*m)->ClearBits(1, 7, 3).ok());
  int track[] = {0};
  ASSERT_TRUE((*m)->NewCurrentUuid(0xABCDEF, track).ok());
  ASSERT_TRUE((*m)->SetPeerFlags(1, kPeerOutdated, kPeerFullSync).ok());
  ASSERT_TRUE((*m)->Close().ok());
  io.bytes() = static_cast<MemIo&>((*m)->io()).bytes();
  std::string d1 = DumpOf(io);
  EXPECT_NE(d1.find("peer 0 node-id 0 bitmap-uuid 0x0000000000000004 flags none\n"),
            std::string::npos)
      << d1;
  EXPECT_NE(d1.find("bitmap 0 set 5 100\nbitmap 0 set 1000 1\n"), std::string::npos);
  EXPECT_NE(d1.find("bitmap 1 set 0 7\nbitmap 1 set 10 "), std::string::npos);
  EXPECT_NE(d1.find("current-uuid 0x0000000000ABCDEF\n"), std::string::npos);
  MemIo other(kDev);
  ASSERT_TRUE(RestoreDump(other, Placement{}, d1).ok());
  EXPECT_EQ(DumpOf(other), d1);
  // Moved to external meta data: same content, different placement line.
  MemIo ext(uint64_t{1} << 20);
  auto r = RestoreDump(ext, Placement{PlacementKind::kFlexExternal, 0}, d1);
  ASSERT_TRUE(r.ok()) << r.ToString();
}

TEST(DumpTest, BadDumpsAreRefusedByLine) {
  const std::string good =
      "version bsr1\nplacement internal\nmax-peers 1\nnode-id 0\ndata-size 4096\n"
      "al-stripes 1\nal-stripe-size-kB 32\nal-extents 7\npeer-max-bio-size 4096\n"
      "flags none\ncurrent-uuid 0x4\npeer 0 node-id 1 bitmap-uuid 0x0 flags none\n"
      "bitmap 0 set 0 1\nend\n";
  ASSERT_TRUE(ParseDump(good).ok()) << ParseDump(good).status().ToString();
  struct Case {
    std::string from, to, message;
  };
  const Case cases[] = {
      {"version bsr1", "version v09", "line 1: unsupported dump version"},
      {"max-peers 1", "max-peers 99", "line 3: max-peers"},
      {"flags none", "flags consistent,bogus", "line 10: unknown superblock flag 'bogus'"},
      {"bitmap 0 set 0 1", "bitmap 0 set 0 2", "line 13: bit range beyond data-size"},
      {"bitmap 0 set 0 1", "bitmap 1 set 0 1", "line 13: bitmap for a slot without a peer"},
      {"peer 0 node-id 1", "peer 3 node-id 1", "line 12: peer slot beyond max-peers"},
      {"end\n", "", "truncated"},
      {"al-extents 7", "al-extents 7000", "919"},
      {"current-uuid 0x4", "current-uuid 0xZZ", "line 11: bad uuid"},
      {"end\n", "end\nversion bsr1\n", "text after 'end'"},
  };
  for (const Case& c : cases) {
    std::string text = good;
    text.replace(text.find(c.from), c.from.size(), c.to);
    auto r = ParseDump(text);
    ASSERT_FALSE(r.ok()) << c.to;
    EXPECT_NE(r.status().message().find(c.message), std::string::npos)
        << r.status().message() << " (wanted " << c.message << ")";
  }
  // A dump claiming more data than the device can hold changes nothing.
  MemIo io(1 << 20);  // describes about 31 GiB
  std::string huge = good;
  huge.replace(huge.find("data-size 4096"), 14, "data-size 1099511627776");
  EXPECT_FALSE(RestoreDump(io, Placement{PlacementKind::kFlexExternal, 0}, huge).ok());
  EXPECT_EQ(std::count(io.bytes().begin(), io.bytes().end(), 0), long{1} << 20);
}

TEST(SignatureTest, KnownSignatures) {
  MemIo io(1 << 20);
  EXPECT_EQ(*DetectSignature(io, 0), "");
  std::memcpy(io.bytes().data(), "XFSB", 4);
  EXPECT_EQ(*DetectSignature(io, 0), "xfs file system at offset 0");
  io.bytes().assign(1 << 20, 0);
  io.bytes()[1080] = 0x53;
  io.bytes()[1081] = 0xEF;
  EXPECT_EQ(*DetectSignature(io, 0), "ext2/ext3/ext4 file system at offset 1080");
  io.bytes().assign(1 << 20, 0);
  std::memcpy(io.bytes().data() + 4096 + 4086, "SWAPSPACE2", 10);
  EXPECT_EQ(*DetectSignature(io, 0), "");
  EXPECT_EQ(*DetectSignature(io, 4096), "swap space at offset 8182");
}

}  // namespace
}  // namespace bsr::meta
