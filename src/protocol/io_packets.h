// Replication I/O packets: data writes and resync replies, block requests, digests,
// acks, barriers, pings, out-of-sync ranges, peer acks and bitmap chunks. Plain
// values; any thread. Same Encode/Decode contract as handshake_packets.h.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"
#include "protocol/packet_type.h"

namespace bsr::protocol {

inline constexpr uint32_t kSectorSize = 512;

// Data.dp_flags bits.
inline constexpr uint32_t kDpFua = 1u << 0;
inline constexpr uint32_t kDpFlush = 1u << 1;  // preflush: previous writes stable first
inline constexpr uint32_t kDpDiscard = 1u << 2;
inline constexpr uint32_t kDpZeroes = 1u << 3;
inline constexpr uint32_t kDpSendRecvAck = 1u << 4;   // protocol B
inline constexpr uint32_t kDpSendWriteAck = 1u << 5;  // protocol C
inline constexpr uint32_t kDpAll = (1u << 6) - 1;

// A block of data: a replicated write (Data) or a resync reply (RsDataReply).
// Payload: sector u64, block_id u64, seq_num u32, dp_flags u32, size u32,
// digest (u16 length + bytes), then `size` data bytes unless discard/zeroes.
struct DataFields {
  uint64_t sector = 0;    // in 512-byte sectors
  uint64_t block_id = 0;  // sender's request handle, echoed in the ack
  uint32_t seq_num = 0;   // write order across the data and meta socket
  uint32_t dp_flags = 0;
  uint32_t size = 0;            // bytes; for discard/zeroes the range, otherwise == data.size()
  std::vector<uint8_t> digest;  // data-integrity-alg digest of `data`; empty if none
  // View of the data bytes. After Decode it points into the decoded payload (the
  // Frame's buffer), so it is valid only as long as that buffer lives.
  std::span<const uint8_t> data;

  void Encode(ByteWriter& w) const;
  // The payload bytes before `data`: send them, then `data`, without copying it.
  // SealFrame(frame, type, volume, data.size(), data) completes the frame header.
  void EncodeFixed(ByteWriter& w) const;
  bool operator==(const DataFields& o) const;
};
Status DecodeDataFields(std::span<const uint8_t> payload, PacketType type, DataFields* out);

template <PacketType T>
struct DataPacketT : DataFields {
  static constexpr PacketType kType = T;
  static Result<DataPacketT> Decode(std::span<const uint8_t> payload) {
    DataPacketT out;
    BSR_RETURN_IF_ERROR(DecodeDataFields(payload, T, &out));
    return out;
  }
};
using DataPacket = DataPacketT<PacketType::kData>;
using RsDataReply = DataPacketT<PacketType::kRsDataReply>;

// A request for a block range: resync data request, online-verify request; with a
// digest: csum-based resync request (csums-alg), online-verify reply (verify-alg).
// Payload: sector u64, block_id u64, size u32, digest (u16 length + bytes).
struct BlockRequestFields {
  uint64_t sector = 0;
  uint64_t block_id = 0;
  uint32_t size = 0;
  std::vector<uint8_t> digest;

  void Encode(ByteWriter& w) const;
  bool operator==(const BlockRequestFields&) const = default;
};
Status DecodeBlockRequest(std::span<const uint8_t> payload, PacketType type, bool with_digest,
                          BlockRequestFields* out);

template <PacketType T, bool kWithDigest>
struct BlockRequestT : BlockRequestFields {
  static constexpr PacketType kType = T;
  static Result<BlockRequestT> Decode(std::span<const uint8_t> payload) {
    BlockRequestT out;
    BSR_RETURN_IF_ERROR(DecodeBlockRequest(payload, T, kWithDigest, &out));
    return out;
  }
};
using RsDataRequest = BlockRequestT<PacketType::kRsDataRequest, false>;
using OvRequest = BlockRequestT<PacketType::kOvRequest, false>;
using CsumRsRequest = BlockRequestT<PacketType::kCsumRsRequest, true>;
using OvReply = BlockRequestT<PacketType::kOvReply, true>;

// OvResult.block_id values.
inline constexpr uint64_t kOvInSync = 1;
inline constexpr uint64_t kOvOutOfSync = 2;

// Acknowledgement of one block (meta socket).
// Payload: sector u64, block_id u64, size u32, seq_num u32.
struct BlockAckFields {
  uint64_t sector = 0;
  uint64_t block_id = 0;
  uint32_t size = 0;
  uint32_t seq_num = 0;

