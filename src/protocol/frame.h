// Frame layer of the bsr wire protocol: the fixed 24-byte big-endian header and a
// streaming decoder that turns bytes from one socket into complete frames. A decoder
// belongs to the one reader of its socket; no internal locking.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "common/status.h"
#include "protocol/packet_type.h"

namespace bsr::protocol {

// "BSRP" in ASCII.
inline constexpr uint32_t kFrameMagic = 0x42535250;
// Frame layout version. Packet semantics are versioned separately (Features).
inline constexpr uint16_t kFrameVersion = 1;
inline constexpr size_t kFrameHeaderSize = 24;
// Volume number of connection-wide packets (preamble, auth, ping, ...).
inline constexpr uint16_t kNoVolume = 0;

// Header layout (all big-endian):
//   0 u32 magic     4 u16 version   6 u16 type     8 u16 flags       10 u16 volume
//  12 u32 payload length            16 u32 payload crc32c            20 u32 header crc32c
// The header crc covers bytes 0..19; the payload crc covers the whole payload, or
// with kFrameFlagBlockOutsideCrc only the fixed fields before the data block.
// Header flag bit 0: the payload crc covers the packet's fixed fields (through its
// digest) but not its trailing data block, which TCP's checksum and, when configured,
// data-integrity-alg protect (as in DRBD, which has no payload checksum). Sent only
// after both peers offered kFeatureBlockOutsideCrc, and only on packets that carry a
// block (PacketTypeInfo::block_digest_at != 0): crc32c over every block was 9-13% of
// a node's CPU on sequential writes and resync (docs/wire-protocol.md).
inline constexpr uint16_t kFrameFlagBlockOutsideCrc = 1u << 0;
// Every flag this build knows; any other bit is refused.
inline constexpr uint16_t kFrameFlagsKnown = kFrameFlagBlockOutsideCrc;

struct FrameHeader {
  uint16_t version = kFrameVersion;
  PacketType type = PacketType::kPing;
  uint16_t flags = 0;
  uint16_t volume = kNoVolume;
  uint32_t payload_length = 0;
  uint32_t payload_crc = 0;

  bool operator==(const FrameHeader&) const = default;
};

// One decoded frame: header plus the verified payload bytes.
struct Frame {
  FrameHeader header;
  std::vector<uint8_t> payload;

  PacketType type() const { return header.type; }
  uint16_t volume() const { return header.volume; }
};

// A decoded frame whose payload is a view into the decoder's buffer: valid until the
// next Feed(), PrepareWrite() or Next*() call on that decoder.
struct FrameView {
  FrameHeader header;
  std::span<const uint8_t> payload;

