// On-disk format of bsr metadata (docs/on-disk-format.md): constants, placement/layout
// arithmetic, and encode/decode of the three block types. Pure functions; any thread.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace bsr::meta {

inline constexpr uint32_t kBlockSize = 4096;
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr uint32_t kSuperblockMagic = 0x42535253;  // "BSRS"
inline constexpr uint32_t kAlMagic = 0x42535241;          // "BSRA"
inline constexpr uint32_t kBitmapMagic = 0x42535242;      // "BSRB"

// Data granularity: one bitmap bit per 4 KiB block, AL extents of 4 MiB.
inline constexpr uint32_t kExtentShift = 22;
inline constexpr uint64_t kExtentSize = uint64_t{1} << kExtentShift;
inline constexpr uint64_t kBlocksPerExtent = kExtentSize / kBlockSize;

inline constexpr int kMaxPeers = 31;
inline constexpr int kMaxNodeId = 31;
inline constexpr int kHistoryUuids = 32;

// Superblock: one 4 KiB block holding two 2 KiB copies, written alternately.
inline constexpr uint32_t kSuperblockCopySize = 2048;

// AL transaction: up to 64 slot updates and a 919-slot window of the full table.
inline constexpr uint32_t kAlMaxUpdates = 64;
inline constexpr uint32_t kAlContextPerTransaction = 919;
inline constexpr uint32_t kAlMinExtents = 7;
inline constexpr uint32_t kAlMaxExtents = 65536;
inline constexpr uint32_t kAlDefaultExtents = 6001;
inline constexpr uint32_t kAlMaxSlots = 8192;  // 32 MiB ring at most
inline constexpr uint32_t kNoExtent = 0xFFFFFFFF;

// Bitmap block: 32-byte header, then 4064 bytes = 32512 bits (127 MiB of data).
inline constexpr uint32_t kBitmapHeaderSize = 32;
inline constexpr uint32_t kBitmapWordsPerBlock = (kBlockSize - kBitmapHeaderSize) / 8;  // 508
inline constexpr uint64_t kBitsPerBitmapBlock = uint64_t{kBitmapWordsPerBlock} * 64;    // 32512

inline constexpr uint64_t kIndexedSlotSize = uint64_t{128} << 20;

// Superblock flags (DRBD's MDF_* meaning).
enum SbFlag : uint32_t {
  kFlagConsistent = 1u << 0,
  kFlagWasUpToDate = 1u << 1,
  kFlagPrimaryInd = 1u << 2,
  kFlagCrashedPrimary = 1u << 3,
  kFlagAlClean = 1u << 4,
  kFlagAlDisabled = 1u << 5,
  kFlagPrimaryLostQuorum = 1u << 6,
  kSbFlagMask = (1u << 7) - 1,
};

// Per-peer-slot flags.
enum PeerFlag : uint32_t {
  kPeerConnected = 1u << 0,
  kPeerOutdated = 1u << 1,
  kPeerFencing = 1u << 2,
  kPeerFullSync = 1u << 3,
  kPeerConnectedOnce = 1u << 4,
  kPeerFlagMask = (1u << 5) - 1,
};

// Flag names as used in dump-md.
std::string SbFlagsToString(uint32_t flags);
std::string PeerFlagsToString(uint32_t flags);
Result<uint32_t> SbFlagFromName(std::string_view name);
Result<uint32_t> PeerFlagFromName(std::string_view name);

enum class PlacementKind : uint8_t { kInternal = 1, kFlexExternal = 2, kIndexed = 3 };

// Where the metadata lives: drbdmeta's INDEX argument.
struct Placement {
  PlacementKind kind = PlacementKind::kInternal;
  uint32_t index = 0;  // kIndexed only

  // "internal", "flex-external" (also "flexible"), or a slot number.
  static Result<Placement> Parse(std::string_view text);
  std::string ToString() const;
  bool operator==(const Placement&) const = default;
};

struct AlGeometry {
  uint32_t stripes = 1;
  uint32_t stripe_size_4k = 8;  // 32 KiB ring by default
  uint32_t extents = kAlDefaultExtents;

  uint32_t slots() const { return stripes * stripe_size_4k; }
  uint64_t bytes() const { return uint64_t{slots()} * kBlockSize; }
  // Ring slot (transaction number modulo ring size) -> block within the AL area, striped.
  uint32_t SlotBlock(uint32_t slot) const {
    return (slot % stripes) * stripe_size_4k + slot / stripes;
  }
  Status Validate() const;
  bool operator==(const AlGeometry&) const = default;
};

// Byte positions of the metadata area on the meta device. Within the area (low to high):
// bitmaps (peer slot 0 first), AL ring, superblock block (last 4 KiB).
struct Layout {
  uint64_t md_start = 0;
  uint64_t md_end = 0;
  uint32_t bm_blocks_per_peer = 0;
  uint32_t max_peers = 0;
  AlGeometry al;

