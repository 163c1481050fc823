// Every packet type: encode -> frame -> stream decode -> dispatch decode round trip,
// every truncation point, trailing bytes, and field validation.
#include <gtest/gtest.h>

#include "common/bytes.h"
#include "common/crc32c.h"
#include "protocol/dispatch.h"
#include "protocol/test_samples.h"

namespace bsr::protocol {
namespace {

using testing::AllSamples;
using testing::Sample;

std::vector<uint8_t> PayloadOf(const Packet& p) {
  std::vector<uint8_t> frame = EncodePacket(p, 3);
  return {frame.begin() + kFrameHeaderSize, frame.end()};
}

SocketKind SocketFor(PacketType t) {
  return FindPacketTypeInfo(static_cast<uint16_t>(t))->socket;
}

TEST(Packets, SamplesCoverEveryType) {
  auto samples = AllSamples();
  EXPECT_EQ(samples.size(), AllPacketTypes().size());
  for (const auto& info : AllPacketTypes()) {
    bool found = false;
    for (const auto& s : samples) found |= TypeOf(s) == info.type;
    EXPECT_TRUE(found) << info.name;
  }
}

TEST(Packets, RoundTripThroughStreamAndDispatch) {
  for (const Packet& sample : AllSamples()) {
    PacketType type = TypeOf(sample);
    SCOPED_TRACE(std::string(PacketTypeName(type)));
    std::vector<uint8_t> wire = EncodePacket(sample, 7);
    StreamDecoder dec;
    dec.Feed(wire);
    auto frame = dec.Next();
    ASSERT_TRUE(frame.ok()) << frame.status().ToString();
    ASSERT_TRUE(frame->has_value());
    EXPECT_EQ((*frame)->type(), type);
    EXPECT_EQ((*frame)->volume(), 7);
    auto packet = DecodePacket(**frame, SocketFor(type));
    ASSERT_TRUE(packet.ok()) << packet.status().ToString();
    EXPECT_TRUE(*packet == sample);
    EXPECT_EQ(dec.buffered(), 0u);
    EXPECT_TRUE(dec.Finish().ok());
  }
}

TEST(Packets, EveryTruncationFailsCleanly) {
  for (const Packet& sample : AllSamples()) {
    PacketType type = TypeOf(sample);
    SCOPED_TRACE(std::string(PacketTypeName(type)));
    std::vector<uint8_t> payload = PayloadOf(sample);
    const DispatchEntry* entry = FindDispatchEntry(static_cast<uint16_t>(type));
    ASSERT_NE(entry, nullptr);
    ASSERT_TRUE(entry->decode(payload).ok());
    for (size_t n = 0; n < payload.size(); ++n) {
      auto r = entry->decode(std::span(payload).first(n));
      ASSERT_FALSE(r.ok()) << "prefix of " << n << " bytes decoded";
      EXPECT_EQ(r.status().code(), Errc::kProtocol);
      EXPECT_NE(r.status().message().find(std::string(PacketTypeName(type))), std::string::npos)
          << r.status().message();
    }
    // The whole frame cut at every point: no frame yet, and Finish() names the cut.
    std::vector<uint8_t> wire = EncodePacket(sample);
    for (size_t n = 1; n < wire.size(); n += (n < 64 ? 1 : 997)) {
      StreamDecoder dec;
      dec.Feed(std::span(wire).first(n));
      auto frame = dec.Next();
      ASSERT_TRUE(frame.ok());
      EXPECT_FALSE(frame->has_value());
      Status fin = dec.Finish();
      EXPECT_FALSE(fin.ok());
      EXPECT_NE(fin.message().find("truncated"), std::string::npos) << n << ": " << fin.message();
    }
  }
}

// Rewrites header bytes and recomputes the header crc, so only that field is bad.
void Patch(std::vector<uint8_t>* wire, size_t offset, std::span<const uint8_t> bytes) {
  std::copy(bytes.begin(), bytes.end(), wire->begin() + static_cast<ptrdiff_t>(offset));
  StoreBe32(wire->data() + 20, Crc32c(std::span(*wire).first(20)));
}

std::string StreamError(const std::vector<uint8_t>& wire) {
  StreamDecoder dec;
  dec.Feed(wire);
  auto r = dec.Next();
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), Errc::kProtocol);
  return r.status().message();
}

