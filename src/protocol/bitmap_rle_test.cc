// Bitmap RLE: varints, random round trips (through real frames), compression of
// sparse bitmaps, OR-merge semantics, and refusal of every malformed run.
#include "protocol/bitmap_rle.h"

#include <gtest/gtest.h>

#include <random>

#include "protocol/dispatch.h"

namespace bsr::protocol {
namespace {

std::vector<uint64_t> RandomBitmap(std::mt19937_64& rng, uint64_t bits, double density,
                                   uint64_t mean_run) {
  std::vector<uint64_t> words(BitmapWords(bits));
  std::geometric_distribution<uint64_t> run(1.0 / static_cast<double>(mean_run));
  std::bernoulli_distribution set(density);
  for (uint64_t pos = 0; pos < bits;) {
    uint64_t len = 1 + run(rng);
    bool value = set(rng);
    for (uint64_t i = pos; i < std::min(bits, pos + len); ++i) {
      if (value) words[i / 64] |= uint64_t{1} << (i % 64);
    }
    pos += len;
  }
  return words;
}

// Encodes, sends every chunk through a real frame, decodes, and merges.
std::vector<uint64_t> RoundTrip(const std::vector<uint64_t>& words, uint64_t bits, bool rle,
                                uint32_t chunk_bytes, size_t* wire_bytes = nullptr) {
  std::vector<uint64_t> out(BitmapWords(bits));
  BitmapReceiver rx(out, bits);
  size_t total = 0;
  for (const BitmapChunk& chunk : EncodeBitmap(words, bits, rle, chunk_bytes)) {
    std::vector<uint8_t> frame =
        std::visit([](const auto& c) { return EncodePacket(c, 0); }, chunk);
    total += frame.size();
    StreamDecoder dec;
    dec.Feed(frame);
    auto f = dec.Next();
    EXPECT_TRUE(f.ok() && f->has_value());
    auto packet = DecodePacket(**f, SocketKind::kData);
    EXPECT_TRUE(packet.ok()) << packet.status().ToString();
    Status s = std::holds_alternative<BitmapRle>(*packet)
                   ? rx.Apply(std::get<BitmapRle>(*packet))
                   : rx.Apply(std::get<BitmapPlain>(*packet));
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  EXPECT_TRUE(rx.done());
  if (wire_bytes) *wire_bytes = total;
  return out;
}

TEST(Varint, RoundTripAndLimits) {
  for (uint64_t v : {uint64_t{0}, uint64_t{1}, uint64_t{127}, uint64_t{128}, uint64_t{16383},
                     uint64_t{16384}, uint64_t{1} << 35, ~uint64_t{0}}) {
    std::vector<uint8_t> b;
    size_t n = PutVarint(&b, v);
    EXPECT_EQ(n, b.size());
    size_t pos = 0;
    uint64_t got = 0;
    ASSERT_TRUE(GetVarint(b, &pos, &got));
    EXPECT_EQ(got, v);
    EXPECT_EQ(pos, b.size());
    for (size_t cut = 0; cut < b.size(); ++cut) {
      size_t p = 0;
      EXPECT_FALSE(GetVarint(std::span(b).first(cut), &p, &got));
    }
  }
  std::vector<uint8_t> too_long(11, 0x80);
  size_t pos = 0;
  uint64_t v = 0;
  EXPECT_FALSE(GetVarint(too_long, &pos, &v));
  std::vector<uint8_t> overflow = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02};
  pos = 0;
  EXPECT_FALSE(GetVarint(overflow, &pos, &v));
}

TEST(BitmapRle, RandomBitmapsRoundTrip) {
  std::mt19937_64 rng(42);
  for (int i = 0; i < 60; ++i) {
    uint64_t bits = 1 + rng() % 200000;
    double density = (i % 4) * 0.3;
    uint64_t mean_run = 1 + rng() % 500;
    auto words = RandomBitmap(rng, bits, density, mean_run);
    uint32_t chunk = (i % 3 == 0) ? 64 : (i % 3 == 1) ? 1024 : kBitmapChunkBytes;
    for (bool rle : {true, false}) {
      SCOPED_TRACE(::testing::Message() << "bits " << bits << " rle " << rle << " chunk " << chunk);
      auto out = RoundTrip(words, bits, rle, chunk);
      // Bits past the end are not part of the bitmap.
      if (bits % 64) words.back() &= (uint64_t{1} << (bits % 64)) - 1;
      ASSERT_EQ(out, words);
    }
  }
}

TEST(BitmapRle, SparseBitmapIsFarBelowPlainSize) {
  std::mt19937_64 rng(1);
  const uint64_t bits = 1u << 20;  // 4 GiB of 4 KiB blocks
  std::vector<uint64_t> words(BitmapWords(bits));
  for (int i = 0; i < 100; ++i) {  // 100 scattered dirty extents of 1..16 blocks
    uint64_t start = rng() % (bits - 16);
    for (uint64_t b = start; b < start + 1 + rng() % 16; ++b) words[b / 64] |= 1ull << (b % 64);
  }
  size_t rle_bytes = 0, plain_bytes = 0;
  EXPECT_EQ(RoundTrip(words, bits, true, kBitmapChunkBytes, &rle_bytes), words);
  EXPECT_EQ(RoundTrip(words, bits, false, kBitmapChunkBytes, &plain_bytes), words);
  EXPECT_GE(plain_bytes, bits / 8);
  EXPECT_LT(rle_bytes * 100, plain_bytes) << "rle " << rle_bytes << " plain " << plain_bytes;
  // All clear and all set: a few bytes per chunk.
  std::vector<uint64_t> clear(BitmapWords(bits), 0), full(BitmapWords(bits), ~uint64_t{0});
  EXPECT_EQ(RoundTrip(clear, bits, true, kBitmapChunkBytes, &rle_bytes), clear);
  EXPECT_LT(rle_bytes, 4 * 64u);
  EXPECT_EQ(RoundTrip(full, bits, true, kBitmapChunkBytes, &rle_bytes), full);
  EXPECT_LT(rle_bytes, 4 * 64u);
}

TEST(BitmapRle, DenseNoiseFallsBackToPlain) {
  std::mt19937_64 rng(3);
  const uint64_t bits = 1u << 16;
  std::vector<uint64_t> words(BitmapWords(bits));
  for (auto& w : words) w = rng();
  BitmapEncoder enc(words, bits, true, 1024);
  while (!enc.done()) enc.Next();
  EXPECT_EQ(enc.rle_chunks(), 0u);
  EXPECT_EQ(enc.plain_chunks(), bits / (1024 * 8));
}

TEST(BitmapRle, MergeIsOr) {
  const uint64_t bits = 256;
  std::vector<uint64_t> ours = {0xF0, 0, 0, 1ull << 63};
  std::vector<uint64_t> theirs = {0x0F, 0, 5, 0};
  auto chunks = EncodeBitmap(theirs, bits, true);
  ASSERT_EQ(chunks.size(), 1u);
  ASSERT_TRUE(std::holds_alternative<BitmapRle>(chunks[0]));
  BitmapReceiver rx(ours, bits);
  ASSERT_TRUE(rx.Apply(chunks[0]).ok());
  EXPECT_EQ(ours, (std::vector<uint64_t>{0xFF, 0, 5, 1ull << 63}));
  EXPECT_EQ(CountSetBits(ours, bits), 8u + 2 + 1);
}

void ExpectRleRefused(BitmapRle chunk, std::string_view needle, uint64_t bits = 1000) {
  std::vector<uint64_t> dest(BitmapWords(bits), 0x8000000000000001ull);
  auto before = dest;
  Status s = MergeBitmapChunk(chunk, dest, bits);
  ASSERT_FALSE(s.ok()) << needle;
  EXPECT_EQ(s.code(), Errc::kProtocol);
  EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
  EXPECT_EQ(dest, before) << "a refused chunk changed the bitmap";
}

TEST(BitmapRle, MalformedRunsAreRefusedAndChangeNothing) {
  ExpectRleRefused({0, 10, true, {5, 0, 5}}, "zero-length run at byte 1");
  ExpectRleRefused({0, 10, true, {5, 4}}, "runs cover 9 bits, the chunk claims 10");
  ExpectRleRefused({0, 10, true, {5, 6}}, "run of 6 bits at byte 1 exceeds");
  ExpectRleRefused({0, 10, true, {10, 1}}, "run of 1 bits at byte 1 exceeds");  // trailing run
  ExpectRleRefused({0, 10, true, {5, 0x80}}, "bad run-length code at byte 1");
  ExpectRleRefused({960, 100, false, {100}}, "run past the end of a 1000-bit bitmap");
  ExpectRleRefused({3, 10, false, {10}}, "not word aligned");
}

TEST(BitmapRle, PlainChunkValidation) {
  std::vector<uint64_t> dest(BitmapWords(100));
  Status s = MergeBitmapChunk(BitmapPlain{64, {1ull << 40}}, dest, 100);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("bits set beyond the end"), std::string::npos);
  s = MergeBitmapChunk(BitmapPlain{128, {1}}, dest, 100);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("run past the end"), std::string::npos);
  EXPECT_EQ(dest, std::vector<uint64_t>(2, 0));
  EXPECT_TRUE(MergeBitmapChunk(BitmapPlain{64, {1ull << 35}}, dest, 100).ok());
  EXPECT_EQ(dest[1], 1ull << 35);
}

TEST(BitmapRle, ReceiverEnforcesOrderAndCoverage) {
  const uint64_t bits = 200;
  std::vector<uint64_t> dest(BitmapWords(bits));
  BitmapReceiver rx(dest, bits);
  Status s = rx.Apply(BitmapRle{64, 64, false, {64}});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("starts at bit 64, expected bit 0"), std::string::npos);
  ASSERT_TRUE(rx.Apply(BitmapRle{0, 128, false, {100, 28}}).ok());
  ASSERT_TRUE(rx.Apply(BitmapPlain{128, {3, 0}}).ok());  // 2 words cover 128..199 (+ padding)
  EXPECT_TRUE(rx.done());
  s = rx.Apply(BitmapPlain{192, {0}});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("after the bitmap of 200 bits was complete"), std::string::npos);
  EXPECT_EQ(CountSetBits(dest, bits), 28u + 2);
}

}  // namespace
}  // namespace bsr::protocol
