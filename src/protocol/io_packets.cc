#include "protocol/io_packets.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "protocol/codec_util.h"

namespace bsr::protocol {

using internal::FinishDecode;
using internal::GetBlob16;
using internal::Malformed;
using internal::PutBlob16;

namespace {

Status CheckRange(PacketType type, uint64_t sector, uint32_t size) {
  if (size % kSectorSize != 0) {
    return Malformed(type, "size {} is not a multiple of {} bytes", size, kSectorSize);
  }
  if (sector > (std::numeric_limits<uint64_t>::max() - size) / kSectorSize) {
    return Malformed(type, "range at sector {} of {} bytes overflows", sector, size);
  }
  return Status::Ok();
}

}  // namespace

// ---- Data ----

bool DataFields::operator==(const DataFields& o) const {
  return sector == o.sector && block_id == o.block_id && seq_num == o.seq_num &&
         dp_flags == o.dp_flags && size == o.size && digest == o.digest &&
         std::equal(data.begin(), data.end(), o.data.begin(), o.data.end());
}

void DataFields::EncodeFixed(ByteWriter& w) const {
  w.U64(sector);
  w.U64(block_id);
  w.U32(seq_num);
  w.U32(dp_flags);
  w.U32(size);
  PutBlob16(w, digest);
}

void DataFields::Encode(ByteWriter& w) const {
  EncodeFixed(w);
  w.Bytes(data);
}

Status DecodeDataFields(std::span<const uint8_t> payload, PacketType type, DataFields* out) {
  ByteReader r(payload);
  out->sector = r.U64();
  out->block_id = r.U64();
  out->seq_num = r.U32();
  out->dp_flags = r.U32();
  out->size = r.U32();
  out->digest = GetBlob16(r, kMaxDigestSize);
  bool no_data = out->dp_flags & (kDpDiscard | kDpZeroes);
  if (r.ok() && !no_data) {
    if (out->size > kMaxDataSize) {
      return Malformed(type, "data block of {} bytes exceeds {}", out->size, kMaxDataSize);
    }
    out->data = r.Bytes(out->size);
  }
  BSR_RETURN_IF_ERROR(FinishDecode(r, type, payload.size()));
  if (out->dp_flags & ~kDpAll) {
    return Malformed(type, "unknown dp_flags 0x{:x}", out->dp_flags & ~kDpAll);
  }
  return CheckRange(type, out->sector, out->size);
}

// ---- Block requests ----

void BlockRequestFields::Encode(ByteWriter& w) const {
  w.U64(sector);
  w.U64(block_id);
  w.U32(size);
  PutBlob16(w, digest);
}

Status DecodeBlockRequest(std::span<const uint8_t> payload, PacketType type, bool with_digest,
                          BlockRequestFields* out) {
  ByteReader r(payload);
  out->sector = r.U64();
  out->block_id = r.U64();
  out->size = r.U32();
  out->digest = GetBlob16(r, kMaxDigestSize);
  BSR_RETURN_IF_ERROR(FinishDecode(r, type, payload.size()));
  if (out->size == 0 || out->size > kMaxDataSize) {
    return Malformed(type, "request size {} outside 1..{}", out->size, kMaxDataSize);
  }
  if (with_digest && out->digest.empty()) return Malformed(type, "digest is missing");
  if (!with_digest && !out->digest.empty()) {
    return Malformed(type, "carries a {}-byte digest but takes none", out->digest.size());
  }
  return CheckRange(type, out->sector, out->size);
}

// ---- Acks ----

void BlockAckFields::Encode(ByteWriter& w) const {
  w.U64(sector);
  w.U64(block_id);
  w.U32(size);
  w.U32(seq_num);
}

Status DecodeBlockAck(std::span<const uint8_t> payload, PacketType type, BlockAckFields* out) {
  ByteReader r(payload);
  out->sector = r.U64();
  out->block_id = r.U64();
  out->size = r.U32();
  out->seq_num = r.U32();
  BSR_RETURN_IF_ERROR(FinishDecode(r, type, payload.size()));
  return CheckRange(type, out->sector, out->size);
}

// ---- Barriers ----

void Barrier::Encode(ByteWriter& w) const {
  w.U32(barrier);
  w.U32(0);
}

Result<Barrier> Barrier::Decode(std::span<const uint8_t> payload) {
  ByteReader r(payload);
  Barrier b;
  b.barrier = r.U32();
  uint32_t reserved = r.U32();
  BSR_RETURN_IF_ERROR(FinishDecode(r, kType, payload.size()));
  if (reserved != 0) return Malformed(kType, "reserved field is not zero");
  return b;
}

void BarrierAck::Encode(ByteWriter& w) const {
  w.U32(barrier);
  w.U32(set_size);
}

Result<BarrierAck> BarrierAck::Decode(std::span<const uint8_t> payload) {
  ByteReader r(payload);
  BarrierAck b;
  b.barrier = r.U32();
  b.set_size = r.U32();
  BSR_RETURN_IF_ERROR(FinishDecode(r, kType, payload.size()));
  return b;
}

// ---- OutOfSync, PeerAck ----

void OutOfSync::Encode(ByteWriter& w) const {
  w.U64(sector);
  w.U32(size);
  w.U32(0);
}

Result<OutOfSync> OutOfSync::Decode(std::span<const uint8_t> payload) {
  ByteReader r(payload);
  OutOfSync o;
  o.sector = r.U64();
  o.size = r.U32();
  uint32_t reserved = r.U32();
  BSR_RETURN_IF_ERROR(FinishDecode(r, kType, payload.size()));
  if (reserved != 0) return Malformed(kType, "reserved field is not zero");
  if (o.size == 0) return Malformed(kType, "empty range");
  BSR_RETURN_IF_ERROR(CheckRange(kType, o.sector, o.size));
  return o;
}

void PeerAck::Encode(ByteWriter& w) const {
  w.U64(node_mask);
  w.U64(dagtag);
}

Result<PeerAck> PeerAck::Decode(std::span<const uint8_t> payload) {
  ByteReader r(payload);
  PeerAck p;
  p.node_mask = r.U64();
  p.dagtag = r.U64();
  BSR_RETURN_IF_ERROR(FinishDecode(r, kType, payload.size()));
  return p;
}

// ---- Bitmap chunks ----

void BitmapPlain::Encode(ByteWriter& w) const {
  w.U64(start_bit);
  w.U32(static_cast<uint32_t>(words.size()));
  w.U32(0);
  for (uint64_t word : words) w.U64(word);
}

Result<BitmapPlain> BitmapPlain::Decode(std::span<const uint8_t> payload) {
  ByteReader r(payload);
  BitmapPlain b;
  b.start_bit = r.U64();
  uint32_t count = r.U32();
  uint32_t reserved = r.U32();
  if (r.ok() && count > kBitmapChunkBytes / 8) {
    return Malformed(kType, "{} words exceed the chunk limit of {}", count, kBitmapChunkBytes / 8);
  }
  if (r.ok() && r.remaining() == size_t{count} * 8) {
    b.words.resize(count);
    for (auto& word : b.words) word = r.U64();
  } else {
    r.Skip(size_t{count} * 8);
  }
  BSR_RETURN_IF_ERROR(FinishDecode(r, kType, payload.size()));
  if (reserved != 0) return Malformed(kType, "reserved field is not zero");
  if (b.start_bit % 64 != 0)
    return Malformed(kType, "start bit {} is not word aligned", b.start_bit);
  if (b.start_bit > std::numeric_limits<uint64_t>::max() - uint64_t{count} * 64) {
    return Malformed(kType, "chunk at bit {} overflows", b.start_bit);
  }
  return b;
}

void BitmapRle::Encode(ByteWriter& w) const {
  w.U64(start_bit);
  w.U64(bit_count);
  w.U8(first_run_set ? 1 : 0);
  w.Zeros(3);
  w.U32(static_cast<uint32_t>(code.size()));
  w.Bytes(code);
}

Result<BitmapRle> BitmapRle::Decode(std::span<const uint8_t> payload) {
  ByteReader r(payload);
  BitmapRle b;
  b.start_bit = r.U64();
  b.bit_count = r.U64();
  uint8_t first = r.U8();
  uint32_t reserved = uint32_t{r.U8()} << 16;
  reserved |= r.U16();
  uint32_t len = r.U32();
  if (r.ok() && len > kBitmapChunkBytes) {
    return Malformed(kType, "{} code bytes exceed the chunk limit of {}", len, kBitmapChunkBytes);
  }
  auto code = r.Bytes(len);
  BSR_RETURN_IF_ERROR(FinishDecode(r, kType, payload.size()));
  if (reserved != 0) return Malformed(kType, "reserved field is not zero");
  if (first > 1) return Malformed(kType, "first-run flag is {}, not 0 or 1", first);
  if (b.start_bit % 64 != 0)
    return Malformed(kType, "start bit {} is not word aligned", b.start_bit);
  if (b.bit_count == 0 || code.empty()) return Malformed(kType, "empty chunk");
  if (b.start_bit > std::numeric_limits<uint64_t>::max() - b.bit_count) {
    return Malformed(kType, "chunk at bit {} of {} bits overflows", b.start_bit, b.bit_count);
  }
  b.first_run_set = first == 1;
  b.code.assign(code.begin(), code.end());
  return b;
}

}  // namespace bsr::protocol