  void Encode(ByteWriter& w) const;
  bool operator==(const BlockAckFields&) const = default;
};
Status DecodeBlockAck(std::span<const uint8_t> payload, PacketType type, BlockAckFields* out);

template <PacketType T>
struct BlockAckT : BlockAckFields {
  static constexpr PacketType kType = T;
  static Result<BlockAckT> Decode(std::span<const uint8_t> payload) {
    BlockAckT out;
    BSR_RETURN_IF_ERROR(DecodeBlockAck(payload, T, &out));
    return out;
  }
};
using RecvAck = BlockAckT<PacketType::kRecvAck>;    // protocol B: received
using WriteAck = BlockAckT<PacketType::kWriteAck>;  // protocol C: on stable storage
using RsWriteAck = BlockAckT<PacketType::kRsWriteAck>;
using NegAck = BlockAckT<PacketType::kNegAck>;  // write failed on the peer
using NegRsDataReply = BlockAckT<PacketType::kNegRsDataReply>;
using DataIntegrityFail = BlockAckT<PacketType::kDataIntegrityFail>;
using RsIsInSync = BlockAckT<PacketType::kRsIsInSync>;  // csum matched: block not sent
using RsCancel = BlockAckT<PacketType::kRsCancel>;
using OvResult = BlockAckT<PacketType::kOvResult>;  // block_id: kOvInSync / kOvOutOfSync

// Closes epoch `barrier`: writes after it must not be reordered before it.
struct Barrier {
  static constexpr PacketType kType = PacketType::kBarrier;
  uint32_t barrier = 0;

  void Encode(ByteWriter& w) const;
  static Result<Barrier> Decode(std::span<const uint8_t> payload);
  bool operator==(const Barrier&) const = default;
};

// Epoch `barrier` with `set_size` writes is on stable storage at the peer.
struct BarrierAck {
  static constexpr PacketType kType = PacketType::kBarrierAck;
  uint32_t barrier = 0;
  uint32_t set_size = 0;

  void Encode(ByteWriter& w) const;
  static Result<BarrierAck> Decode(std::span<const uint8_t> payload);
  bool operator==(const BarrierAck&) const = default;
};

template <PacketType T>
struct EmptyPacket {
  static constexpr PacketType kType = T;
  void Encode(ByteWriter&) const {}
  static Result<EmptyPacket> Decode(std::span<const uint8_t> payload) {
    if (!payload.empty()) {
      return Error(Errc::kProtocol, "{} payload must be empty, has {} bytes", PacketTypeName(T),
                   payload.size());
    }
    return EmptyPacket{};
  }
  bool operator==(const EmptyPacket&) const = default;
};
using Ping = EmptyPacket<PacketType::kPing>;
using PingAck = EmptyPacket<PacketType::kPingAck>;

// A range the sender wrote while the receiver could not get it (Ahead/Behind).
struct OutOfSync {
  static constexpr PacketType kType = PacketType::kOutOfSync;
  uint64_t sector = 0;
  uint32_t size = 0;  // bytes

  void Encode(ByteWriter& w) const;
  static Result<OutOfSync> Decode(std::span<const uint8_t> payload);
  bool operator==(const OutOfSync&) const = default;
};

// The write stream up to `dagtag` is on every node in `node_mask` (lets secondaries
// clear their bitmaps toward nodes that have the data).
struct PeerAck {
  static constexpr PacketType kType = PacketType::kPeerAck;
  uint64_t node_mask = 0;
  uint64_t dagtag = 0;

  void Encode(ByteWriter& w) const;
  static Result<PeerAck> Decode(std::span<const uint8_t> payload);
  bool operator==(const PeerAck&) const = default;
};

// Bitmap chunks (see bitmap_rle.h). Bit i of the bitmap is bit i%64 of word i/64;
// a set bit means the 4 KiB block i is out of sync.
// Payload: start_bit u64 (multiple of 64), word_count u32, reserved u32, words u64[].
struct BitmapPlain {
  static constexpr PacketType kType = PacketType::kBitmapPlain;
  uint64_t start_bit = 0;
  std::vector<uint64_t> words;

  void Encode(ByteWriter& w) const;
  static Result<BitmapPlain> Decode(std::span<const uint8_t> payload);
  bool operator==(const BitmapPlain&) const = default;
};

// Payload: start_bit u64 (multiple of 64), bit_count u64, first_run_set u8,
// reserved u8[3], code length u32, code bytes (VLI run lengths, alternating clear/set).
struct BitmapRle {
  static constexpr PacketType kType = PacketType::kBitmapRle;
  uint64_t start_bit = 0;
  uint64_t bit_count = 0;
  bool first_run_set = false;
  std::vector<uint8_t> code;

  void Encode(ByteWriter& w) const;
  static Result<BitmapRle> Decode(std::span<const uint8_t> payload);
  bool operator==(const BitmapRle&) const = default;
};

}  // namespace bsr::protocol
