#include "replication/block_set.h"

#include <gtest/gtest.h>

#include <utility>
#include <vector>

namespace bsr::replication {
namespace {

std::vector<std::pair<uint64_t, uint64_t>> Runs(const BlockSet& s, uint64_t limit) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  s.ForEachRun(limit, [&](uint64_t first, uint64_t count) { out.emplace_back(first, count); });
  return out;
}

TEST(BlockSet, OnlyWholeBlocksAndRunsAcrossWords) {
  BlockSet s;
  const uint64_t bits = 200, size = bits * 4096;
  s.AddCovered(512, 4096, bits, size);  // covers no whole block
  EXPECT_TRUE(s.empty());
  s.AddCovered(4096, 3 * 4096 + 100, bits, size);  // blocks 1..3, not the partial 4th
  s.AddCovered(60 * 4096, 10 * 4096, bits, size);  // 60..69, across the first word's end
  s.AddCovered(64 * 4096, 4096, bits, size);       // already in
  using R = std::vector<std::pair<uint64_t, uint64_t>>;
  EXPECT_EQ(Runs(s, bits), (R{{1, 3}, {60, 10}}));
  EXPECT_EQ(Runs(s, 65), (R{{1, 3}, {60, 5}}));  // stops at the limit
  s.clear();
  EXPECT_TRUE(Runs(s, bits).empty());
}

TEST(BlockSet, TheEndCoversThePartialLastBlockAndTheSetGrows) {
  BlockSet s;
  // 10 blocks and 100 bytes: 11 bits, the last one partial.
  s.AddCovered(9 * 4096, 4096 + 100, 11, 10 * 4096 + 100);
  using R = std::vector<std::pair<uint64_t, uint64_t>>;
  EXPECT_EQ(Runs(s, 11), (R{{9, 2}}));
  // A larger disk now (attached meanwhile): the set grows instead of writing past it.
  s.AddCovered(300 * 4096, 4096, 400, 400 * 4096);
  EXPECT_EQ(Runs(s, 400), (R{{9, 2}, {300, 1}}));
}

}  // namespace
}  // namespace bsr::replication
