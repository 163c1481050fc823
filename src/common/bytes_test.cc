#include "common/bytes.h"

#include <gtest/gtest.h>

namespace bsr {
namespace {

TEST(Bytes, RoundTripBigEndian) {
  std::vector<uint8_t> buf;
  ByteWriter w(&buf);
  w.U8(0xAB);
  w.U16(0x1234);
  w.U32(0xDEADBEEF);
  w.U64(0x0102030405060708ull);
  w.String("r0");
  ASSERT_EQ(buf.size(), 1u + 2 + 4 + 8 + 4 + 2);
  EXPECT_EQ(buf[1], 0x12);  // most significant byte first
  EXPECT_EQ(buf[3], 0xDE);

  ByteReader r(buf);
  EXPECT_EQ(r.U8(), 0xAB);
  EXPECT_EQ(r.U16(), 0x1234);
  EXPECT_EQ(r.U32(), 0xDEADBEEFu);
  EXPECT_EQ(r.U64(), 0x0102030405060708ull);
  EXPECT_EQ(r.String(16), "r0");
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.remaining(), 0u);
}

TEST(Bytes, ReadPastEndFailsAndStaysFailed) {
  std::vector<uint8_t> buf = {1, 2, 3};
  ByteReader r(buf);
  EXPECT_EQ(r.U16(), 0x0102);
  EXPECT_EQ(r.U32(), 0u);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.U8(), 0u);  // the byte that was left is not handed out after a failure
  EXPECT_EQ(r.remaining(), 0u);
}

TEST(Bytes, OversizedStringRefused) {
  std::vector<uint8_t> buf;
  ByteWriter w(&buf);
  w.String(std::string(100, 'x'));
  ByteReader r(buf);
  EXPECT_EQ(r.String(64), "");
  EXPECT_FALSE(r.ok());
}

TEST(Bytes, HugeLengthDoesNotOverflow) {
  std::vector<uint8_t> buf = {0xFF, 0xFF, 0xFF, 0xFF, 'a'};
  ByteReader r(buf);
  EXPECT_TRUE(r.Bytes(SIZE_MAX).empty());
  EXPECT_FALSE(r.ok());
}

}  // namespace
}  // namespace bsr
