// Metadata operations used while attached: bitmaps, activity log, UUIDs, flags.
#include "meta/metadata.h"

#include <algorithm>

namespace bsr::meta {

Status Metadata::Fail(Status s) {
  if (failed_.ok()) failed_ = s;
  return s;
}

Status Metadata::CheckWritable() const {
  if (closed_) return Error(Errc::kState, "{}: meta data already closed", io_->Name());
  if (read_only_) return Error(Errc::kState, "{}: meta data opened read-only", io_->Name());
  if (!failed_.ok()) {
    return Status(failed_.code(),
                  fmt::format("{}: meta data failed earlier: {}", io_->Name(), failed_.message()));
  }
  return Status::Ok();
}

Status Metadata::CheckSlot(int slot) const {
  if (slot < 0 || slot >= static_cast<int>(sb_.max_peers) || sb_.peers[slot].node_id == -1) {
    return Error(Errc::kInvalidArgument, "peer slot {} is not assigned (max-peers {})", slot,
                 sb_.max_peers);
  }
  return Status::Ok();
}

Status Metadata::Flush() {
  if (!md_flushes_) return Status::Ok();
  Status st = io_->Flush();
  return st.ok() ? st : Fail(st);
}

Status Metadata::WriteSuperblock() {
  Superblock next = sb_;
  next.seq = sb_.seq + 1;
  int copy = 1 - current_copy_;
  auto enc = EncodeSuperblockCopy(next);
  Status st = io_->Write(layout_.sb_offset() + uint64_t(copy) * kSuperblockCopySize, enc);
  if (!st.ok()) return Fail(st);
  BSR_RETURN_IF_ERROR(Flush());
  sb_.seq = next.seq;
  current_copy_ = copy;
  disk_flags_ = sb_.flags;
  return Status::Ok();
}

Status Metadata::WriteAlTransaction(const AlTransaction& tr) {
  uint32_t b = sb_.al.SlotBlock(static_cast<uint32_t>(tr.tr_number % sb_.al.slots()));
  Status st = io_->Write(layout_.al_offset() + uint64_t{b} * kBlockSize, EncodeAlTransaction(tr));
  if (!st.ok()) return Fail(st);
  ++al_writes_;
  return Flush();
}

Status Metadata::WriteBitmapBlock(int slot, uint32_t block) {
  Bitmap& bm = bitmaps_[slot];
  auto enc = EncodeBitmapBlock(slot, block, bm.BlockWords(block));
  Status st = io_->Write(layout_.BitmapBlockOffset(slot, block), enc);
  if (!st.ok()) return Fail(st);
  bm.MarkClean(block);
  return Status::Ok();
}

Status Metadata::WriteDirtyRange(uint64_t first_bit, uint64_t last_bit) {
  if (data_bits() == 0) return Status::Ok();
  last_bit = std::min(last_bit, data_bits() - 1);
  if (first_bit > last_bit) return Status::Ok();
  bool wrote = false;
  for (uint32_t s = 0; s < sb_.max_peers; ++s) {
    if (sb_.peers[s].node_id == -1) continue;
    for (uint32_t b = Bitmap::BlockOf(first_bit); b <= Bitmap::BlockOf(last_bit); ++b) {
      if (!bitmaps_[s].dirty(b)) continue;
      BSR_RETURN_IF_ERROR(WriteBitmapBlock(static_cast<int>(s), b));
      wrote = true;
    }
  }
  return wrote ? Flush() : Status::Ok();
}

Status Metadata::WriteDirtyBitmap() {
  BSR_RETURN_IF_ERROR(CheckWritable());
  if (data_bits() == 0) return Status::Ok();
  return WriteDirtyRange(0, data_bits() - 1);
}

Status Metadata::Close() {
  if (closed_) return Status::Ok();
  if (read_only_) {
    closed_ = true;
    return Status::Ok();
  }
  BSR_RETURN_IF_ERROR(CheckWritable());
  if (al_.in_use() != 0) {
    return Error(Errc::kBusy, "{}: {} extents still have I/O in flight", io_->Name(), al_.in_use());
  }
  BSR_RETURN_IF_ERROR(WriteDirtyBitmap());
  sb_.flags |= kFlagAlClean;
  BSR_RETURN_IF_ERROR(WriteSuperblock());
  closed_ = true;
  return Status::Ok();
}

int Metadata::FindPeerSlot(int32_t node_id) const {
  if (node_id < 0) return -1;
  for (uint32_t s = 0; s < sb_.max_peers; ++s) {
    if (sb_.peers[s].node_id == node_id) return static_cast<int>(s);
  }
  return -1;
}

Result<int> Metadata::AssignPeerSlot(int32_t node_id, bool out_of_sync) {
  BSR_RETURN_IF_ERROR(CheckWritable());
  if (node_id < 0 || node_id > kMaxNodeId) {
    return Error(Errc::kInvalidArgument, "peer node-id {} out of range 0..{}", node_id, kMaxNodeId);
  }
  if (node_id == sb_.node_id) {
    return Error(Errc::kInvalidArgument, "node-id {} is this node's own id", node_id);
  }
  int found = FindPeerSlot(node_id);
  if (found >= 0) return found;
  int slot = -1;
  for (uint32_t s = 0; s < sb_.max_peers && slot < 0; ++s) {
    if (sb_.peers[s].node_id == -1) slot = static_cast<int>(s);
  }
  if (slot < 0) {
    return Error(Errc::kBusy, "no free peer slot for node-id {} (max-peers {} all assigned)",
                 node_id, sb_.max_peers);
  }
  Bitmap bm(data_bits());
  if (out_of_sync) bm.Set(0, bm.bits());
  bitmaps_[slot] = std::move(bm);
  for (uint32_t b = 0; b < bitmaps_[slot].blocks(); ++b) {
    BSR_RETURN_IF_ERROR(WriteBitmapBlock(slot, b));
  }
  BSR_RETURN_IF_ERROR(Flush());
  sb_.peers[slot] = PeerSlot{node_id, out_of_sync ? uint32_t{kPeerFullSync} : 0u, 0};
  BSR_RETURN_IF_ERROR(WriteSuperblock());
  return slot;
}

Status Metadata::ReleasePeerSlot(int32_t node_id) {
  BSR_RETURN_IF_ERROR(CheckWritable());
  int slot = FindPeerSlot(node_id);
  if (slot < 0) return Error(Errc::kNotFound, "no peer slot for node-id {}", node_id);
  sb_.peers[slot] = PeerSlot{};
  bitmaps_[slot] = Bitmap();
  return WriteSuperblock();
}

const Bitmap* Metadata::bitmap(int slot) const {
  return CheckSlot(slot).ok() ? &bitmaps_[slot] : nullptr;
}

Status Metadata::SetBits(int slot, uint64_t first, uint64_t count) {
  BSR_RETURN_IF_ERROR(CheckWritable());
  BSR_RETURN_IF_ERROR(CheckSlot(slot));
  if (first > data_bits() || count > data_bits() - first) {
    return Error(Errc::kInvalidArgument, "bits {}+{} beyond the {} data blocks", first, count,
                 data_bits());
  }
  bitmaps_[slot].Set(first, count);
  return Status::Ok();
}

Status Metadata::ClearBits(int slot, uint64_t first, uint64_t count) {
  BSR_RETURN_IF_ERROR(CheckWritable());
  BSR_RETURN_IF_ERROR(CheckSlot(slot));
  if (first > data_bits() || count > data_bits() - first) {
    return Error(Errc::kInvalidArgument, "bits {}+{} beyond the {} data blocks", first, count,
                 data_bits());
  }
  bitmaps_[slot].Clear(first, count);
  return Status::Ok();
}

Status Metadata::SetOutOfSync(int slot, uint64_t offset, uint64_t length) {
  if (length == 0) return Status::Ok();
  if (offset > data_size() || length > data_size() - offset) {
    return Error(Errc::kInvalidArgument, "range {}+{} beyond data size {}", offset, length,
                 data_size());
  }
  uint64_t first = offset / kBlockSize;
  uint64_t end = (offset + length + kBlockSize - 1) / kBlockSize;
  return SetBits(slot, first, end - first);
}

Status Metadata::SetInSync(int slot, uint64_t offset, uint64_t length) {
  if (offset > data_size() || length > data_size() - offset) {
    return Error(Errc::kInvalidArgument, "range {}+{} beyond data size {}", offset, length,
                 data_size());
  }
  uint64_t first = (offset + kBlockSize - 1) / kBlockSize;
  uint64_t end = (offset + length) / kBlockSize;
  if (end <= first) return Status::Ok();
  return ClearBits(slot, first, end - first);
}

Status Metadata::SetAllBits(int slot) {
  return SetBits(slot, 0, data_bits());
}
Status Metadata::ClearAllBits(int slot) {
  return ClearBits(slot, 0, data_bits());
}

Result<bool> Metadata::TestBit(int slot, uint64_t bit) const {
  BSR_RETURN_IF_ERROR(CheckSlot(slot));
  if (bit >= data_bits()) {
    return Error(Errc::kInvalidArgument, "bit {} beyond the {} data blocks", bit, data_bits());
  }
  return bitmaps_[slot].Test(bit);
}

uint64_t Metadata::OutOfSyncBits(int slot) const {
  return CheckSlot(slot).ok() ? bitmaps_[slot].count() : 0;
}

uint64_t Metadata::FindNextSet(int slot, uint64_t from) const {
  return CheckSlot(slot).ok() ? bitmaps_[slot].FindNextSet(from) : kNoBit;
}

uint64_t Metadata::FindNextClear(int slot, uint64_t from) const {
  return CheckSlot(slot).ok() ? bitmaps_[slot].FindNextClear(from) : kNoBit;
}

Result<uint64_t> Metadata::MergeBits(int slot, std::span<const uint64_t> words) {
  BSR_RETURN_IF_ERROR(CheckWritable());
  BSR_RETURN_IF_ERROR(CheckSlot(slot));
  return bitmaps_[slot].Merge(words);
}

namespace {

Status CheckRange(uint64_t offset, uint64_t length, uint64_t size) {
  if (length == 0 || offset > size || length > size - offset) {
    return Error(Errc::kInvalidArgument, "I/O range {}+{} empty or beyond data size {}", offset,
                 length, size);
  }
  return Status::Ok();
}

uint32_t ExtentOf(uint64_t offset) {
  return static_cast<uint32_t>(offset >> kExtentShift);
}

}  // namespace

Result<bool> Metadata::BeginIo(uint64_t offset, uint64_t length) {
  BSR_RETURN_IF_ERROR(CheckWritable());
  BSR_RETURN_IF_ERROR(CheckRange(offset, length, data_size()));
  if (!al_updates_) return false;
  uint32_t first = ExtentOf(offset);
  uint32_t last = ExtentOf(offset + length - 1);
  BSR_ASSIGN_OR_RETURN(ActivityLog::Plan plan, al_.PlanActivate(first, last));
  if (plan.updates.empty()) {
    al_.Ref(first, last);
    return false;
  }
  // An evicted extent is no longer covered by the AL: its set bits must be on disk first.
  for (uint32_t e : plan.evicted) {
    BSR_RETURN_IF_ERROR(
        WriteDirtyRange(uint64_t{e} * kBlocksPerExtent, (uint64_t{e} + 1) * kBlocksPerExtent - 1));
  }
  if (!plan.evicted.empty() && data_flush_) {
    if (Status s = data_flush_(); !s.ok()) {
      return s.WithContext("flush the data device before the activity log drops an extent");
    }
  }
  al_.Apply(plan);
  for (const AlTransaction& tr : al_.BuildTransactions(plan.updates, next_tr_)) {
    next_tr_ = tr.tr_number + 1;
    BSR_RETURN_IF_ERROR(WriteAlTransaction(tr));
  }
  al_.Ref(first, last);
  return true;
}

bool Metadata::TryBeginIoFast(uint64_t offset, uint64_t length) {
  if (!CheckWritable().ok() || !CheckRange(offset, length, data_size()).ok()) return false;
  if (!al_updates_) return true;
  uint32_t first = ExtentOf(offset);
  uint32_t last = ExtentOf(offset + length - 1);
  for (uint64_t e = first; e <= last; ++e) {
    if (!al_.IsActive(static_cast<uint32_t>(e))) return false;
  }
  al_.Ref(first, last);
  return true;
}

Status Metadata::CompleteIo(uint64_t offset, uint64_t length) {
  BSR_RETURN_IF_ERROR(CheckRange(offset, length, data_size()));
  if (!al_updates_) return Status::Ok();
  return al_.Unref(ExtentOf(offset), ExtentOf(offset + length - 1));
}

namespace {

void PushHistory(Superblock& sb, uint64_t uuid) {
  if (uuid == 0) return;
  for (int i = kHistoryUuids - 1; i > 0; --i) sb.history[i] = sb.history[i - 1];
  sb.history[0] = uuid;
}

}  // namespace

Status Metadata::NewCurrentUuid(uint64_t uuid, std::span<const int> track_slots) {
  BSR_RETURN_IF_ERROR(CheckWritable());
  for (int s : track_slots) BSR_RETURN_IF_ERROR(CheckSlot(s));
  uint64_t old = sb_.current_uuid;
  bool taken = false;
  for (int s : track_slots) {
    if (sb_.peers[s].bitmap_uuid == 0) {
      sb_.peers[s].bitmap_uuid = old;
      taken = true;
    }
  }
  if (!taken) PushHistory(sb_, old);
  sb_.current_uuid = uuid;
  return WriteSuperblock();
}

Status Metadata::SetCurrentUuid(uint64_t uuid) {
  BSR_RETURN_IF_ERROR(CheckWritable());
  if (sb_.current_uuid != uuid) PushHistory(sb_, sb_.current_uuid);
  sb_.current_uuid = uuid;
  return WriteSuperblock();
}

Status Metadata::SetBitmapUuid(int slot, uint64_t uuid) {
  BSR_RETURN_IF_ERROR(CheckWritable());
  BSR_RETURN_IF_ERROR(CheckSlot(slot));
  uint64_t old = sb_.peers[slot].bitmap_uuid;
  if (old != uuid) PushHistory(sb_, old);
  sb_.peers[slot].bitmap_uuid = uuid;
  return WriteSuperblock();
}

Status Metadata::SetFlags(uint32_t set, uint32_t clear) {
  BSR_RETURN_IF_ERROR(CheckWritable());
  if ((set | clear) & ~kSbFlagMask) {
    return Error(Errc::kInvalidArgument, "unknown superblock flags 0x{:08X}", set | clear);
  }
  if ((set | clear) & (kFlagAlClean | kFlagAlDisabled)) {
    return Error(Errc::kInvalidArgument, "al-clean / al-disabled are managed by Open and Close");
  }
  sb_.flags = (sb_.flags & ~clear) | set;
  return WriteSuperblock();
}

Status Metadata::SetPeerFlags(int slot, uint32_t set, uint32_t clear) {
  BSR_RETURN_IF_ERROR(CheckWritable());
  BSR_RETURN_IF_ERROR(CheckSlot(slot));
  if ((set | clear) & ~kPeerFlagMask) {
    return Error(Errc::kInvalidArgument, "unknown peer flags 0x{:08X}", set | clear);
  }
  sb_.peers[slot].flags = (sb_.peers[slot].flags & ~clear) | set;
  return WriteSuperblock();
}

Status Metadata::UpdateSuperblock(const std::function<void(Superblock&)>& edit) {
  BSR_RETURN_IF_ERROR(CheckWritable());
  Superblock next = sb_;
  edit(next);
  bool layout_same = next.seq == sb_.seq && next.placement == sb_.placement &&
                     next.md_end == sb_.md_end && next.md_size == sb_.md_size &&
                     next.data_size == sb_.data_size && next.max_peers == sb_.max_peers &&
                     next.bm_blocks_per_peer == sb_.bm_blocks_per_peer && next.al == sb_.al &&
                     ((next.flags ^ sb_.flags) & (kFlagAlClean | kFlagAlDisabled)) == 0;
  for (int s = 0; s < kMaxPeers && layout_same; ++s) {
    layout_same = next.peers[s].node_id == sb_.peers[s].node_id;
  }
  if (!layout_same) {
    return Error(Errc::kInvalidArgument,
                 "UpdateSuperblock may not change layout, placement, peer node-ids or AL flags");
  }
  auto check = DecodeSuperblockCopy(EncodeSuperblockCopy(next));
  if (!check.ok()) return check.status().WithContext("UpdateSuperblock");
  sb_ = next;
  return WriteSuperblock();
}

}  // namespace bsr::meta
