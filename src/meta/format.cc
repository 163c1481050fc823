#include "meta/format.h"

#include <algorithm>
#include <charconv>

#include "common/bytes.h"
#include "common/crc32c.h"

namespace bsr::meta {
namespace {

struct FlagName {
  uint32_t bit;
  const char* name;
};
constexpr FlagName kSbFlagNames[] = {
    {kFlagConsistent, "consistent"},
    {kFlagWasUpToDate, "was-up-to-date"},
    {kFlagPrimaryInd, "primary-indicator"},
    {kFlagCrashedPrimary, "crashed-primary"},
    {kFlagAlClean, "al-clean"},
    {kFlagAlDisabled, "al-disabled"},
    {kFlagPrimaryLostQuorum, "primary-lost-quorum"},
};
constexpr FlagName kPeerFlagNames[] = {
    {kPeerConnected, "connected"},
    {kPeerOutdated, "outdated"},
    {kPeerFencing, "fencing"},
    {kPeerFullSync, "full-sync-needed"},
    {kPeerConnectedOnce, "connected-once"},
};

template <size_t N>
std::string FlagsToString(uint32_t flags, const FlagName (&names)[N]) {
  std::string out;
  for (const auto& f : names) {
    if (flags & f.bit) {
      if (!out.empty()) out += ',';
      out += f.name;
    }
  }
  return out.empty() ? "none" : out;
}

template <size_t N>
Result<uint32_t> FlagFromName(std::string_view name, const FlagName (&names)[N], const char* what) {
  for (const auto& f : names) {
    if (name == f.name) return f.bit;
  }
  return Error(Errc::kInvalidArgument, "unknown {} flag '{}'", what, name);
}

// Offsets inside a superblock copy.
constexpr size_t kSbCrcOffset = 8;
constexpr size_t kSbPeersOffset = 352;
constexpr size_t kSbPeerSize = 24;
static_assert(kSbPeersOffset + kSbPeerSize * kMaxPeers <= kSuperblockCopySize);

constexpr size_t kAlCrcOffset = 8;
constexpr size_t kAlUpdatesOffset = 32;
constexpr size_t kAlContextOffset = kAlUpdatesOffset + kAlMaxUpdates * 6;
static_assert(kAlContextOffset + kAlContextPerTransaction * 4 <= kBlockSize);

constexpr size_t kBmCrcOffset = 8;

uint32_t CrcWithHole(std::span<const uint8_t> data, size_t crc_offset) {
  static const uint8_t kZero[4] = {0, 0, 0, 0};
  uint32_t c = Crc32c(data.subspan(0, crc_offset));
  c = Crc32c(kZero, c);
  return Crc32c(data.subspan(crc_offset + 4), c);
}

uint64_t AlignDown(uint64_t v) {
  return v / kBlockSize * kBlockSize;
}

}  // namespace

std::string SbFlagsToString(uint32_t flags) {
  return FlagsToString(flags, kSbFlagNames);
}
std::string PeerFlagsToString(uint32_t flags) {
  return FlagsToString(flags, kPeerFlagNames);
}
Result<uint32_t> SbFlagFromName(std::string_view name) {
  return FlagFromName(name, kSbFlagNames, "superblock");
}
Result<uint32_t> PeerFlagFromName(std::string_view name) {
  return FlagFromName(name, kPeerFlagNames, "peer");
}

std::string UuidString(uint64_t uuid) {
  return fmt::format("{:016X}", uuid);
}

Result<Placement> Placement::Parse(std::string_view text) {
  if (text == "internal") return Placement{PlacementKind::kInternal, 0};
  if (text == "flex-external" || text == "flexible" || text == "flex") {
    return Placement{PlacementKind::kFlexExternal, 0};
  }
  uint32_t index = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), index);
  if (ec != std::errc() || ptr != text.data() + text.size() || text.empty() || index > 1u << 20) {
    return Error(Errc::kInvalidArgument,
                 "bad meta-data index '{}': expected internal, flex-external, flexible or a "
                 "slot number",
                 text);
  }
  return Placement{PlacementKind::kIndexed, index};
}

