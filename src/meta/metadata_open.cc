// Metadata creation, loading and crash recovery (the attach path).
#include <algorithm>

#include "meta/metadata.h"

namespace bsr::meta {
namespace {

constexpr uint32_t kReadChunkBlocks = 256;

bool IsExternal(const Placement& p) {
  return p.kind != PlacementKind::kInternal;
}

}  // namespace

std::string OpenReport::Summary() const {
  std::string s = was_clean ? "meta data was clean" : "meta data was not clean (crash)";
  if (al_replay_pending) {
    s += fmt::format("; activity log not applied ({} extents pending, run apply-al)",
                     al_replayed_extents);
  } else if (!was_clean || full_sync_after_crash) {
    if (full_sync_after_crash) {
      s += "; whole device marked out of sync (activity log disabled or unreadable)";
    } else {
      s += fmt::format("; activity log replayed: {} extents from {} transactions",
                       al_replayed_extents, al_transactions);
    }
    s += fmt::format(", {} bits newly marked out of sync", bits_marked);
  }
  if (crashed_primary) s += "; was a crashed primary";
  if (grown_bits) s += fmt::format("; data grew: {} new blocks marked out of sync", grown_bits);
  for (const auto& n : notes) s += "; " + n;
  return s;
}

Status Metadata::Create(MetaIo& io, const CreateOptions& o) {
  if (o.node_id < -1 || o.node_id > kMaxNodeId) {
    return Error(Errc::kInvalidArgument, "node-id {} out of range 0..{}", o.node_id, kMaxNodeId);
  }
  auto layout = ComputeLayout(o.placement, io.Size(), o.max_peers, o.al);
  if (!layout.ok()) return layout.status().WithContext(io.Name());
  const Layout& l = *layout;
  Superblock sb;
  sb.flags = kFlagAlClean;
  sb.node_id = o.node_id;
  sb.max_peers = o.max_peers;
  sb.placement = o.placement;
  sb.peer_max_bio_size = o.peer_max_bio_size;
  sb.md_end = l.md_end;
  sb.md_size = l.md_size();
  sb.bm_blocks_per_peer = l.bm_blocks_per_peer;
  sb.al = o.al;
  sb.current_uuid = kUuidJustCreated;
  if (IsExternal(o.placement)) {
    sb.data_size = std::min(o.data_size / kBlockSize * kBlockSize, l.capacity());
  } else {
    sb.data_size = l.md_start;
  }
  return WriteFresh(io, sb, {});
}

Status Metadata::WriteFresh(MetaIo& io, Superblock sb, const std::vector<Bitmap>& bitmaps) {
  sb.seq = 1;
  sb.flags |= kFlagAlClean;
  auto check = DecodeSuperblockCopy(EncodeSuperblockCopy(sb));
  if (!check.ok()) return check.status().WithContext("refusing to write meta data");
  Layout l = sb.layout();
  auto expect = MdEnd(sb.placement, io.Size());
  if (!expect.ok()) return expect.status().WithContext(io.Name());
  if (*expect != sb.md_end) {
    return Error(Errc::kInvalidArgument, "{}: meta data area ends at {} but belongs at {}",
                 io.Name(), sb.md_end, *expect);
  }
  // Bitmaps of assigned slots.
  for (uint32_t s = 0; s < sb.max_peers; ++s) {
    if (sb.peers[s].node_id == -1) continue;
    Bitmap empty(sb.data_bits());
    const Bitmap& bm = s < bitmaps.size() ? bitmaps[s] : empty;
    if (bm.bits() != sb.data_bits()) {
      return Error(Errc::kInvalidArgument, "bitmap of peer slot {} has {} bits, data has {}", s,
                   bm.bits(), sb.data_bits());
    }
    for (uint32_t b = 0; b < bm.blocks(); ++b) {
      auto enc = EncodeBitmapBlock(static_cast<int>(s), b, bm.BlockWords(b));
      BSR_RETURN_IF_ERROR(io.Write(l.BitmapBlockOffset(static_cast<int>(s), b), enc));
    }
  }
  // Activity log ring, every slot a valid init transaction.
  ActivityLog al(sb.al.extents);
  uint32_t n = sb.al.slots();
  std::vector<uint8_t> ring(sb.al.bytes());
  for (uint32_t i = 0; i < n; ++i) {
    AlTransaction tr = al.BuildInit(i + 1);
    auto enc = EncodeAlTransaction(tr);
    std::copy(enc.begin(), enc.end(),
              ring.begin() + static_cast<long>(sb.al.SlotBlock((i + 1) % n)) * kBlockSize);
  }
  BSR_RETURN_IF_ERROR(io.Write(l.al_offset(), ring));
  BSR_RETURN_IF_ERROR(io.Flush());
  std::vector<uint8_t> block = EncodeSuperblockCopy(sb);
  sb.seq = 2;
  auto second = EncodeSuperblockCopy(sb);
  block.insert(block.end(), second.begin(), second.end());
  BSR_RETURN_IF_ERROR(io.Write(l.sb_offset(), block));
  return io.Flush();
}

Status Metadata::ReadBitmaps(MetaIo& io, const Superblock& sb, bool tolerate_bad,
                             std::vector<Bitmap>* out, OpenReport* report) {
  Layout l = sb.layout();
  out->assign(kMaxPeers, Bitmap());
  std::vector<uint8_t> buf;
  std::vector<uint64_t> words(kBitmapWordsPerBlock);
  for (uint32_t s = 0; s < sb.max_peers; ++s) {
    if (sb.peers[s].node_id == -1) continue;
    Bitmap bm(sb.data_bits());
    for (uint32_t b0 = 0; b0 < bm.blocks(); b0 += kReadChunkBlocks) {
      uint32_t n = std::min(kReadChunkBlocks, bm.blocks() - b0);
      buf.resize(size_t{n} * kBlockSize);
      uint64_t off = l.BitmapBlockOffset(static_cast<int>(s), b0);
      BSR_RETURN_IF_ERROR(io.Read(off, buf));
      for (uint32_t i = 0; i < n; ++i) {
        std::span<const uint8_t> blk(buf.data() + size_t{i} * kBlockSize, kBlockSize);
        Status st = DecodeBitmapBlock(blk, static_cast<int>(s), b0 + i, words);
        if (!st.ok()) {
          if (!tolerate_bad) {
            return Status(st.code(), fmt::format("{} at offset {}: {}", io.Name(),
                                                 off + uint64_t{i} * kBlockSize, st.message()));
          }
          // Unclean shutdown: a torn write-back. Resync the whole block's range.
          report->notes.push_back(
              fmt::format("{} (torn write?): its range marked out of sync", st.message()));
          bm.Set(uint64_t{b0 + i} * kBitsPerBitmapBlock, kBitsPerBitmapBlock);
          continue;
        }
        bm.LoadBlock(b0 + i, words);
      }
    }
    (*out)[s] = std::move(bm);
  }
  return Status::Ok();
}

Result<std::unique_ptr<Metadata>> Metadata::Open(std::unique_ptr<MetaIo> io, const OpenOptions& o,
                                                 OpenReport* report) {
  OpenReport local;
  if (report == nullptr) report = &local;
  *report = OpenReport();
  const std::string name = io->Name();
  auto md_end = MdEnd(o.placement, io->Size());
  if (!md_end.ok()) return md_end.status().WithContext(name);
  if (*md_end < 2 * kBlockSize) {
    return Error(Errc::kNotFound, "{}: device of {} bytes too small to hold bsr meta data", name,
                 io->Size());
  }
  uint64_t sb_off = *md_end - kBlockSize;
  std::vector<uint8_t> block(kBlockSize);
  BSR_RETURN_IF_ERROR(io->Read(sb_off, block));
  auto pick = DecodeSuperblockBlock(block);
  if (!pick.ok()) {
    std::string hint = pick.status().code() == Errc::kNotFound
                           ? " (not created yet? if the device was resized, run check-resize)"
                           : "";
    return Status(pick.status().code(),
                  fmt::format("{}: {} (superblock at offset {}, meta data {}){}", name,
                              pick.status().message(), sb_off, o.placement.ToString(), hint));
  }
  Superblock sb = pick->sb;
  if (!pick->note.empty()) report->notes.push_back(pick->note);
  if (!(sb.placement == o.placement)) {
    return Error(Errc::kInvalidArgument, "{}: meta data was created as {}, not {}", name,
                 sb.placement.ToString(), o.placement.ToString());
  }
  if (sb.md_end != *md_end) {
    return Error(Errc::kCorrupt, "{}: superblock records meta data end {} but was found at {}",
                 name, sb.md_end, *md_end);
  }
  // Attach options are checked before anything is written.
  AlGeometry new_al = sb.al;
  if (o.al_extents != 0 && !o.read_only) {
    new_al.extents = o.al_extents;
    BSR_RETURN_IF_ERROR(new_al.Validate().WithContext(name));
  }
  const bool clean = (sb.flags & kFlagAlClean) != 0;
  report->was_clean = clean;
  Layout l = sb.layout();

  // Activity log ring. Slot numbers are bounded by the format maximum, not the recorded
  // al-extents, because al-extents may have changed just before a crash.
  uint32_t n = sb.al.slots();
  std::vector<uint8_t> ring(sb.al.bytes());
  BSR_RETURN_IF_ERROR(io->Read(l.al_offset(), ring));
  std::vector<AlTransaction> trs;
  std::vector<std::pair<uint32_t, Status>> bad;
  uint64_t max_tr = 0;
  for (uint32_t b = 0; b < n; ++b) {
    std::span<const uint8_t> blk(ring.data() + size_t{b} * kBlockSize, kBlockSize);
    auto tr = DecodeAlTransaction(blk, kAlMaxExtents);
    if (!tr.ok()) {
      bad.emplace_back(b, tr.status());
      continue;
    }
    if (sb.al.SlotBlock(static_cast<uint32_t>(tr->tr_number % n)) != b) {
      bad.emplace_back(b, Error(Errc::kCorrupt, "AL transaction {} stored in the wrong ring slot",
                                tr->tr_number));
      continue;
    }
    max_tr = std::max(max_tr, tr->tr_number);
    trs.push_back(std::move(*tr));
  }
  auto al_error = [&](uint32_t b, const Status& st) {
    return Status(st.code(), fmt::format("{}: activity log block {} at offset {}: {}", name, b,
                                         l.al_offset() + uint64_t{b} * kBlockSize, st.message()));
  };
  if (trs.empty() && !(o.salvage && !o.read_only)) {
    return Status(Errc::kCorrupt,
                  fmt::format("{}: activity log has no valid transaction ({})", name,
                              al_error(bad[0].first, bad[0].second).message()));
  }
  const bool salvage = o.salvage && !o.read_only;
  bool salvaged = false;
  if (salvage && !bad.empty()) {
    for (const auto& [b, st] : bad) {
      report->notes.push_back(al_error(b, st).message() + " (salvaged: full resync)");
    }
    salvaged = true;
    bad.clear();
  }
  uint32_t torn_block = sb.al.SlotBlock(static_cast<uint32_t>((max_tr + 1) % n));
  for (const auto& [b, st] : bad) {
    // After a crash the slot after the newest transaction may hold a torn write.
    if (!clean && b == torn_block && bad.size() == 1) {
      report->notes.push_back(al_error(b, st).message() + " (torn last write, ignored)");
      continue;
    }
    return al_error(b, st);
  }
  report->al_transactions = static_cast<uint32_t>(trs.size());
  std::set<uint32_t> replay = ReplayExtents(trs);

  // Bitmaps.
  std::vector<Bitmap> bitmaps;
  BSR_RETURN_IF_ERROR(ReadBitmaps(*io, sb, !clean || salvage, &bitmaps, report));

  auto m = std::unique_ptr<Metadata>(new Metadata());
  m->io_ = std::move(io);
  m->read_only_ = o.read_only;
  m->md_flushes_ = o.md_flushes;
  m->al_updates_ = o.al_updates;
  m->data_flush_ = o.data_flush;
  m->current_copy_ = pick->copy;
  m->disk_flags_ = sb.flags;
  m->next_tr_ = max_tr + 1;
  if (o.read_only) {
    if (!clean) {
      report->al_replay_pending = true;
      report->al_replayed_extents = static_cast<uint32_t>(replay.size());
    }
    m->sb_ = sb;
    m->layout_ = sb.layout();
    m->bitmaps_ = std::move(bitmaps);
    m->al_ = ActivityLog(sb.al.extents);
    return m;
  }

  // External data device: its size decides the data size, bounded by the bitmaps.
  if (IsExternal(sb.placement) && o.backing_size != 0) {
    uint64_t backing = o.backing_size / kBlockSize * kBlockSize;
    uint64_t usable = std::min(backing, l.capacity());
    if (backing > usable) {
      report->notes.push_back(fmt::format(
          "data device of {} bytes is larger than the meta data describes; usable size {}",
          o.backing_size, usable));
    }
    if (usable < sb.data_size) {
      return Error(Errc::kState,
                   "{}: data device shrank from {} to {} bytes; refusing to attach (data beyond "
                   "would be lost)",
                   name, sb.data_size, usable);
    }
    if (usable > sb.data_size) {
      uint64_t old_bits = sb.data_bits();
      sb.data_size = usable;
      for (uint32_t s = 0; s < sb.max_peers; ++s) {
        if (sb.peers[s].node_id == -1) continue;
        Bitmap grown(sb.data_bits());
        grown.Merge(bitmaps[s].words());
        report->grown_bits += grown.Set(old_bits, sb.data_bits() - old_bits);
        for (uint32_t b = 0; b < grown.blocks(); ++b) grown.MarkDirty(b);
        bitmaps[s] = std::move(grown);
      }
    }
  }
  m->sb_ = sb;
  m->layout_ = sb.layout();
  m->bitmaps_ = std::move(bitmaps);

  if (!clean || salvaged) {
    const bool full = salvaged || (sb.flags & kFlagAlDisabled);
    for (uint32_t s = 0; s < sb.max_peers; ++s) {
      if (sb.peers[s].node_id == -1) continue;
      Bitmap& bm = m->bitmaps_[s];
      if (full) {
        report->bits_marked += bm.Set(0, bm.bits());
      } else {
        for (uint32_t e : replay) {
          report->bits_marked += bm.Set(uint64_t{e} * kBlocksPerExtent, kBlocksPerExtent);
        }
      }
    }
    report->full_sync_after_crash = full;
    report->al_replayed_extents = static_cast<uint32_t>(replay.size());
    if (!clean && (sb.flags & kFlagPrimaryInd)) {
      m->sb_.flags |= kFlagCrashedPrimary;
      report->crashed_primary = true;
    }
  }
  // Order: marks reach the bitmap before the AL that justified them is overwritten.
  BSR_RETURN_IF_ERROR(m->WriteDirtyBitmap());
  m->sb_.al.extents = new_al.extents;
  m->layout_.al = new_al;
  m->al_ = ActivityLog(m->sb_.al.extents);
  BSR_RETURN_IF_ERROR(m->InitAlRing());
  m->sb_.flags &= ~kFlagAlClean;
  if (o.al_updates) {
    m->sb_.flags &= ~kFlagAlDisabled;
  } else {
    m->sb_.flags |= kFlagAlDisabled;
  }
  BSR_RETURN_IF_ERROR(m->WriteSuperblock());
  return m;
}

Result<std::unique_ptr<Metadata>> Metadata::OpenPath(const std::string& path,
                                                     const OpenOptions& options,
                                                     OpenReport* report) {
  FileIoOptions fo;
  fo.read_only = options.read_only;
  BSR_ASSIGN_OR_RETURN(std::unique_ptr<FileIo> io, FileIo::Open(path, fo));
  return Open(std::unique_ptr<MetaIo>(std::move(io)), options, report);
}

Status Metadata::InitAlRing() {
  // One transaction per write, each flushed: at most one ring block can be torn by a
  // crash, and it is the one after the newest valid transaction (what Open tolerates).
  uint32_t n = sb_.al.slots();
  for (uint32_t i = 0; i < n; ++i) {
    BSR_RETURN_IF_ERROR(WriteAlTransaction(al_.BuildInit(next_tr_++)));
  }
  return Status::Ok();
}

}  // namespace bsr::meta