TEST(Packets, FrameErrorsForEveryType) {
  for (const Packet& sample : AllSamples()) {
    PacketType type = TypeOf(sample);
    std::string name(PacketTypeName(type));
    SCOPED_TRACE(name);
    const std::vector<uint8_t> wire = EncodePacket(sample, 1);
    auto w = wire;
    w[1] ^= 0xFF;
    EXPECT_NE(StreamError(w).find("bad frame magic"), std::string::npos);
    w = wire;
    w[13] ^= 0x01;  // length byte without fixing the header crc
    EXPECT_NE(StreamError(w).find("frame header crc mismatch"), std::string::npos);
    w = wire;
    const uint8_t v[] = {0, 9};
    Patch(&w, 4, v);
    EXPECT_NE(StreamError(w).find("unsupported frame version 9"), std::string::npos);
    w = wire;
    uint8_t len[4];
    StoreBe32(len, FindPacketTypeInfo(static_cast<uint16_t>(type))->max_payload + 1);
    Patch(&w, 12, len);
    EXPECT_NE(StreamError(w).find(name + " frame payload of"), std::string::npos);
    if (wire.size() > kFrameHeaderSize) {
      for (size_t at : {kFrameHeaderSize, wire.size() - 1}) {
        w = wire;
        w[at] ^= 0x10;
        EXPECT_NE(StreamError(w).find(name + " frame payload crc mismatch"), std::string::npos)
            << "flipped byte " << at;
      }
    } else {
      w = wire;
      const uint8_t crc[] = {0, 0, 0, 1};
      Patch(&w, 16, crc);
      EXPECT_NE(StreamError(w).find(name + " frame payload crc mismatch"), std::string::npos);
    }
    EXPECT_EQ(StreamError(wire), "");
  }
}

TEST(Packets, TrailingBytesAreRefused) {
  for (const Packet& sample : AllSamples()) {
    PacketType type = TypeOf(sample);
    SCOPED_TRACE(std::string(PacketTypeName(type)));
    std::vector<uint8_t> payload = PayloadOf(sample);
    payload.push_back(0);
    auto r = FindDispatchEntry(static_cast<uint16_t>(type))->decode(payload);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Errc::kProtocol);
  }
}

TEST(Packets, WrongSocketIsRefused) {
  Frame frame;
  frame.header.type = PacketType::kWriteAck;
  frame.payload = PayloadOf(Sample<WriteAck>());
  auto r = DecodePacket(frame, SocketKind::kData);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("WriteAck packet arrived on the data socket"),
            std::string::npos)
      << r.status().message();
  EXPECT_TRUE(DecodePacket(frame, SocketKind::kMeta).ok());
  // Handshake packets travel on both.
  frame.header.type = PacketType::kPreamble;
  frame.payload = PayloadOf(Sample<Preamble>());
  EXPECT_TRUE(DecodePacket(frame, SocketKind::kMeta).ok());
  EXPECT_TRUE(DecodePacket(frame, SocketKind::kData).ok());
}

template <typename T, typename F>
void ExpectRefused(F mutate, std::string_view needle) {
  T p = Sample<T>();
  mutate(p);
  std::vector<uint8_t> frame = EncodePacket(p);
  auto r = T::Decode(std::span(frame).subspan(kFrameHeaderSize));
  ASSERT_FALSE(r.ok()) << needle;
  EXPECT_EQ(r.status().code(), Errc::kProtocol);
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
}