std::string Placement::ToString() const {
  switch (kind) {
    case PlacementKind::kInternal: return "internal";
    case PlacementKind::kFlexExternal: return "flex-external";
    case PlacementKind::kIndexed: return std::to_string(index);
  }
  return "?";
}

Status AlGeometry::Validate() const {
  if (stripes < 1 || stripes > kAlMaxSlots || stripe_size_4k < 1 || stripe_size_4k > kAlMaxSlots) {
    return Error(Errc::kInvalidArgument, "al-stripes {} x al-stripe-size {} KiB out of range",
                 stripes, uint64_t{stripe_size_4k} * 4);
  }
  uint64_t n = uint64_t{stripes} * stripe_size_4k;
  if (n < 2 || n > kAlMaxSlots) {
    return Error(Errc::kInvalidArgument,
                 "activity log ring of {} KiB: must be between 8 KiB and {} KiB", n * 4,
                 uint64_t{kAlMaxSlots} * 4);
  }
  if (extents < kAlMinExtents || extents > kAlMaxExtents) {
    return Error(Errc::kInvalidArgument, "al-extents {} out of range {}..{}", extents,
                 kAlMinExtents, kAlMaxExtents);
  }
  uint64_t max = uint64_t{kAlContextPerTransaction} * (n - 1);
  if (extents > max) {
    return Error(Errc::kInvalidArgument,
                 "al-extents {} too large for a {} KiB activity log ring (at most 919 x ({} - 1) "
                 "= {})",
                 extents, n * 4, n, max);
  }
  return Status::Ok();
}

Result<uint64_t> MdEnd(const Placement& placement, uint64_t device_size) {
  if (placement.kind == PlacementKind::kIndexed) {
    uint64_t end = (uint64_t{placement.index} + 1) * kIndexedSlotSize;
    if (end > device_size) {
      return Error(Errc::kInvalidArgument,
                   "meta-data index {} needs {} bytes of meta device (128 MiB per index), device "
                   "has {}",
                   placement.index, end, device_size);
    }
    return end;
  }
  return AlignDown(device_size);
}

Result<Layout> ComputeLayout(const Placement& placement, uint64_t device_size, uint32_t max_peers,
                             const AlGeometry& al) {
  if (max_peers < 1 || max_peers > kMaxPeers) {
    return Error(Errc::kInvalidArgument, "max-peers {} out of range 1..{}", max_peers, kMaxPeers);
  }
  BSR_RETURN_IF_ERROR(al.Validate());
  BSR_ASSIGN_OR_RETURN(uint64_t md_end, MdEnd(placement, device_size));
  Layout l;
  l.md_end = md_end;
  l.max_peers = max_peers;
  l.al = al;
  uint64_t fixed_blocks = 1 + uint64_t{al.slots()};
  if (placement.kind == PlacementKind::kInternal) {
    // Bitmaps sized for the whole device: a little more than the data needs, never less.
    uint64_t bits = md_end / kBlockSize;
    uint64_t bm = (bits + kBitsPerBitmapBlock - 1) / kBitsPerBitmapBlock;
    uint64_t md_blocks = fixed_blocks + bm * max_peers;
    if (md_blocks * kBlockSize + kBlockSize > md_end) {
      return Error(Errc::kInvalidArgument,
                   "device of {} bytes too small for internal meta data ({} bytes) plus data",
                   device_size, md_blocks * kBlockSize);
    }
    l.bm_blocks_per_peer = static_cast<uint32_t>(bm);
    l.md_start = md_end - md_blocks * kBlockSize;
    return l;
  }
  uint64_t area_start = placement.kind == PlacementKind::kIndexed ? md_end - kIndexedSlotSize : 0;
  uint64_t area_blocks = (md_end - area_start) / kBlockSize;
  if (area_blocks < fixed_blocks + max_peers) {
    return Error(Errc::kInvalidArgument,
                 "meta device area of {} bytes too small: needs at least {} bytes for {} peer(s)",
                 md_end - area_start, (fixed_blocks + max_peers) * kBlockSize, max_peers);
  }
  uint64_t bm = (area_blocks - fixed_blocks) / max_peers;
  bm = std::min<uint64_t>(bm, 0xFFFFFFFFu);
  l.bm_blocks_per_peer = static_cast<uint32_t>(bm);
  l.md_start = md_end - (fixed_blocks + bm * max_peers) * kBlockSize;
  return l;
}