  PacketType type() const { return header.type; }
  uint16_t volume() const { return header.volume; }
};

// The 24 header bytes for a payload whose crc32c is `payload_crc`.
std::array<uint8_t, kFrameHeaderSize> EncodeFrameHeader(PacketType type, uint16_t volume,
                                                        uint32_t payload_length,
                                                        uint32_t payload_crc);
// Appends header + payload to *out.
void AppendFrame(std::vector<uint8_t>* out, PacketType type, uint16_t volume,
                 std::span<const uint8_t> payload);
std::vector<uint8_t> EncodeFrame(PacketType type, uint16_t volume,
                                 std::span<const uint8_t> payload);
// Fills in the header of a frame whose payload was written right after
// kFrameHeaderSize reserved bytes at frame[0]; `extra`/`extra_length` account for
// payload bytes sent separately after it (zero-copy data blocks). `flags` are the
// connection's negotiated frame flags: kFrameFlagBlockOutsideCrc is applied (the
// crc then skips the block, so `extra` is not read) only to a type that carries a
// block, and dropped for every other type, so callers may pass it for any frame.
void SealFrame(std::span<uint8_t> frame, PacketType type, uint16_t volume,
               uint32_t extra_length = 0, std::span<const uint8_t> extra = {}, uint16_t flags = 0);

// Parses and checks one header (magic, header crc, version, type, flags, length
// against min(max_payload, the type's own limit)). `allowed_flags`: the flags the
// connection negotiated; any other bit, or kFrameFlagBlockOutsideCrc on a type
// without a data block, is refused. kProtocol Status on failure.
Result<FrameHeader> DecodeFrameHeader(std::span<const uint8_t, kFrameHeaderSize> bytes,
                                      uint32_t max_payload = kMaxFramePayload,
                                      uint16_t allowed_flags = 0);

// How many leading payload bytes the payload crc covers: all of them, or with
// kFrameFlagBlockOutsideCrc the fixed fields and digest of a block-carrying type.
// kProtocol Status when the payload is too short to hold those fields.
Result<size_t> CrcCoveredLength(PacketType type, uint16_t flags, std::span<const uint8_t> payload);
// Checks header.payload_crc against the covered part of `payload`.
Status CheckPayloadCrc(const FrameHeader& header, std::span<const uint8_t> payload);

// Streaming decoder for one socket. Feed() bytes in any split; Next() yields each
// complete frame. After the first error the decoder stays failed: the connection
// must be dropped, since framing cannot be recovered.
//
// Large payloads can bypass the decoder's buffer: once Next*() returned nullopt with
// a header pending (pending_header()), the caller moves the part already buffered
// into its own buffer (TakePendingPayload), receives the rest right after it, and
// hands the whole payload to FinishExternal(), which checks its crc. No Next*(),
// Feed() or PrepareWrite() call may come in between.
class StreamDecoder {
 public:
  explicit StreamDecoder(uint32_t max_payload = kMaxFramePayload) : max_payload_(max_payload) {}

  void Feed(std::span<const uint8_t> bytes);
  // Zero-copy input: room for n bytes to recv() into (not zero-filled), then
  // Commit(bytes_read).
  std::span<uint8_t> PrepareWrite(size_t n);
  void Commit(size_t n);

  // A complete frame, std::nullopt when more bytes are needed, or a kProtocol error.
  Result<std::optional<Frame>> Next();
  // Same without copying the payload (see FrameView for how long the view lives).
  Result<std::optional<FrameView>> NextView();
  // At end of stream: error when a frame was cut off (names how much is missing).
  Status Finish() const;
  // Bytes needed before Next() can make progress (header or rest of the payload).
  size_t BytesWanted() const;
  size_t buffered() const { return end_ - start_; }
  uint32_t max_payload() const { return max_payload_; }
  // Header flags the connection negotiated (DecodeFrameHeader's allowed_flags); 0
  // until the feature handshake says otherwise.
  void set_allowed_flags(uint16_t flags) { allowed_flags_ = flags; }
  uint16_t allowed_flags() const { return allowed_flags_; }

  // The header of the frame whose payload has not fully arrived, or nullptr.
  const FrameHeader* pending_header() const { return pending_ ? &*pending_ : nullptr; }
  // Moves the buffered bytes of the pending frame's payload to the start of `dst`
  // (at most dst.size()) and returns how many; the caller receives the rest.
  size_t TakePendingPayload(std::span<uint8_t> dst);
  // The pending frame's whole payload, received by the caller: checks its length and
  // crc and readies the decoder for the next frame. Errors fail the decoder.
  Result<FrameHeader> FinishExternal(std::span<const uint8_t> payload);

 private:
  // Room for n more bytes at end_: moves the live bytes to the front or grows.
  uint8_t* Reserve(size_t n);

  uint32_t max_payload_;
  uint16_t allowed_flags_ = 0;
  // Live bytes are [start_, end_) of buf_ (capacity cap_); never zero-filled.
  std::unique_ptr<uint8_t[]> buf_;
  size_t cap_ = 0;
  size_t start_ = 0;
  size_t end_ = 0;
  size_t prepared_ = 0;  // bytes PrepareWrite offered at end_
  std::optional<FrameHeader> pending_;
  bool external_ = false;  // TakePendingPayload ran; FinishExternal must come next
  Status failed_;
};

}  // namespace bsr::protocol
