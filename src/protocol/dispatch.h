// One-stop packet codec for the replication module: EncodePacket() builds a whole
// frame from any packet struct; the dispatch table maps every packet type to its
// socket, payload limit and decoder, and DecodePacket() turns a Frame into a
// Packet variant after checking the socket. Constant table; any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <variant>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"
#include "protocol/frame.h"
#include "protocol/handshake_packets.h"
#include "protocol/io_packets.h"
#include "protocol/packet_type.h"

namespace bsr::protocol {

// Every packet struct, one alternative per PacketType.
using Packet =
    std::variant<Preamble, Features, AuthChallenge, AuthResponse, AuthResult, ProtocolOptions,
                 Sizes, Uuids, StatePacket, StateChangeRequest, StateChangeReply, TwoPcCommit,
                 TwoPcAbort, Disconnect, DataPacket, Barrier, OutOfSync, PeerAck, RsDataRequest,
                 RsDataReply, CsumRsRequest, OvRequest, OvReply, BitmapPlain, BitmapRle, Ping,
                 PingAck, RecvAck, WriteAck, RsWriteAck, NegAck, NegRsDataReply, DataIntegrityFail,
                 BarrierAck, RsIsInSync, RsCancel, OvResult>;

PacketType TypeOf(const Packet& packet);

// Encodes `packet` as a complete frame (header + payload) for `volume`. `flags`: the
// connection's negotiated frame flags (SealFrame applies them where they fit).
template <typename T>
std::vector<uint8_t> EncodePacket(const T& packet, uint16_t volume = kNoVolume,
                                  uint16_t flags = 0) {
  std::vector<uint8_t> out(kFrameHeaderSize);
  ByteWriter w(&out);
  packet.Encode(w);
  SealFrame(out, T::kType, volume, 0, {}, flags);
  return out;
}
std::vector<uint8_t> EncodePacket(const Packet& packet, uint16_t volume = kNoVolume,
                                  uint16_t flags = 0);

// Frame header and fixed fields of a data-carrying packet; send these bytes, then
// packet.data, to avoid copying the block (the header's length includes it, and so
// does its crc unless `flags` has kFrameFlagBlockOutsideCrc: then the block is not read).
template <PacketType T>
std::vector<uint8_t> EncodeDataHead(const DataPacketT<T>& packet, uint16_t volume,
                                    uint16_t flags = 0) {
  std::vector<uint8_t> out(kFrameHeaderSize);
  ByteWriter w(&out);
  bool no_data = packet.dp_flags & (kDpDiscard | kDpZeroes);
  packet.EncodeFixed(w);
  if (no_data) {
    SealFrame(out, T, volume, 0, {}, flags);
  } else {
    SealFrame(out, T, volume, static_cast<uint32_t>(packet.data.size()), packet.data, flags);
  }
  return out;
}

struct DispatchEntry {
  PacketType type;
  std::string_view name;
  SocketKind socket;     // kAny: either socket
  uint32_t max_payload;  // bytes
  Result<Packet> (*decode)(std::span<const uint8_t> payload);
};

// The table, in packet-number order; nullptr for an unknown number.
std::span<const DispatchEntry> DispatchTable();
const DispatchEntry* FindDispatchEntry(uint16_t type);

// Decodes a frame received on socket `received_on`: refuses a packet that belongs
// on the other socket, then runs the type's decoder. Views in the result (Data's
// `data`) point into frame.payload.
Result<Packet> DecodePacket(const Frame& frame, SocketKind received_on);
// Same for a zero-copy view: Data's `data` then points into the decoder's buffer.
Result<Packet> DecodePacket(const FrameView& frame, SocketKind received_on);

}  // namespace bsr::protocol