Layout Superblock::layout() const {
  Layout l;
  l.md_end = md_end;
  l.md_start = md_end - md_size;
  l.bm_blocks_per_peer = bm_blocks_per_peer;
  l.max_peers = max_peers;
  l.al = al;
  return l;
}

std::vector<uint8_t> EncodeSuperblockCopy(const Superblock& sb) {
  std::vector<uint8_t> out;
  out.reserve(kSuperblockCopySize);
  ByteWriter w(&out);
  w.U32(kSuperblockMagic);
  w.U16(kFormatVersion);
  w.U16(kSuperblockCopySize);
  w.U32(0);  // crc, filled below
  w.U32(0);
  w.U64(sb.seq);
  w.U32(sb.flags);
  w.U32(static_cast<uint32_t>(sb.node_id));
  w.U32(sb.max_peers);
  w.U8(static_cast<uint8_t>(sb.placement.kind));
  w.Zeros(3);
  w.U32(sb.placement.index);
  w.U32(sb.peer_max_bio_size);
  w.U64(sb.md_end);
  w.U64(sb.md_size);
  w.U64(sb.data_size);
  w.U32(sb.bm_blocks_per_peer);
  w.U32(sb.al.stripes);
  w.U32(sb.al.stripe_size_4k);
  w.U32(sb.al.extents);
  w.U64(sb.current_uuid);
  for (uint64_t h : sb.history) w.U64(h);
  for (const PeerSlot& p : sb.peers) {
    w.U32(static_cast<uint32_t>(p.node_id));
    w.U32(p.flags);
    w.U64(p.bitmap_uuid);
    w.U64(0);
  }
  out.resize(kSuperblockCopySize, 0);
  StoreBe32(out.data() + kSbCrcOffset, CrcWithHole(out, kSbCrcOffset));
  return out;
}