  uint64_t md_size() const { return md_end - md_start; }
  uint64_t sb_offset() const { return md_end - kBlockSize; }
  uint64_t al_offset() const { return sb_offset() - al.bytes(); }
  uint64_t bm_offset() const { return al_offset() - bm_bytes_per_peer() * max_peers; }
  uint64_t bm_bytes_per_peer() const { return uint64_t{bm_blocks_per_peer} * kBlockSize; }
  uint64_t BitmapBlockOffset(int slot, uint32_t block) const {
    return bm_offset() + bm_bytes_per_peer() * static_cast<uint64_t>(slot) +
           uint64_t{block} * kBlockSize;
  }
  // Data bytes the bitmaps can describe.
  uint64_t capacity() const {
    return uint64_t{bm_blocks_per_peer} * kBitsPerBitmapBlock * kBlockSize;
  }
};

// End of the metadata area for a placement on a device of `device_size` bytes.
Result<uint64_t> MdEnd(const Placement& placement, uint64_t device_size);

// Layout for a new metadata area. For internal metadata the usable data size is
// md_start (the data ends where the metadata begins).
Result<Layout> ComputeLayout(const Placement& placement, uint64_t device_size, uint32_t max_peers,
                             const AlGeometry& al);

struct PeerSlot {
  int32_t node_id = -1;  // -1: slot unused (its bitmap is not initialized)
  uint32_t flags = 0;
  uint64_t bitmap_uuid = 0;
  bool operator==(const PeerSlot&) const = default;
};

struct Superblock {
  uint64_t seq = 0;  // copy sequence number: the valid copy with the highest wins
  uint32_t flags = 0;
  int32_t node_id = -1;
  uint32_t max_peers = 1;
  Placement placement;
  uint32_t peer_max_bio_size = 1 << 20;
  uint64_t md_end = 0;
  uint64_t md_size = 0;
  uint64_t data_size = 0;  // bytes of data described; 0 = not yet known (external)
  uint32_t bm_blocks_per_peer = 0;
  AlGeometry al;
  uint64_t current_uuid = 0;
  std::array<uint64_t, kHistoryUuids> history{};  // [0] is the youngest
  std::array<PeerSlot, kMaxPeers> peers{};

  Layout layout() const;
  uint64_t data_bits() const { return (data_size + kBlockSize - 1) / kBlockSize; }
  bool operator==(const Superblock&) const = default;
};

// One 2 KiB copy. Decode checks magic, version, crc and every field's range and the
// consistency of the layout fields; the message names the field at fault.
std::vector<uint8_t> EncodeSuperblockCopy(const Superblock& sb);
Result<Superblock> DecodeSuperblockCopy(std::span<const uint8_t> copy);

// The 4 KiB superblock block: both copies. Returns the newer valid copy and, in
// `note`, what was wrong with the other one (empty when both are fine).
struct SuperblockPick {
  Superblock sb;
  int copy = 0;      // which copy (0 or 1) was used
  std::string note;  // why the other copy was not used, if it was invalid
};
Result<SuperblockPick> DecodeSuperblockBlock(std::span<const uint8_t> block);

// An activity-log transaction (one 4 KiB ring slot).
struct AlTransaction {
  enum Type : uint16_t { kUpdate = 1, kInit = 2 };
  uint16_t type = kUpdate;
  uint64_t tr_number = 0;
  struct Update {
    uint16_t slot;
    uint32_t extent;
  };
  std::vector<Update> updates;    // <= kAlMaxUpdates
  uint32_t context_start = 0;     // first cache slot in `context`
  std::vector<uint32_t> context;  // <= kAlContextPerTransaction, kNoExtent = empty slot
};
std::vector<uint8_t> EncodeAlTransaction(const AlTransaction& tr);
// `al_extents` bounds slot numbers. Error kCorrupt names what is wrong.
Result<AlTransaction> DecodeAlTransaction(std::span<const uint8_t> block, uint32_t al_extents);

// A bitmap block: header (slot, index) and kBitmapWordsPerBlock 64-bit words.
std::vector<uint8_t> EncodeBitmapBlock(int slot, uint32_t index, std::span<const uint64_t> words);
Status DecodeBitmapBlock(std::span<const uint8_t> block, int slot, uint32_t index,
                         std::span<uint64_t> words_out);

std::string UuidString(uint64_t uuid);  // 16 upper-case hex digits
// drbdmeta's get-gi line for a peer slot (slot < 0: no peer, bitmap UUID and peer flags
// 0): current:bitmap:history0:history1 then the superblock and peer flag bits.
std::string GiLine(const Superblock& sb, int slot);
// show-gi: the line framed by drbdmeta's legend (what each field means).
std::string GiText(const Superblock& sb, int slot);

}  // namespace bsr::meta
