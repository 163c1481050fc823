// Frame header layout, stream decoding in arbitrary splits, and every frame-level
// error: bad magic, crc mismatches, wrong version, unknown type, flags, over-length.
#include "protocol/frame.h"

#include <gtest/gtest.h>

#include <random>

#include "common/bytes.h"
#include "common/crc32c.h"
#include "protocol/dispatch.h"
#include "protocol/test_samples.h"

namespace bsr::protocol {
namespace {

std::vector<uint8_t> PingFrame() {
  return EncodePacket(Ping{});
}

using testing::PatchHeader;

Status FirstError(const std::vector<uint8_t>& wire, uint32_t max_payload = kMaxFramePayload) {
  StreamDecoder dec(max_payload);
  dec.Feed(wire);
  auto r = dec.Next();
  if (!r.ok()) return r.status();
  return Status::Ok();
}

void ExpectError(const std::vector<uint8_t>& wire, std::string_view needle,
                 uint32_t max_payload = kMaxFramePayload) {
  Status s = FirstError(wire, max_payload);
  ASSERT_FALSE(s.ok()) << needle;
  EXPECT_EQ(s.code(), Errc::kProtocol);
  EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
}

TEST(Frame, HeaderLayoutIsBigEndian) {
  std::vector<uint8_t> payload = {1, 2, 3};
  auto wire = EncodeFrame(PacketType::kBarrier, 0x0102, payload);
  ASSERT_EQ(wire.size(), kFrameHeaderSize + 3);
  const std::vector<uint8_t> expect = {'B', 'S', 'R', 'P', 0, 1, 0, 21, 0, 0, 1, 2, 0, 0, 0, 3};
  EXPECT_EQ(std::vector<uint8_t>(wire.begin(), wire.begin() + 16), expect);
  EXPECT_EQ(LoadBe32(&wire[16]), Crc32c(payload));
  EXPECT_EQ(LoadBe32(&wire[20]), Crc32c(std::span(wire).first(20)));
}

TEST(Frame, ByteByByteAndBatchedFeeding) {
  std::vector<uint8_t> stream;
  std::vector<Packet> sent = testing::AllSamples();
  for (const auto& p : sent) {
    auto f = EncodePacket(p, 1);
    stream.insert(stream.end(), f.begin(), f.end());
  }
  std::mt19937 rng(7);
  for (int split_mode = 0; split_mode < 3; ++split_mode) {
    StreamDecoder dec;
    std::vector<Frame> frames;
    size_t pos = 0;
    while (pos < stream.size()) {
      size_t n = split_mode == 0   ? 1
                 : split_mode == 1 ? std::uniform_int_distribution<size_t>(1, 5000)(rng)
                                   : stream.size();
      n = std::min(n, stream.size() - pos);
      auto room = dec.PrepareWrite(n);
      std::copy_n(stream.begin() + static_cast<ptrdiff_t>(pos), n, room.begin());
      dec.Commit(n);
      pos += n;
      EXPECT_LE(dec.BytesWanted(), stream.size());
      for (;;) {
        auto r = dec.Next();
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        if (!r->has_value()) break;
        frames.push_back(std::move(**r));
      }
    }
    ASSERT_EQ(frames.size(), sent.size()) << "split mode " << split_mode;
    for (size_t i = 0; i < sent.size(); ++i) {
      auto p = DecodePacket(frames[i], SocketKind::kAny);
      ASSERT_TRUE(p.ok()) << p.status().ToString();
      EXPECT_TRUE(*p == sent[i]) << PacketTypeName(TypeOf(sent[i]));
    }
    EXPECT_TRUE(dec.Finish().ok());
  }
}

TEST(Frame, WrongMagic) {
  auto wire = PingFrame();
  wire[0] = 'X';
  ExpectError(wire, "bad frame magic 0x58535250");
}

TEST(Frame, HeaderCrcMismatch) {
  auto wire = PingFrame();
  wire[11] ^= 1;  // volume byte, crc not recomputed
  ExpectError(wire, "frame header crc mismatch");
}

TEST(Frame, PayloadCrcMismatch) {
  auto wire = EncodePacket(testing::Sample<Barrier>());
  wire.back() ^= 0x40;
  ExpectError(wire, "Barrier frame payload crc mismatch");
}

TEST(Frame, WrongVersion) {
  auto wire = PingFrame();
  const uint8_t v2[] = {0, 2};
  PatchHeader(&wire, 4, v2);
  ExpectError(wire, "unsupported frame version 2");
}

TEST(Frame, UnknownType) {
  auto wire = PingFrame();
  const uint8_t t[] = {0x12, 0x34};
  PatchHeader(&wire, 6, t);
  ExpectError(wire, "unknown packet type 4660");
}

TEST(Frame, UnknownFlags) {
  auto wire = PingFrame();
  const uint8_t f[] = {0, 4};
  PatchHeader(&wire, 8, f);
  ExpectError(wire, "unknown header flags 0x0004");
}

TEST(Frame, OverLength) {
  // Over the per-type limit: a Ping cannot claim 1 MiB.
  auto wire = PingFrame();
  uint8_t len[4];
  StoreBe32(len, 1u << 20);
  PatchHeader(&wire, 12, len);
  ExpectError(wire, "Ping frame payload of 1048576 bytes exceeds the limit of 4096 bytes");
  // Over the configured limit; refused from the header alone, before the payload.
  auto data = EncodePacket(testing::Sample<DataPacket>());
  ExpectError(std::vector<uint8_t>(data.begin(), data.begin() + kFrameHeaderSize),
              "exceeds the limit of 1000 bytes", 1000);
  StoreBe32(len, 0xFFFFFFFF);
  PatchHeader(&data, 12, len);
  ExpectError(data, "exceeds the limit of");
}

TEST(Frame, DecoderStaysFailed) {
  auto bad = PingFrame();
  bad[0] = 0;
  StreamDecoder dec;
  dec.Feed(bad);
  ASSERT_FALSE(dec.Next().ok());
  auto good = PingFrame();
  dec.Feed(good);
  EXPECT_FALSE(dec.Next().ok());
  EXPECT_FALSE(dec.Finish().ok());
}

TEST(Frame, FinishNamesTheCut) {
  auto wire = EncodePacket(testing::Sample<Barrier>());
  StreamDecoder dec;
  dec.Feed(std::span(wire).first(kFrameHeaderSize + 3));
  auto r = dec.Next();
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
  EXPECT_EQ(dec.BytesWanted(), wire.size() - kFrameHeaderSize - 3);
  Status s = dec.Finish();
  EXPECT_NE(s.message().find("Barrier frame: payload truncated, 3 of 8 bytes"), std::string::npos)
      << s.message();
}

TEST(Frame, NextViewDecodesWithoutCopy) {
  auto data = testing::Sample<DataPacket>();
  std::vector<uint8_t> wire = EncodePacket(data, 2);
  auto ping = EncodePacket(Ping{});
  wire.insert(wire.end(), ping.begin(), ping.end());
  StreamDecoder dec;
  dec.Feed(wire);
  auto v = dec.NextView();
  ASSERT_TRUE(v.ok() && v->has_value());
  auto p = DecodePacket(**v, SocketKind::kData);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  const auto& got = std::get<DataPacket>(*p);
  EXPECT_TRUE(got == data);
  // The block is a view into the decoder's own buffer, not a copy.
  EXPECT_GE(got.data.data(), (*v)->payload.data());
  EXPECT_LE(got.data.data() + got.data.size(), (*v)->payload.data() + (*v)->payload.size());
  auto v2 = dec.NextView();
  ASSERT_TRUE(v2.ok() && v2->has_value());
  EXPECT_EQ((*v2)->type(), PacketType::kPing);
  auto v3 = dec.NextView();
  ASSERT_TRUE(v3.ok());
  EXPECT_FALSE(v3->has_value());
}

TEST(Frame, DecodeFrameHeaderDirect) {
  auto wire = EncodePacket(testing::Sample<Sizes>(), 9);
  auto h = DecodeFrameHeader(std::span<const uint8_t, kFrameHeaderSize>(wire.data(), 24));
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->type, PacketType::kSizes);
  EXPECT_EQ(h->volume, 9);
  EXPECT_EQ(h->payload_length, wire.size() - kFrameHeaderSize);
}

// The socket's large-payload path: the header and part of the payload arrive through
// the decoder, the rest straight into the caller's buffer; the frames around it
// decode as usual.
TEST(Frame, PayloadReceivedOutsideTheDecoder) {
  std::vector<uint8_t> block;
  DataPacket big = testing::RandomDataPacket(8, 256 * 1024, 77, &block);
  auto head = EncodeDataHead(big, 3);  // header + fixed fields; the block follows
  std::vector<uint8_t> stream = EncodePacket(Ping{});
  stream.insert(stream.end(), head.begin(), head.end());
  stream.insert(stream.end(), block.begin(), block.end());
  auto tail_ping = EncodePacket(PingAck{});
  stream.insert(stream.end(), tail_ping.begin(), tail_ping.end());
  EXPECT_EQ(EncodePacket(big, 3), std::vector<uint8_t>(stream.begin() + 24, stream.end() - 24));

  for (size_t first : {size_t{24}, size_t{24 + 24}, size_t{24 + 24 + 100}, size_t{5000}}) {
    StreamDecoder dec;
    dec.Feed(std::span(stream).first(first));
    auto p1 = dec.Next();
    ASSERT_TRUE(p1.ok() && p1->has_value());
    EXPECT_EQ((*p1)->type(), PacketType::kPing);
    auto p2 = dec.NextView();
    ASSERT_TRUE(p2.ok());
    ASSERT_FALSE(p2->has_value());
    size_t pos = first;
    if (dec.pending_header() == nullptr) {  // the Data header is not complete yet
      size_t need = dec.BytesWanted();
      dec.Feed(std::span(stream).subspan(pos, need));
      pos += need;
      p2 = dec.NextView();
      ASSERT_TRUE(p2.ok() && !p2->has_value());
    }
    ASSERT_NE(dec.pending_header(), nullptr);
    const FrameHeader h = *dec.pending_header();
    EXPECT_EQ(h.type, PacketType::kData);
    std::vector<uint8_t> payload(h.payload_length);
    size_t got = dec.TakePendingPayload(payload);
    EXPECT_EQ(dec.buffered(), 0u);
    std::copy_n(stream.begin() + static_cast<ptrdiff_t>(pos), payload.size() - got,
                payload.begin() + static_cast<ptrdiff_t>(got));
    pos += payload.size() - got;
    auto fin = dec.FinishExternal(payload);
    ASSERT_TRUE(fin.ok()) << fin.status().ToString();
    EXPECT_EQ(fin->volume, 3);
    auto pkt = DecodePacket(FrameView{*fin, payload}, SocketKind::kData);
    ASSERT_TRUE(pkt.ok()) << pkt.status().ToString();
    EXPECT_TRUE(std::get<DataPacket>(*pkt) == big);
    dec.Feed(std::span(stream).subspan(pos));
    auto p3 = dec.Next();
    ASSERT_TRUE(p3.ok() && p3->has_value());
    EXPECT_EQ((*p3)->type(), PacketType::kPingAck);
    EXPECT_TRUE(dec.Finish().ok());
  }
}

TEST(Frame, ExternalPayloadIsChecked) {
  auto wire = EncodePacket(testing::Sample<DataPacket>(), 1);
  {
    StreamDecoder dec;
    dec.Feed(std::span(wire).first(kFrameHeaderSize));
    ASSERT_TRUE(dec.Next().ok());
    std::vector<uint8_t> payload(wire.begin() + kFrameHeaderSize, wire.end());
    payload.back() ^= 1;
    EXPECT_EQ(dec.TakePendingPayload(payload), 0u);
    auto r = dec.FinishExternal(payload);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("Data frame payload crc mismatch"), std::string::npos)
        << r.status().message();
    EXPECT_FALSE(dec.Next().ok());  // stays failed
  }
  {
    StreamDecoder dec;
    dec.Feed(std::span(wire).first(kFrameHeaderSize));
    ASSERT_TRUE(dec.Next().ok());
    std::vector<uint8_t> shorter(wire.begin() + kFrameHeaderSize, wire.end() - 1);
    auto r = dec.FinishExternal(shorter);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("header says"), std::string::npos);
  }
  {
    StreamDecoder dec;  // nothing pending
    std::vector<uint8_t> none(4);
    EXPECT_EQ(dec.TakePendingPayload(none), 0u);
    EXPECT_FALSE(dec.FinishExternal(none).ok());
  }
  {
    StreamDecoder dec;  // Next() while the payload is taken out is refused
    dec.Feed(std::span(wire).first(kFrameHeaderSize + 4));
    ASSERT_TRUE(dec.Next().ok());
    std::vector<uint8_t> payload(wire.size() - kFrameHeaderSize);
    EXPECT_EQ(dec.TakePendingPayload(payload), 4u);
    EXPECT_FALSE(dec.Next().ok());
  }
}

// The buffer is reused without growing when frames are consumed as they arrive, and
// a partial frame left at the end moves to the front.
TEST(Frame, BufferReuseKeepsPartialFrames) {
  std::vector<uint8_t> stream;
  for (int i = 0; i < 2000; ++i) {
    auto f = EncodePacket(testing::Sample<WriteAck>(), static_cast<uint16_t>(i % 5));
    stream.insert(stream.end(), f.begin(), f.end());
  }
  StreamDecoder dec;
  size_t pos = 0, frames = 0;
  while (pos < stream.size()) {
    size_t n = std::min<size_t>(1000, stream.size() - pos);
    auto room = dec.PrepareWrite(4096);
    std::copy_n(stream.begin() + static_cast<ptrdiff_t>(pos), n, room.begin());
    dec.Commit(n);
    pos += n;
    for (;;) {
      auto r = dec.NextView();
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      if (!r->has_value()) break;
      EXPECT_EQ((*r)->volume(), frames % 5);
      ++frames;
    }
    EXPECT_LT(dec.buffered(), 100u);
  }
  EXPECT_EQ(frames, 2000u);
  EXPECT_TRUE(dec.Finish().ok());
}

}  // namespace
}  // namespace bsr::protocol