Result<Superblock> DecodeSuperblockCopy(std::span<const uint8_t> copy) {
  if (copy.size() < kSuperblockCopySize) {
    return Error(Errc::kCorrupt, "superblock truncated: {} of {} bytes", copy.size(),
                 kSuperblockCopySize);
  }
  copy = copy.subspan(0, kSuperblockCopySize);
  ByteReader r(copy);
  uint32_t magic = r.U32();
  if (magic != kSuperblockMagic) {
    return Error(Errc::kCorrupt,
                 "superblock: bad magic 0x{:08X} (expected 0x{:08X}, no bsr "
                 "meta data here)",
                 magic, kSuperblockMagic);
  }
  uint16_t version = r.U16();
  if (version != kFormatVersion) {
    return Error(Errc::kCorrupt, "superblock: unsupported format version {} (this build reads {})",
                 version, kFormatVersion);
  }
  uint16_t size = r.U16();
  uint32_t crc = r.U32();
  uint32_t want = CrcWithHole(copy, kSbCrcOffset);
  if (crc != want) {
    return Error(Errc::kCorrupt, "superblock: crc32c mismatch (stored 0x{:08X}, computed 0x{:08X})",
                 crc, want);
  }
  if (size != kSuperblockCopySize) {
    return Error(Errc::kCorrupt, "superblock: copy size {} (expected {})", size,
                 kSuperblockCopySize);
  }
  r.U32();
  Superblock sb;
  sb.seq = r.U64();
  sb.flags = r.U32();
  sb.node_id = static_cast<int32_t>(r.U32());
  sb.max_peers = r.U32();
  uint8_t kind = r.U8();
  r.Skip(3);
  sb.placement.index = r.U32();
  sb.peer_max_bio_size = r.U32();
  sb.md_end = r.U64();
  sb.md_size = r.U64();
  sb.data_size = r.U64();
  sb.bm_blocks_per_peer = r.U32();
  sb.al.stripes = r.U32();
  sb.al.stripe_size_4k = r.U32();
  sb.al.extents = r.U32();
  sb.current_uuid = r.U64();
  for (auto& h : sb.history) h = r.U64();
  for (PeerSlot& p : sb.peers) {
    p.node_id = static_cast<int32_t>(r.U32());
    p.flags = r.U32();
    p.bitmap_uuid = r.U64();
    r.U64();
  }
  if (!r.ok()) return Error(Errc::kCorrupt, "superblock: truncated fields");

  auto bad = [](std::string_view what) { return Error(Errc::kCorrupt, "superblock: {}", what); };
  if (sb.flags & ~kSbFlagMask) return bad(fmt::format("unknown flags 0x{:08X}", sb.flags));
  if (sb.max_peers < 1 || sb.max_peers > kMaxPeers) {
    return bad(fmt::format("max-peers {} out of range 1..{}", sb.max_peers, kMaxPeers));
  }
  if (sb.node_id < -1 || sb.node_id > kMaxNodeId) {
    return bad(fmt::format("node-id {} out of range", sb.node_id));
  }
  if (kind < 1 || kind > 3) return bad(fmt::format("unknown placement kind {}", kind));
  sb.placement.kind = static_cast<PlacementKind>(kind);
  if (sb.placement.kind != PlacementKind::kIndexed && sb.placement.index != 0) {
    return bad(fmt::format("index {} set on non-indexed placement", sb.placement.index));
  }
  Status al = sb.al.Validate();
  if (!al.ok()) return bad(al.message());
  if (sb.md_end % kBlockSize || sb.md_size % kBlockSize || sb.md_size > sb.md_end) {
    return bad(fmt::format("meta data area end {} size {} not 4 KiB aligned or inconsistent",
                           sb.md_end, sb.md_size));
  }
  unsigned __int128 need = (unsigned __int128)(1 + sb.al.slots()) * kBlockSize +
                           (unsigned __int128)sb.bm_blocks_per_peer * sb.max_peers * kBlockSize;
  if (need != sb.md_size) {
    return bad(
        fmt::format("meta data size {} does not match its parts (AL {} KiB, {} bitmap "
                    "blocks x {} peers)",
                    sb.md_size, sb.al.bytes() / 1024, sb.bm_blocks_per_peer, sb.max_peers));
  }
  if (sb.data_size % kBlockSize)
    return bad(fmt::format("data size {} not 4 KiB aligned", sb.data_size));
  if (sb.data_bits() > uint64_t{sb.bm_blocks_per_peer} * kBitsPerBitmapBlock) {
    return bad(fmt::format("data size {} exceeds what the bitmaps describe", sb.data_size));
  }
  if (sb.placement.kind == PlacementKind::kInternal && sb.data_size != sb.md_end - sb.md_size) {
    return bad(fmt::format("internal data size {} != meta data start {}", sb.data_size,
                           sb.md_end - sb.md_size));
  }
  uint32_t seen = 0;
  for (uint32_t i = 0; i < kMaxPeers; ++i) {
    const PeerSlot& p = sb.peers[i];
    if (p.node_id == -1) {
      if (p.flags || p.bitmap_uuid) return bad(fmt::format("unused peer slot {} not empty", i));
      continue;
    }
    if (i >= sb.max_peers)
      return bad(fmt::format("peer slot {} beyond max-peers {}", i, sb.max_peers));
    if (p.node_id < 0 || p.node_id > kMaxNodeId) {
      return bad(fmt::format("peer slot {}: node-id {} out of range", i, p.node_id));
    }
    if (p.node_id == sb.node_id) {
      return bad(fmt::format("peer slot {}: node-id {} is the local node", i, p.node_id));
    }
    if (seen & (1u << p.node_id)) {
      return bad(fmt::format("peer slot {}: node-id {} used twice", i, p.node_id));
    }
    seen |= 1u << p.node_id;
    if (p.flags & ~kPeerFlagMask) {
      return bad(fmt::format("peer slot {}: unknown flags 0x{:08X}", i, p.flags));
    }
  }
  return sb;
}

