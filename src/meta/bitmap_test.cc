#include "meta/bitmap.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

namespace bsr::meta {
namespace {

TEST(BitmapTest, SetClearCountAcrossWordsAndBlocks) {
  Bitmap bm(100000);
  EXPECT_EQ(bm.blocks(), 4u);
  EXPECT_EQ(bm.Set(60, 10), 10u);
  EXPECT_EQ(bm.Set(65, 10), 5u);
  EXPECT_EQ(bm.count(), 15u);
  EXPECT_TRUE(bm.Test(60));
  EXPECT_TRUE(bm.Test(74));
  EXPECT_FALSE(bm.Test(75));
  EXPECT_EQ(bm.FindNextSet(0), 60u);
  EXPECT_EQ(bm.FindNextSet(75), kNoBit);
  EXPECT_EQ(bm.FindNextClear(60), 75u);
  EXPECT_TRUE(bm.dirty(0));
  EXPECT_FALSE(bm.dirty(1));
  // Across a bitmap block boundary.
  bm.Set(kBitsPerBitmapBlock - 3, 6);
  EXPECT_TRUE(bm.dirty(1));
  EXPECT_EQ(bm.count(), 21u);
  EXPECT_EQ(bm.Clear(0, 100000), 21u);
  EXPECT_EQ(bm.count(), 0u);
  // Clamped at the end, tail stays zero.
  EXPECT_EQ(bm.Set(99990, 1000), 10u);
  EXPECT_EQ(bm.FindNextSet(99989), 99990u);
  EXPECT_EQ(bm.Set(0, 100000), 100000u - 10);
  EXPECT_EQ(bm.FindNextClear(0), kNoBit);
}

TEST(BitmapTest, MatchesReferenceModel) {
  std::mt19937_64 rng(1);
  Bitmap bm(5000);
  std::set<uint64_t> ref;
  for (int i = 0; i < 2000; ++i) {
    uint64_t first = rng() % 5000;
    uint64_t count = rng() % 200;
    bool set = rng() & 1;
    uint64_t changed = set ? bm.Set(first, count) : bm.Clear(first, count);
    uint64_t expect = 0;
    for (uint64_t b = first; b < std::min<uint64_t>(5000, first + count); ++b) {
      expect += set ? ref.insert(b).second : ref.erase(b);
    }
    ASSERT_EQ(changed, expect);
    ASSERT_EQ(bm.count(), ref.size());
  }
  uint64_t b = bm.FindNextSet(0);
  for (uint64_t r : ref) {
    ASSERT_EQ(b, r);
    b = bm.FindNextSet(b + 1);
  }
  EXPECT_EQ(b, kNoBit);
}

TEST(BitmapTest, MergeAndLoad) {
  Bitmap a(1000), b(1000);
  a.Set(10, 5);
  b.Set(12, 10);
  EXPECT_EQ(a.Merge(b.words()), 7u);
  EXPECT_EQ(a.count(), 12u);  // 10..21
  std::vector<uint64_t> words(kBitmapWordsPerBlock, ~uint64_t{0});
  Bitmap c(1000);
  c.LoadBlock(0, words);
  EXPECT_EQ(c.count(), 1000u);  // bits beyond the end dropped
  EXPECT_FALSE(c.dirty(0));
}

}  // namespace
}  // namespace bsr::meta
