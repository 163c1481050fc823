// The dispatch table: one entry per packet type, consistent with the type table,
// and each entry's decoder yields its own type.
#include "protocol/dispatch.h"

#include <gtest/gtest.h>

#include <set>

#include "protocol/test_samples.h"

namespace bsr::protocol {
namespace {

TEST(Dispatch, OneEntryPerTypeInNumberOrder) {
  auto table = DispatchTable();
  auto types = AllPacketTypes();
  ASSERT_EQ(table.size(), types.size());
  std::set<std::string_view> names;
  for (size_t i = 0; i < table.size(); ++i) {
    EXPECT_EQ(table[i].type, types[i].type);
    EXPECT_EQ(table[i].name, types[i].name);
    EXPECT_EQ(table[i].socket, types[i].socket);
    EXPECT_EQ(table[i].max_payload, types[i].max_payload);
    EXPECT_TRUE(names.insert(table[i].name).second) << table[i].name;
    if (i > 0) {
      EXPECT_LT(table[i - 1].type, table[i].type);
    }
    EXPECT_EQ(FindDispatchEntry(static_cast<uint16_t>(table[i].type)), &table[i]);
  }
  EXPECT_EQ(FindDispatchEntry(0), nullptr);
  EXPECT_EQ(FindDispatchEntry(999), nullptr);
}

TEST(Dispatch, DecoderYieldsItsOwnType) {
  for (const Packet& sample : testing::AllSamples()) {
    PacketType type = TypeOf(sample);
    auto wire = EncodePacket(sample);
    const DispatchEntry* e = FindDispatchEntry(static_cast<uint16_t>(type));
    ASSERT_NE(e, nullptr);
    auto p = e->decode(std::span(wire).subspan(kFrameHeaderSize));
    ASSERT_TRUE(p.ok()) << e->name << ": " << p.status().ToString();
    EXPECT_EQ(TypeOf(*p), type);
    EXPECT_LE(wire.size() - kFrameHeaderSize, e->max_payload) << e->name;
  }
}

TEST(Dispatch, SocketAssignment) {
  auto socket = [](PacketType t) { return FindDispatchEntry(static_cast<uint16_t>(t))->socket; };
  EXPECT_EQ(socket(PacketType::kPreamble), SocketKind::kAny);
  EXPECT_EQ(socket(PacketType::kData), SocketKind::kData);
  EXPECT_EQ(socket(PacketType::kBarrier), SocketKind::kData);
  EXPECT_EQ(socket(PacketType::kPing), SocketKind::kMeta);
  EXPECT_EQ(socket(PacketType::kWriteAck), SocketKind::kMeta);
  EXPECT_EQ(socket(PacketType::kBarrierAck), SocketKind::kMeta);
  EXPECT_EQ(socket(PacketType::kStateChangeReply), SocketKind::kMeta);
}

}  // namespace
}  // namespace bsr::protocol