Result<SuperblockPick> DecodeSuperblockBlock(std::span<const uint8_t> block) {
  if (block.size() < kBlockSize) {
    return Error(Errc::kCorrupt, "superblock block truncated: {} bytes", block.size());
  }
  auto a = DecodeSuperblockCopy(block.subspan(0, kSuperblockCopySize));
  auto b = DecodeSuperblockCopy(block.subspan(kSuperblockCopySize, kSuperblockCopySize));
  if (!a.ok() && !b.ok()) {
    if (a.status().message().find("bad magic") != std::string::npos &&
        b.status().message().find("bad magic") != std::string::npos) {
      return Error(Errc::kNotFound, "no bsr meta data found ({})", a.status().message());
    }
    return Error(Errc::kCorrupt, "both superblock copies invalid: copy 0: {}; copy 1: {}",
                 a.status().message(), b.status().message());
  }
  SuperblockPick pick;
  if (a.ok() && (!b.ok() || a->seq >= b->seq)) {
    pick.sb = *a;
    pick.copy = 0;
    if (!b.ok()) pick.note = fmt::format("superblock copy 1 ignored: {}", b.status().message());
  } else {
    pick.sb = *b;
    pick.copy = 1;
    if (!a.ok()) pick.note = fmt::format("superblock copy 0 ignored: {}", a.status().message());
  }
  return pick;
}

std::vector<uint8_t> EncodeAlTransaction(const AlTransaction& tr) {
  std::vector<uint8_t> out(kBlockSize, 0);
  uint8_t* p = out.data();
  StoreBe32(p, kAlMagic);
  StoreBe16(p + 4, kFormatVersion);
  StoreBe16(p + 6, tr.type);
  StoreBe64(p + 16, tr.tr_number);
  StoreBe16(p + 24, static_cast<uint16_t>(tr.updates.size()));
  StoreBe16(p + 26, static_cast<uint16_t>(tr.context.size()));
  StoreBe32(p + 28, tr.context_start);
  for (size_t i = 0; i < tr.updates.size() && i < kAlMaxUpdates; ++i) {
    StoreBe16(p + kAlUpdatesOffset + 2 * i, tr.updates[i].slot);
    StoreBe32(p + kAlUpdatesOffset + 2 * kAlMaxUpdates + 4 * i, tr.updates[i].extent);
  }
  for (size_t i = 0; i < tr.context.size() && i < kAlContextPerTransaction; ++i) {
    StoreBe32(p + kAlContextOffset + 4 * i, tr.context[i]);
  }
  StoreBe32(p + kAlCrcOffset, CrcWithHole(out, kAlCrcOffset));
  return out;
}