TEST(Packets, FieldValidation) {
  ExpectRefused<Preamble>([](Preamble& p) { p.socket = SocketKind::kAny; }, "socket kind");
  ExpectRefused<Preamble>([](Preamble& p) { p.sender_node_id = 32; }, "sender node-id 32");
  ExpectRefused<Preamble>([](Preamble& p) { p.receiver_node_id = p.sender_node_id; },
                          "same node-id");
  ExpectRefused<Preamble>([](Preamble& p) { p.cookie = 0; }, "cookie is zero");
  ExpectRefused<Preamble>([](Preamble& p) { p.resource = ""; }, "resource name is empty");
  ExpectRefused<Preamble>([](Preamble& p) { p.resource = std::string(200, 'x'); },
                          "over its limit");
  ExpectRefused<Features>([](Features& f) { f.protocol_min = 5; }, "version range 5..3");
  ExpectRefused<AuthChallenge>([](AuthChallenge& c) { c.challenge.resize(8); }, "shorter");
  ExpectRefused<AuthResponse>([](AuthResponse& a) { a.digest.resize(65); }, "over its limit");
  ExpectRefused<Sizes>([](Sizes& s) { s.usable_size = s.backing_size + 1; }, "exceeds backing");
  ExpectRefused<Sizes>([](Sizes& s) { s.max_bio_size = 2u << 20; }, "max bio size");
  ExpectRefused<Uuids>([](Uuids& u) { u.bitmap[1].node_id = 0; }, "two bitmap UUIDs");
  ExpectRefused<Uuids>([](Uuids& u) { u.history.resize(33); }, "history UUIDs");
  ExpectRefused<StatePacket>([](StatePacket& s) { s.disk = static_cast<DiskState>(10); },
                             "invalid disk state value 10");
  ExpectRefused<StatePacket>([](StatePacket& s) { s.repl = static_cast<ReplState>(99); },
                             "replication state");
  ExpectRefused<StateChangeRequest>(
      [](StateChangeRequest& q) { q.kind = static_cast<StateChangeKind>(8); }, "change kind");
  ExpectRefused<StateChangeReply>([](StateChangeReply& r) { r.vote = static_cast<TwoPcVote>(0); },
                                  "invalid vote");
  ExpectRefused<DataPacket>([](DataPacket& d) { d.dp_flags |= 1u << 20; }, "unknown dp_flags");
  ExpectRefused<DataPacket>(
      [](DataPacket& d) {
        d.size = 100;
        d.data = std::span(testing::SampleBlock()).first(100);
      },
      "not a multiple of 512");
  ExpectRefused<DataPacket>([](DataPacket& d) { d.sector = ~uint64_t{0} / 512; }, "overflows");
  ExpectRefused<RsDataRequest>([](RsDataRequest& r) { r.size = 0; }, "request size 0");
  ExpectRefused<RsDataRequest>([](RsDataRequest& r) { r.digest = {1}; }, "takes none");
  ExpectRefused<CsumRsRequest>([](CsumRsRequest& r) { r.digest.clear(); }, "digest is missing");
  ExpectRefused<OutOfSync>([](OutOfSync& o) { o.size = 0; }, "empty range");
  ExpectRefused<BitmapPlain>([](BitmapPlain& b) { b.start_bit = 3; }, "not word aligned");
  ExpectRefused<BitmapPlain>([](BitmapPlain& b) { b.words.resize(kBitmapChunkBytes / 8 + 1); },
                             "chunk limit");
  ExpectRefused<BitmapRle>([](BitmapRle& b) { b.bit_count = 0; }, "empty chunk");
}

TEST(Packets, DiscardAndZeroesCarryNoData) {
  DataPacket d = Sample<DataPacket>();
  d.dp_flags = kDpDiscard;
  d.size = 1u << 30;  // a discard range may exceed the data block limit
  d.data = {};
  d.digest.clear();
  auto wire = EncodePacket(d, 1);
  auto r = DataPacket::Decode(std::span(wire).subspan(kFrameHeaderSize));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->size, 1u << 30);
  EXPECT_TRUE(r->data.empty());
  EXPECT_EQ(wire.size(), kFrameHeaderSize + 30u);
}

TEST(Packets, DataTooLargeIsRefused) {
  std::vector<uint8_t> big(kMaxDataSize + 512);
  DataPacket d;
  d.size = static_cast<uint32_t>(big.size());
  d.data = big;
  auto wire = EncodePacket(d);
  auto r = DataPacket::Decode(std::span(wire).subspan(kFrameHeaderSize));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("exceeds"), std::string::npos);
}

TEST(Packets, DataHeadWithSeparateBlockMatchesWholeFrame) {
  DataPacket d = Sample<DataPacket>();
  std::vector<uint8_t> head = EncodeDataHead(d, 4);
  head.insert(head.end(), d.data.begin(), d.data.end());
  EXPECT_EQ(head, EncodePacket(d, 4));
  StreamDecoder dec;
  dec.Feed(head);
  auto frame = dec.Next();
  ASSERT_TRUE(frame.ok() && frame->has_value());
  auto p = DecodePacket(**frame, SocketKind::kData);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(std::get<DataPacket>(*p) == d);
}

}  // namespace
}  // namespace bsr::protocol
