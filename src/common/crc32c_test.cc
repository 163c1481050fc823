#include "common/crc32c.h"

#include <gtest/gtest.h>

#include <random>
#include <string_view>
#include <vector>

namespace bsr {
namespace {

std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

TEST(Crc32c, KnownVectors) {
  EXPECT_EQ(Crc32c(AsBytes("")), 0u);
  EXPECT_EQ(Crc32c(AsBytes("123456789")), 0xE3069283u);
  std::vector<uint8_t> zeros(32, 0);
  EXPECT_EQ(Crc32c(zeros), 0x8A9136AAu);  // RFC 3720 B.4
  std::vector<uint8_t> ones(32, 0xFF);
  EXPECT_EQ(Crc32c(ones), 0x62A8AB43u);
}

TEST(Crc32c, IncrementalEqualsWhole) {
  std::mt19937 rng(1);
  std::vector<uint8_t> data(10007);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  uint32_t whole = Crc32c(data);
  for (size_t cut : {0ul, 1ul, 7ul, 8ul, 4096ul, 10006ul, 10007ul}) {
    std::span<const uint8_t> s(data);
    EXPECT_EQ(Crc32c(s.subspan(cut), Crc32c(s.first(cut))), whole) << cut;
  }
}

TEST(Crc32c, DetectsSingleBitFlip) {
  std::vector<uint8_t> data(4096, 0x5A);
  uint32_t base = Crc32c(data);
  data[1234] ^= 0x10;
  EXPECT_NE(Crc32c(data), base);
}

}  // namespace
}  // namespace bsr