Result<AlTransaction> DecodeAlTransaction(std::span<const uint8_t> block, uint32_t al_extents) {
  if (block.size() < kBlockSize) {
    return Error(Errc::kCorrupt, "AL transaction truncated: {} bytes", block.size());
  }
  const uint8_t* p = block.data();
  uint32_t magic = LoadBe32(p);
  if (magic != kAlMagic) {
    return Error(Errc::kCorrupt, "AL transaction: bad magic 0x{:08X} (expected 0x{:08X})", magic,
                 kAlMagic);
  }
  uint16_t version = LoadBe16(p + 4);
  if (version != kFormatVersion) {
    return Error(Errc::kCorrupt, "AL transaction: unsupported format version {}", version);
  }
  uint32_t crc = LoadBe32(p + kAlCrcOffset);
  uint32_t want = CrcWithHole(block.subspan(0, kBlockSize), kAlCrcOffset);
  if (crc != want) {
    return Error(Errc::kCorrupt,
                 "AL transaction: crc32c mismatch (stored 0x{:08X}, computed 0x{:08X})", crc, want);
  }
  AlTransaction tr;
  tr.type = LoadBe16(p + 6);
  if (tr.type != AlTransaction::kUpdate && tr.type != AlTransaction::kInit) {
    return Error(Errc::kCorrupt, "AL transaction: unknown type {}", tr.type);
  }
  tr.tr_number = LoadBe64(p + 16);
  uint16_t n_updates = LoadBe16(p + 24);
  uint16_t n_context = LoadBe16(p + 26);
  tr.context_start = LoadBe32(p + 28);
  if (n_updates > kAlMaxUpdates || n_context > kAlContextPerTransaction) {
    return Error(Errc::kCorrupt, "AL transaction {}: {} updates / {} context entries too many",
                 tr.tr_number, n_updates, n_context);
  }
  if (uint64_t{tr.context_start} + n_context > al_extents) {
    return Error(Errc::kCorrupt, "AL transaction {}: context slots {}+{} beyond al-extents {}",
                 tr.tr_number, tr.context_start, n_context, al_extents);
  }
  for (uint16_t i = 0; i < n_updates; ++i) {
    AlTransaction::Update u{LoadBe16(p + kAlUpdatesOffset + 2 * i),
                            LoadBe32(p + kAlUpdatesOffset + 2 * kAlMaxUpdates + 4 * i)};
    if (u.slot >= al_extents) {
      return Error(Errc::kCorrupt, "AL transaction {}: update slot {} beyond al-extents {}",
                   tr.tr_number, u.slot, al_extents);
    }
    tr.updates.push_back(u);
  }
  tr.context.resize(n_context);
  for (uint16_t i = 0; i < n_context; ++i) tr.context[i] = LoadBe32(p + kAlContextOffset + 4 * i);
  return tr;
}

std::vector<uint8_t> EncodeBitmapBlock(int slot, uint32_t index, std::span<const uint64_t> words) {
  std::vector<uint8_t> out(kBlockSize, 0);
  uint8_t* p = out.data();
  StoreBe32(p, kBitmapMagic);
  StoreBe16(p + 4, kFormatVersion);
  StoreBe16(p + 6, static_cast<uint16_t>(slot));
  StoreBe32(p + 12, index);
  for (size_t i = 0; i < words.size() && i < kBitmapWordsPerBlock; ++i) {
    StoreBe64(p + kBitmapHeaderSize + 8 * i, words[i]);
  }
  StoreBe32(p + kBmCrcOffset, CrcWithHole(out, kBmCrcOffset));
  return out;
}

Status DecodeBitmapBlock(std::span<const uint8_t> block, int slot, uint32_t index,
                         std::span<uint64_t> words_out) {
  auto where = [&] { return fmt::format("bitmap block {} of peer slot {}", index, slot); };
  if (block.size() < kBlockSize) {
    return Error(Errc::kCorrupt, "{}: truncated ({} bytes)", where(), block.size());
  }
  const uint8_t* p = block.data();
  uint32_t magic = LoadBe32(p);
  if (magic != kBitmapMagic) {
    return Error(Errc::kCorrupt, "{}: bad magic 0x{:08X} (expected 0x{:08X})", where(), magic,
                 kBitmapMagic);
  }
  uint16_t version = LoadBe16(p + 4);
  if (version != kFormatVersion) {
    return Error(Errc::kCorrupt, "{}: unsupported format version {}", where(), version);
  }
  uint32_t crc = LoadBe32(p + kBmCrcOffset);
  uint32_t want = CrcWithHole(block.subspan(0, kBlockSize), kBmCrcOffset);
  if (crc != want) {
    return Error(Errc::kCorrupt, "{}: crc32c mismatch (stored 0x{:08X}, computed 0x{:08X})",
                 where(), crc, want);
  }
  uint16_t s = LoadBe16(p + 6);
  uint32_t i = LoadBe32(p + 12);
  if (s != slot || i != index) {
    return Error(Errc::kCorrupt, "{}: header says slot {} block {} (misplaced write)", where(), s,
                 i);
  }
  for (size_t k = 0; k < words_out.size() && k < kBitmapWordsPerBlock; ++k) {
    words_out[k] = LoadBe64(p + kBitmapHeaderSize + 8 * k);
  }
  return Status::Ok();
}

