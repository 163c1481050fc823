// Packet type numbers of the bsr wire protocol and their static properties (name,
// socket, payload limit). Constant tables; any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace bsr::protocol {

// Which of a peer's two TCP connections a packet travels on. kAny: both (the
// per-socket handshake runs on each).
enum class SocketKind : uint8_t { kAny = 0, kData = 1, kMeta = 2 };

std::string_view SocketKindName(SocketKind kind);

// Numbers are part of the wire format (docs/wire-protocol.md); never renumber.
enum class PacketType : uint16_t {
  // Per-socket handshake.
  kPreamble = 1,
  kFeatures = 2,
  kAuthChallenge = 3,
  kAuthResponse = 4,
  kAuthResult = 5,
  // Connection setup and cluster state (data socket unless noted).
  kProtocolOptions = 6,
  kSizes = 7,
  kUuids = 8,
  kState = 9,
  kStateChangeRequest = 10,
  kStateChangeReply = 11,  // meta socket
  kTwoPcCommit = 12,
  kTwoPcAbort = 13,
  kDisconnect = 14,
  // Replicated writes.
  kData = 20,
  kBarrier = 21,
  kOutOfSync = 22,
  kPeerAck = 23,
  // Resync and online verify.
  kRsDataRequest = 30,
  kRsDataReply = 31,
  kCsumRsRequest = 32,
  kOvRequest = 33,
  kOvReply = 34,
  // Bitmap exchange.
  kBitmapPlain = 40,
  kBitmapRle = 41,
  // Meta socket: keepalive and acknowledgements.
  kPing = 60,
  kPingAck = 61,
  kRecvAck = 62,
  kWriteAck = 63,
  kRsWriteAck = 64,
  kNegAck = 65,
  kNegRsDataReply = 66,
  kDataIntegrityFail = 67,
  kBarrierAck = 68,
  kRsIsInSync = 69,
  kRsCancel = 70,
  kOvResult = 71,
};

// Largest data block one packet carries (a bio / NBD request is split above this).
inline constexpr uint32_t kMaxDataSize = 1u << 20;
// Largest digest (integrity, csums, verify, HMAC) a packet carries: SHA-512.
inline constexpr uint32_t kMaxDigestSize = 64;
// Largest bitmap chunk payload (plain words or RLE code bytes).
inline constexpr uint32_t kBitmapChunkBytes = 32 * 1024;
// Payload limit of small control packets.
inline constexpr uint32_t kMaxControlPayload = 4096;
// Largest payload of any packet; the stream decoder's default limit.
inline constexpr uint32_t kMaxFramePayload = kMaxDataSize + 4096;

struct PacketTypeInfo {
  PacketType type;
  std::string_view name;
  SocketKind socket;
  uint32_t max_payload;
  // Packets with a trailing data block (Data, RsDataReply): offset of the u16 digest
  // length that ends their fixed fields (the digest bytes follow it, then the block).
  // 0 for every packet without a block. The frame layer uses it to find the part of
  // the payload its crc covers when the block is left out (frame.h).
  uint16_t block_digest_at;
};

// nullptr for a number that names no packet type.
const PacketTypeInfo* FindPacketTypeInfo(uint16_t type);
// "Data", "WriteAck", ...; "unknown" for a number that names no type.
std::string_view PacketTypeName(PacketType type);
// PacketTypeInfo::block_digest_at of `type`: non-zero exactly for the packets that
// carry a data block (their fixed fields end 2 bytes after it, then the digest).
uint16_t BlockDigestAt(PacketType type);
// Every known type, in number order.
std::span<const PacketTypeInfo> AllPacketTypes();

}  // namespace bsr::protocol
