#include "protocol/dispatch.h"

#include <algorithm>
#include <array>
#include <utility>

namespace bsr::protocol {
namespace {

template <typename T>
Result<Packet> DecodeAs(std::span<const uint8_t> payload) {
  auto r = T::Decode(payload);
  if (!r.ok()) return r.status();
  return Packet(std::move(r).value());
}

template <size_t... I>
constexpr auto MakeTable(std::index_sequence<I...>) {
  return std::array<DispatchEntry, sizeof...(I)>{
      DispatchEntry{std::variant_alternative_t<I, Packet>::kType,
                    {},
                    SocketKind::kAny,
                    0,
                    &DecodeAs<std::variant_alternative_t<I, Packet>>}...};
}

std::array<DispatchEntry, std::variant_size_v<Packet>> BuildTable() {
  auto table = MakeTable(std::make_index_sequence<std::variant_size_v<Packet>>());
  for (auto& e : table) {
    const PacketTypeInfo* info = FindPacketTypeInfo(static_cast<uint16_t>(e.type));
    e.name = info->name;
    e.socket = info->socket;
    e.max_payload = info->max_payload;
  }
  std::sort(table.begin(), table.end(),
            [](const DispatchEntry& a, const DispatchEntry& b) { return a.type < b.type; });
  return table;
}

const std::array<DispatchEntry, std::variant_size_v<Packet>>& Table() {
  static const auto table = BuildTable();
  return table;
}

}  // namespace

PacketType TypeOf(const Packet& packet) {
  return std::visit([](const auto& p) { return std::decay_t<decltype(p)>::kType; }, packet);
}

std::vector<uint8_t> EncodePacket(const Packet& packet, uint16_t volume, uint16_t flags) {
  return std::visit([volume, flags](const auto& p) { return EncodePacket(p, volume, flags); },
                    packet);
}

std::span<const DispatchEntry> DispatchTable() {
  return Table();
}

const DispatchEntry* FindDispatchEntry(uint16_t type) {
  for (const auto& e : Table()) {
    if (static_cast<uint16_t>(e.type) == type) return &e;
  }
  return nullptr;
}

Result<Packet> DecodePacket(const Frame& frame, SocketKind received_on) {
  return DecodePacket(FrameView{frame.header, frame.payload}, received_on);
}

Result<Packet> DecodePacket(const FrameView& frame, SocketKind received_on) {
  const DispatchEntry* e = FindDispatchEntry(static_cast<uint16_t>(frame.header.type));
  if (e == nullptr) {
    return Error(Errc::kProtocol, "unknown packet type {}",
                 static_cast<uint16_t>(frame.header.type));
  }
  if (e->socket != SocketKind::kAny && received_on != SocketKind::kAny &&
      e->socket != received_on) {
    return Error(Errc::kProtocol, "{} packet arrived on the {} socket; it belongs on the {} socket",
                 e->name, SocketKindName(received_on), SocketKindName(e->socket));
  }
  if (frame.payload.size() > e->max_payload) {
    return Error(Errc::kProtocol, "{} payload of {} bytes exceeds the limit of {} bytes", e->name,
                 frame.payload.size(), e->max_payload);
  }
  auto packet = e->decode(frame.payload);
  if (!packet.ok()) return packet.status().WithContext(fmt::format("volume {}", frame.volume()));
  return packet;
}

}  // namespace bsr::protocol
