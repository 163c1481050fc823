#include "protocol/packet_type.h"

#include <array>

namespace bsr::protocol {
namespace {

using enum PacketType;
constexpr uint32_t kDataPayload = kMaxDataSize + 256;
constexpr uint32_t kBitmapPayload = kBitmapChunkBytes + 64;
constexpr uint32_t kSmall = kMaxControlPayload;
// DataFields: sector u64, block_id u64, seq_num u32, dp_flags u32, size u32, then the
// digest length (io_packets.h).
constexpr uint16_t kDataDigestAt = 8 + 8 + 4 + 4 + 4;

constexpr std::array kTable = {
    PacketTypeInfo{kPreamble, "Preamble", SocketKind::kAny, kSmall, 0},
    PacketTypeInfo{kFeatures, "Features", SocketKind::kAny, kSmall, 0},
    PacketTypeInfo{kAuthChallenge, "AuthChallenge", SocketKind::kAny, kSmall, 0},
    PacketTypeInfo{kAuthResponse, "AuthResponse", SocketKind::kAny, kSmall, 0},
    PacketTypeInfo{kAuthResult, "AuthResult", SocketKind::kAny, kSmall, 0},
    PacketTypeInfo{kProtocolOptions, "ProtocolOptions", SocketKind::kData, kSmall, 0},
    PacketTypeInfo{kSizes, "Sizes", SocketKind::kData, kSmall, 0},
    PacketTypeInfo{kUuids, "Uuids", SocketKind::kData, kSmall, 0},
    PacketTypeInfo{kState, "State", SocketKind::kData, kSmall, 0},
    PacketTypeInfo{kStateChangeRequest, "StateChangeRequest", SocketKind::kData, kSmall, 0},
    PacketTypeInfo{kStateChangeReply, "StateChangeReply", SocketKind::kMeta, kSmall, 0},
    PacketTypeInfo{kTwoPcCommit, "TwoPcCommit", SocketKind::kData, kSmall, 0},
    PacketTypeInfo{kTwoPcAbort, "TwoPcAbort", SocketKind::kData, kSmall, 0},
    PacketTypeInfo{kDisconnect, "Disconnect", SocketKind::kData, kSmall, 0},
    PacketTypeInfo{kData, "Data", SocketKind::kData, kDataPayload, kDataDigestAt},
    PacketTypeInfo{kBarrier, "Barrier", SocketKind::kData, kSmall, 0},
    PacketTypeInfo{kOutOfSync, "OutOfSync", SocketKind::kData, kSmall, 0},
    PacketTypeInfo{kPeerAck, "PeerAck", SocketKind::kData, kSmall, 0},
    PacketTypeInfo{kRsDataRequest, "RsDataRequest", SocketKind::kData, kSmall, 0},
    PacketTypeInfo{kRsDataReply, "RsDataReply", SocketKind::kData, kDataPayload, kDataDigestAt},
    PacketTypeInfo{kCsumRsRequest, "CsumRsRequest", SocketKind::kData, kSmall, 0},
    PacketTypeInfo{kOvRequest, "OvRequest", SocketKind::kData, kSmall, 0},
    PacketTypeInfo{kOvReply, "OvReply", SocketKind::kData, kSmall, 0},
    PacketTypeInfo{kBitmapPlain, "BitmapPlain", SocketKind::kData, kBitmapPayload, 0},
    PacketTypeInfo{kBitmapRle, "BitmapRle", SocketKind::kData, kBitmapPayload, 0},
    PacketTypeInfo{kPing, "Ping", SocketKind::kMeta, kSmall, 0},
    PacketTypeInfo{kPingAck, "PingAck", SocketKind::kMeta, kSmall, 0},
    PacketTypeInfo{kRecvAck, "RecvAck", SocketKind::kMeta, kSmall, 0},
    PacketTypeInfo{kWriteAck, "WriteAck", SocketKind::kMeta, kSmall, 0},
    PacketTypeInfo{kRsWriteAck, "RsWriteAck", SocketKind::kMeta, kSmall, 0},
    PacketTypeInfo{kNegAck, "NegAck", SocketKind::kMeta, kSmall, 0},
    PacketTypeInfo{kNegRsDataReply, "NegRsDataReply", SocketKind::kMeta, kSmall, 0},
    PacketTypeInfo{kDataIntegrityFail, "DataIntegrityFail", SocketKind::kMeta, kSmall, 0},
    PacketTypeInfo{kBarrierAck, "BarrierAck", SocketKind::kMeta, kSmall, 0},
    PacketTypeInfo{kRsIsInSync, "RsIsInSync", SocketKind::kMeta, kSmall, 0},
    PacketTypeInfo{kRsCancel, "RsCancel", SocketKind::kMeta, kSmall, 0},
    PacketTypeInfo{kOvResult, "OvResult", SocketKind::kMeta, kSmall, 0},
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

uint16_t BlockDigestAt(PacketType type) {
  const PacketTypeInfo* info = FindPacketTypeInfo(static_cast<uint16_t>(type));
  return info ? info->block_digest_at : 0;
}

std::span<const PacketTypeInfo> AllPacketTypes() {
  return kTable;
}

}  // namespace bsr::protocol
