#include "protocol/packet_type.h"

#include <array>

namespace bsr::protocol {
namespace {

using enum PacketType;
constexpr uint32_t kDataPayload = kMaxDataSize + 256;
constexpr uint32_t kBitmapPayload = kBitmapChunkBytes + 64;
constexpr uint32_t kSmall = kMaxControlPayload;

constexpr std::array kTable = {
    PacketTypeInfo{kPreamble, "Preamble", SocketKind::kAny, kSmall},
    PacketTypeInfo{kFeatures, "Features", SocketKind::kAny, kSmall},
    PacketTypeInfo{kAuthChallenge, "AuthChallenge", SocketKind::kAny, kSmall},
    PacketTypeInfo{kAuthResponse, "AuthResponse", SocketKind::kAny, kSmall},
    PacketTypeInfo{kAuthResult, "AuthResult", SocketKind::kAny, kSmall},
    PacketTypeInfo{kProtocolOptions, "ProtocolOptions", SocketKind::kData, kSmall},
    PacketTypeInfo{kSizes, "Sizes", SocketKind::kData, kSmall},
    PacketTypeInfo{kUuids, "Uuids", SocketKind::kData, kSmall},
    PacketTypeInfo{kState, "State", SocketKind::kData, kSmall},
    PacketTypeInfo{kStateChangeRequest, "StateChangeRequest", SocketKind::kData, kSmall},
    PacketTypeInfo{kStateChangeReply, "StateChangeReply", SocketKind::kMeta, kSmall},
    PacketTypeInfo{kTwoPcCommit, "TwoPcCommit", SocketKind::kData, kSmall},
    PacketTypeInfo{kTwoPcAbort, "TwoPcAbort", SocketKind::kData, kSmall},
    PacketTypeInfo{kDisconnect, "Disconnect", SocketKind::kData, kSmall},
    PacketTypeInfo{kData, "Data", SocketKind::kData, kDataPayload},
    PacketTypeInfo{kBarrier, "Barrier", SocketKind::kData, kSmall},
    PacketTypeInfo{kOutOfSync, "OutOfSync", SocketKind::kData, kSmall},
    PacketTypeInfo{kPeerAck, "PeerAck", SocketKind::kData, kSmall},
    PacketTypeInfo{kRsDataRequest, "RsDataRequest", SocketKind::kData, kSmall},
    PacketTypeInfo{kRsDataReply, "RsDataReply", SocketKind::kData, kDataPayload},
    PacketTypeInfo{kCsumRsRequest, "CsumRsRequest", SocketKind::kData, kSmall},
    PacketTypeInfo{kOvRequest, "OvRequest", SocketKind::kData, kSmall},
    PacketTypeInfo{kOvReply, "OvReply", SocketKind::kData, kSmall},
    PacketTypeInfo{kBitmapPlain, "BitmapPlain", SocketKind::kData, kBitmapPayload},
    PacketTypeInfo{kBitmapRle, "BitmapRle", SocketKind::kData, kBitmapPayload},
    PacketTypeInfo{kPing, "Ping", SocketKind::kMeta, kSmall},
    PacketTypeInfo{kPingAck, "PingAck", SocketKind::kMeta, kSmall},
    PacketTypeInfo{kRecvAck, "RecvAck", SocketKind::kMeta, kSmall},
    PacketTypeInfo{kWriteAck, "WriteAck", SocketKind::kMeta, kSmall},
    PacketTypeInfo{kRsWriteAck, "RsWriteAck", SocketKind::kMeta, kSmall},
    PacketTypeInfo{kNegAck, "NegAck", SocketKind::kMeta, kSmall},
    PacketTypeInfo{kNegRsDataReply, "NegRsDataReply", SocketKind::kMeta, kSmall},
    PacketTypeInfo{kDataIntegrityFail, "DataIntegrityFail", SocketKind::kMeta, kSmall},
    PacketTypeInfo{kBarrierAck, "BarrierAck", SocketKind::kMeta, kSmall},
    PacketTypeInfo{kRsIsInSync, "RsIsInSync", SocketKind::kMeta, kSmall},
    PacketTypeInfo{kRsCancel, "RsCancel", SocketKind::kMeta, kSmall},
    PacketTypeInfo{kOvResult, "OvResult", SocketKind::kMeta, kSmall},
};

}  // namespace

std::string_view SocketKindName(SocketKind kind) {
  switch (kind) {
    case SocketKind::kAny: return "any";
    case SocketKind::kData: return "data";
    case SocketKind::kMeta: return "meta";
  }
  return "unknown";
}

const PacketTypeInfo* FindPacketTypeInfo(uint16_t type) {
  for (const auto& info : kTable) {
    if (static_cast<uint16_t>(info.type) == type) return &info;
  }
  return nullptr;
}

std::string_view PacketTypeName(PacketType type) {
  const PacketTypeInfo* info = FindPacketTypeInfo(static_cast<uint16_t>(type));
  return info ? info->name : "unknown";
}

std::span<const PacketTypeInfo> AllPacketTypes() {
  return kTable;
}

}  // namespace bsr::protocol
