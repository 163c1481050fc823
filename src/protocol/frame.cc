#include "protocol/frame.h"

#include <algorithm>
#include <cstring>

#include "common/bytes.h"
#include "common/crc32c.h"

namespace bsr::protocol {

namespace {

void StoreHeader(uint8_t* p, PacketType type, uint16_t volume, uint32_t payload_length,
                 uint32_t payload_crc, uint16_t flags = 0) {
  StoreBe32(p, kFrameMagic);
  StoreBe16(p + 4, kFrameVersion);
  StoreBe16(p + 6, static_cast<uint16_t>(type));
  StoreBe16(p + 8, flags);
  StoreBe16(p + 10, volume);
  StoreBe32(p + 12, payload_length);
  StoreBe32(p + 16, payload_crc);
  StoreBe32(p + 20, Crc32c({p, 20}));
}

}  // namespace

std::array<uint8_t, kFrameHeaderSize> EncodeFrameHeader(PacketType type, uint16_t volume,
                                                        uint32_t payload_length,
                                                        uint32_t payload_crc) {
  std::array<uint8_t, kFrameHeaderSize> h{};
  StoreHeader(h.data(), type, volume, payload_length, payload_crc);
  return h;
}

void AppendFrame(std::vector<uint8_t>* out, PacketType type, uint16_t volume,
                 std::span<const uint8_t> payload) {
  auto h = EncodeFrameHeader(type, volume, static_cast<uint32_t>(payload.size()), Crc32c(payload));
  out->insert(out->end(), h.begin(), h.end());
  out->insert(out->end(), payload.begin(), payload.end());
}

std::vector<uint8_t> EncodeFrame(PacketType type, uint16_t volume,
                                 std::span<const uint8_t> payload) {
  std::vector<uint8_t> out;
  out.reserve(kFrameHeaderSize + payload.size());
  AppendFrame(&out, type, volume, payload);
  return out;
}

void SealFrame(std::span<uint8_t> frame, PacketType type, uint16_t volume, uint32_t extra_length,
               std::span<const uint8_t> extra, uint16_t flags) {
  auto payload = frame.subspan(kFrameHeaderSize);
  flags &= kFrameFlagBlockOutsideCrc;
  uint32_t crc = 0;
  if (flags != 0) {
    // A type without a block keeps the full crc and no flag. Tested before
    // CrcCoveredLength, whose error would format a message for every ack and ping.
    if (BlockDigestAt(type) == 0) flags = 0;
  }
  if (flags != 0) {
    // The fixed fields are always in `frame` (the block alone may be in `extra`).
    auto covered = CrcCoveredLength(type, flags, payload);
    if (covered.ok()) {
      crc = Crc32c(payload.first(*covered));
    } else {
      flags = 0;
    }
  }
  if (flags == 0) crc = Crc32c(extra, Crc32c(payload));
  StoreHeader(frame.data(), type, volume, static_cast<uint32_t>(payload.size()) + extra_length, crc,
              flags);
}

Result<size_t> CrcCoveredLength(PacketType type, uint16_t flags, std::span<const uint8_t> payload) {
  if (!(flags & kFrameFlagBlockOutsideCrc)) return payload.size();
  const PacketTypeInfo* info = FindPacketTypeInfo(static_cast<uint16_t>(type));
  if (info == nullptr || info->block_digest_at == 0) {
    return Error(Errc::kProtocol, "{} frame has the block-outside-crc flag but carries no block",
                 PacketTypeName(type));
  }
  size_t at = info->block_digest_at;
  if (payload.size() < at + 2) {
    return Error(Errc::kProtocol,
                 "{} frame payload of {} bytes is shorter than its {} bytes of fixed fields",
                 info->name, payload.size(), at + 2);
  }
  size_t covered = at + 2 + LoadBe16(payload.data() + at);
  if (covered > payload.size()) {
    return Error(Errc::kProtocol,
                 "{} frame: fixed fields and digest of {} bytes exceed the {}-byte payload",
                 info->name, covered, payload.size());
  }
  return covered;
}

Status CheckPayloadCrc(const FrameHeader& header, std::span<const uint8_t> payload) {
  BSR_ASSIGN_OR_RETURN(size_t covered, CrcCoveredLength(header.type, header.flags, payload));
  uint32_t crc = Crc32c(payload.first(covered));
  if (crc != header.payload_crc) {
    return Error(Errc::kProtocol,
                 "{} frame payload crc mismatch: header says 0x{:08x}, computed 0x{:08x} "
                 "over {} of {} bytes",
                 PacketTypeName(header.type), header.payload_crc, crc, covered, payload.size());
  }
  return Status::Ok();
}

Result<FrameHeader> DecodeFrameHeader(std::span<const uint8_t, kFrameHeaderSize> bytes,
                                      uint32_t max_payload, uint16_t allowed_flags) {
  const uint8_t* p = bytes.data();
  uint32_t magic = LoadBe32(p);
  if (magic != kFrameMagic) {
    return Error(Errc::kProtocol, "bad frame magic 0x{:08x} (expected 0x{:08x})", magic,
                 kFrameMagic);
  }
  uint32_t want_crc = LoadBe32(p + 20);
  uint32_t got_crc = Crc32c(bytes.first(20));
  if (want_crc != got_crc) {
    return Error(Errc::kProtocol,
                 "frame header crc mismatch: header says 0x{:08x}, computed 0x{:08x}", want_crc,
                 got_crc);
  }
  FrameHeader h;
  h.version = LoadBe16(p + 4);
  if (h.version != kFrameVersion) {
    return Error(Errc::kProtocol, "unsupported frame version {} (this build speaks {})", h.version,
                 kFrameVersion);
  }
  uint16_t type = LoadBe16(p + 6);
  const PacketTypeInfo* info = FindPacketTypeInfo(type);
  if (info == nullptr) return Error(Errc::kProtocol, "unknown packet type {}", type);
  h.type = info->type;
  h.flags = LoadBe16(p + 8);
  if (h.flags & ~kFrameFlagsKnown) {
    return Error(Errc::kProtocol, "{} frame has unknown header flags 0x{:04x}", info->name,
                 h.flags & ~kFrameFlagsKnown);
  }
  if (h.flags & ~allowed_flags) {
    return Error(Errc::kProtocol,
                 "{} frame has header flags 0x{:04x} that this connection did not negotiate",
                 info->name, h.flags & ~allowed_flags);
  }
  if ((h.flags & kFrameFlagBlockOutsideCrc) && info->block_digest_at == 0) {
    return Error(Errc::kProtocol,
                 "{} frame has the block-outside-crc flag but this type carries no block",
                 info->name);
  }
  h.volume = LoadBe16(p + 10);
  h.payload_length = LoadBe32(p + 12);
  uint32_t limit = std::min(max_payload, info->max_payload);
  if (h.payload_length > limit) {
    return Error(Errc::kProtocol, "{} frame payload of {} bytes exceeds the limit of {} bytes",
                 info->name, h.payload_length, limit);
  }
  h.payload_crc = LoadBe32(p + 16);
  return h;
}

uint8_t* StreamDecoder::Reserve(size_t n) {
  if (start_ == end_) start_ = end_ = 0;
  if (end_ + n <= cap_) return buf_.get() + end_;
  size_t live = end_ - start_;
  if (live + n <= cap_) {
    std::memmove(buf_.get(), buf_.get() + start_, live);
  } else {
    size_t cap = std::max({live + n, cap_ * 2, size_t{4096}});
    auto grown = std::make_unique_for_overwrite<uint8_t[]>(cap);
    if (live > 0) std::memcpy(grown.get(), buf_.get() + start_, live);
    buf_ = std::move(grown);
    cap_ = cap;
  }
  start_ = 0;
  end_ = live;
  return buf_.get() + end_;
}

void StreamDecoder::Feed(std::span<const uint8_t> bytes) {
  if (bytes.empty()) return;
  uint8_t* p = Reserve(bytes.size());
  std::memcpy(p, bytes.data(), bytes.size());
  end_ += bytes.size();
}

std::span<uint8_t> StreamDecoder::PrepareWrite(size_t n) {
  uint8_t* p = Reserve(n);
  prepared_ = n;
  return {p, n};
}

void StreamDecoder::Commit(size_t n) {
  end_ += std::min(n, prepared_);
  prepared_ = 0;
}

size_t StreamDecoder::BytesWanted() const {
  size_t have = buffered();
  size_t need = pending_ ? pending_->payload_length : kFrameHeaderSize;
  return need > have ? need - have : 0;
}

size_t StreamDecoder::TakePendingPayload(std::span<uint8_t> dst) {
  if (!pending_ || !failed_.ok()) return 0;
  external_ = true;
  size_t n = std::min({buffered(), static_cast<size_t>(pending_->payload_length), dst.size()});
  if (n > 0) std::memcpy(dst.data(), buf_.get() + start_, n);
  start_ += n;
  return n;
}

Result<FrameHeader> StreamDecoder::FinishExternal(std::span<const uint8_t> payload) {
  if (!failed_.ok()) return failed_;
  if (!pending_) {
    failed_ = Error(Errc::kProtocol, "frame payload received with no frame header pending");
    return failed_;
  }
  FrameHeader h = *pending_;
  pending_.reset();
  external_ = false;
  if (payload.size() != h.payload_length) {
    failed_ = Error(Errc::kProtocol, "{} frame payload of {} bytes received, header says {}",
                    PacketTypeName(h.type), payload.size(), h.payload_length);
    return failed_;
  }
  Status crc = CheckPayloadCrc(h, payload);
  if (!crc.ok()) {
    failed_ = crc;
    return failed_;
  }
  return h;
}

Result<std::optional<FrameView>> StreamDecoder::NextView() {
  if (!failed_.ok()) return failed_;
  if (external_) {
    failed_ = Error(Errc::kProtocol, "frame decoder used while a payload is received outside it");
    return failed_;
  }
  if (!pending_) {
    if (buffered() < kFrameHeaderSize) return std::optional<FrameView>();
    auto header = DecodeFrameHeader(
        std::span<const uint8_t, kFrameHeaderSize>(buf_.get() + start_, kFrameHeaderSize),
        max_payload_, allowed_flags_);
    if (!header.ok()) {
      failed_ = header.status();
      return failed_;
    }
    start_ += kFrameHeaderSize;
    pending_ = *header;
  }
  if (buffered() < pending_->payload_length) return std::optional<FrameView>();
  FrameView frame;
  frame.header = *pending_;
  frame.payload = std::span<const uint8_t>(buf_.get() + start_, pending_->payload_length);
  start_ += pending_->payload_length;
  pending_.reset();
  Status crc = CheckPayloadCrc(frame.header, frame.payload);
  if (!crc.ok()) {
    failed_ = crc;
    return failed_;
  }
  return std::optional<FrameView>(frame);
}

Result<std::optional<Frame>> StreamDecoder::Next() {
  BSR_ASSIGN_OR_RETURN(std::optional<FrameView> view, NextView());
  if (!view) return std::optional<Frame>();
  Frame frame;
  frame.header = view->header;
  frame.payload.assign(view->payload.begin(), view->payload.end());
  return std::optional<Frame>(std::move(frame));
}

Status StreamDecoder::Finish() const {
  if (!failed_.ok()) return failed_;
  if (pending_) {
    return Error(Errc::kProtocol,
                 "stream ended inside a {} frame: payload truncated, {} of {} bytes received",
                 PacketTypeName(pending_->type), buffered(), pending_->payload_length);
  }
  if (buffered() > 0) {
    return Error(Errc::kProtocol,
                 "stream ended inside a frame header: truncated, {} of {} bytes received",
                 buffered(), kFrameHeaderSize);
  }
  return Status::Ok();
}

}  // namespace bsr::protocol