namespace {
// drbdmeta's legend under show-gi's line (bsrmeta's and a running bsrd's show-gi).
constexpr const char* kShowGiHeader =
    "\n"
    "       +--<  Current data generation UUID  >-\n"
    "       |               +--<  Bitmap's base data generation UUID  >-\n"
    "       |               |                 +--<  younger history UUID  >-\n"
    "       |               |                 |         +-<  older history  >-\n"
    "       V               V                 V         V\n";
constexpr const char* kShowGiLegend =
    "                                                                    ^ ^ ^ ^ ^ ^ ^ ^ ^ ^ "
    "^ ^\n"
    "                                      -<  Data consistency flag  >--+ | | | | | | | | | "
    "| |\n"
    "                             -<  Data was/is currently up-to-date  >--+ | | | | | | | | "
    "| |\n"
    "                                  -<  Node was/is currently primary  >--+ | | | | | | | "
    "| |\n"
    " -<  This node was a crashed primary, and has not seen its peer since  >--+ | | | | | | "
    "| |\n"
    "             -<  The activity-log was applied, the disk can be attached  >--+ | | | | | "
    "| |\n"
    "        -<  The activity-log was disabled, peer is completely out of sync  >--+ | | | | "
    "| |\n"
    "                              -<  This node was primary when it lost quorum  >--+ | | | "
    "| |\n"
    "                                          -<  Node was/is currently connected  >--+ | | "
    "| |\n"
    "                              -<  The peer's disk was out-dated or inconsistent  >--+ | "
    "| |\n"
    "                                 -<   A fence policy other the dont-care was used  >--+ "
    "| |\n"
    "                  -<  Node was in the progress of marking all blocks as out of sync  "
    ">--+ |\n"
    "                     -<  At least once we saw this node with a backing device attached "
    ">--+\n"
    "\n";
}  // namespace

std::string GiLine(const Superblock& sb, int slot) {
  uint64_t bm_uuid = slot >= 0 ? sb.peers[slot].bitmap_uuid : 0;
  uint32_t pf = slot >= 0 ? sb.peers[slot].flags : 0;
  auto b = [](uint32_t f, uint32_t bit) { return (f & bit) ? 1 : 0; };
  return fmt::format(
      "{}:{}:{}:{}:{}:{}:{}:{}:{}:{}:{}:{}:{}:{}:{}:{}", UuidString(sb.current_uuid),
      UuidString(bm_uuid), UuidString(sb.history[0]), UuidString(sb.history[1]),
      b(sb.flags, kFlagConsistent), b(sb.flags, kFlagWasUpToDate), b(sb.flags, kFlagPrimaryInd),
      b(sb.flags, kFlagCrashedPrimary), b(sb.flags, kFlagAlClean), b(sb.flags, kFlagAlDisabled),
      b(sb.flags, kFlagPrimaryLostQuorum), b(pf, kPeerConnected), b(pf, kPeerOutdated),
      b(pf, kPeerFencing), b(pf, kPeerFullSync), b(pf, kPeerConnectedOnce));
}

std::string GiText(const Superblock& sb, int slot) {
  return std::string(kShowGiHeader) + GiLine(sb, slot) + "\n" + kShowGiLegend;
}

}  // namespace bsr::meta
