// Metadata: one device's on-disk metadata, opened for the daemon (attach) or bsrmeta.
// Not thread-safe. The daemon owns one per attached volume and calls it only from that
// device's metadata strand; every mutating call may block on MetaIo (pwrite, fdatasync),
// so that strand must be allowed to block (TryBeginIoFast never does I/O).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "meta/activity_log.h"
#include "meta/bitmap.h"
#include "meta/format.h"
#include "meta/io.h"

namespace bsr::meta {

// DRBD's UUID_JUST_CREATED: the current UUID of freshly created metadata.
inline constexpr uint64_t kUuidJustCreated = 4;

struct CreateOptions {
  Placement placement;
  uint32_t max_peers = 1;
  int32_t node_id = -1;
  AlGeometry al;
  uint32_t peer_max_bio_size = 1 << 20;
  uint64_t data_size = 0;  // external only: backing size if known (else set at attach)
};

struct OpenOptions {
  Placement placement;
  bool read_only = false;     // no recovery, no writes (dump-md, show-gi)
  uint64_t backing_size = 0;  // external only: data device size (0 = keep recorded size)
  uint32_t al_extents = 0;    // 0 = keep the recorded value
  bool al_updates = true;     // `al-updates no`: no AL; a crash then means a full resync
  bool md_flushes = true;     // `md-flushes no`: skip Flush() calls
  // Salvage (bsrmeta apply-al --force): instead of refusing, bad AL blocks make every
  // assigned slot fully out of sync and bad bitmap blocks mark their range. Read-write only.
  bool salvage = false;
  // External metadata only: makes the data device's completed writes stable (fdatasync).
  // Runs before an AL transaction that evicts extents, because an evicted extent is no
  // longer resynced after a crash (DRBD's PREFLUSH); internal metadata shares the file,
  // whose fdatasync already covers the data. Called on the metadata thread.
  std::function<Status()> data_flush = nullptr;
};

// What Open found and did.
struct OpenReport {
  bool was_clean = true;               // al-clean was set (clean detach)
  uint32_t al_transactions = 0;        // valid ring slots read
  uint32_t al_replayed_extents = 0;    // extents marked out of sync from the AL
  bool al_replay_pending = false;      // read-only open of unclean metadata
  bool full_sync_after_crash = false;  // al was disabled when it crashed, or salvaged
  bool crashed_primary = false;
  uint64_t bits_marked = 0;        // bits newly set by recovery, all slots together
  uint64_t grown_bits = 0;         // external data grew: new area marked out of sync
  std::vector<std::string> notes;  // recovered problems (torn superblock copy, ...)
  std::string Summary() const;
};

class Metadata {
 public:
  // Writes new metadata (create-md): superblock copies, initialized AL ring; peer slots
  // unused (their bitmaps are initialized when a slot is assigned).
  static Status Create(MetaIo& io, const CreateOptions& options);
  // Writes complete metadata from a superblock and bitmaps (restore-md).
  static Status WriteFresh(MetaIo& io, Superblock sb, const std::vector<Bitmap>& bitmaps);

  // Validates and loads; unless read_only, recovers after a crash (AL replay -> bits set
  // for every assigned peer slot, written back), re-initializes the AL ring and marks the
  // metadata in use (al-clean cleared). Any invalid block -> kCorrupt naming it.
  static Result<std::unique_ptr<Metadata>> Open(std::unique_ptr<MetaIo> io,
                                                const OpenOptions& options,
                                                OpenReport* report = nullptr);
  // Open through a FileIo on `path` (file or block device; not O_EXCL, so the storage
  // layer may hold the same device).
  static Result<std::unique_ptr<Metadata>> OpenPath(const std::string& path,
                                                    const OpenOptions& options,
                                                    OpenReport* report = nullptr);

  // Clean detach: writes dirty bitmap blocks, flushes, sets al-clean. kBusy while I/O is
  // in flight. The object is unusable afterwards. Destruction without Close does no I/O
  // (what a crash looks like).
  Status Close();

  const Superblock& superblock() const { return sb_; }
  MetaIo& io() { return *io_; }
  bool read_only() const { return read_only_; }
  bool al_clean_on_disk() const { return (disk_flags_ & kFlagAlClean) != 0; }
  uint64_t data_size() const { return sb_.data_size; }
  uint64_t data_bits() const { return sb_.data_bits(); }

  // Peer slots (bitmap slots), found by the peer's node-id.
  int FindPeerSlot(int32_t node_id) const;  // -1 if none
  // Returns the slot of `node_id`, assigning a free one if needed; a new slot's bitmap is
  // written all set (`out_of_sync`, a full sync) or all clear.
  Result<int> AssignPeerSlot(int32_t node_id, bool out_of_sync);
  Status ReleasePeerSlot(int32_t node_id);  // forget-peer
  const PeerSlot& peer(int slot) const { return sb_.peers[slot]; }

  // Bitmaps: bit = 4 KiB block number. Sets are durable once the extent is in the AL (the
  // write path) or after WriteDirtyBitmap(); clears are written back lazily.
  Status SetBits(int slot, uint64_t first, uint64_t count);
  Status ClearBits(int slot, uint64_t first, uint64_t count);
  // Byte ranges: out-of-sync rounds outward, in-sync rounds inward (partial blocks stay).
  Status SetOutOfSync(int slot, uint64_t offset, uint64_t length);
  Status SetInSync(int slot, uint64_t offset, uint64_t length);
  Status SetAllBits(int slot);
  Status ClearAllBits(int slot);
  Result<bool> TestBit(int slot, uint64_t bit) const;
  uint64_t OutOfSyncBits(int slot) const;                 // 0 for an invalid slot
  uint64_t FindNextSet(int slot, uint64_t from) const;    // kNoBit when none
  uint64_t FindNextClear(int slot, uint64_t from) const;  // kNoBit when none
  const Bitmap* bitmap(int slot) const;                   // nullptr for an unused slot
  // ORs a peer's bitmap in (bitmap exchange); returns bits newly set.
  Result<uint64_t> MergeBits(int slot, std::span<const uint64_t> words);
  // Writes every dirty bitmap block, then flushes.
  Status WriteDirtyBitmap();

  // Activity log. BeginIo makes every 4 MiB extent of [offset, offset+length) hot before
  // a data write may start; returns true if it wrote (and flushed) an AL transaction.
  // Evicting an idle extent first writes its dirty bitmap blocks. kBusy: all extents in
  // use, retry after CompleteIo. With al-updates no it only validates the range.
  Result<bool> BeginIo(uint64_t offset, uint64_t length);
  // Like BeginIo but never does I/O: true and referenced if all extents were hot already.
  bool TryBeginIoFast(uint64_t offset, uint64_t length);
  Status CompleteIo(uint64_t offset, uint64_t length);
  uint32_t al_active_extents() const { return al_.active(); }
  uint32_t al_in_use_extents() const { return al_.in_use(); }
  uint32_t al_slots() const { return al_.slots(); }
  uint64_t al_transactions_written() const { return al_writes_; }

  // Generation UUIDs. NewCurrentUuid: each slot in `track_slots` (peers that will miss
  // the new data) with no bitmap UUID gets the old current UUID as its bitmap UUID; if
  // no slot takes it, the old current UUID goes to the history.
  Status NewCurrentUuid(uint64_t uuid, std::span<const int> track_slots);
  Status SetCurrentUuid(uint64_t uuid);  // old current -> history
  // Sets a slot's bitmap UUID; a replaced non-zero one goes to the history. 0 after sync.
  Status SetBitmapUuid(int slot, uint64_t uuid);
  Status ClearBitmapUuid(int slot) { return SetBitmapUuid(slot, 0); }
  Status SetFlags(uint32_t set, uint32_t clear);
  Status SetPeerFlags(int slot, uint32_t set, uint32_t clear);
  // General superblock edit (e.g. adopting a sync source's UUIDs); layout fields,
  // placement and seq may not change. Validated before anything is written.
  Status UpdateSuperblock(const std::function<void(Superblock&)>& edit);

 private:
  Metadata() = default;
  Status CheckWritable() const;
  Status CheckSlot(int slot) const;
  Status WriteSuperblock();
  Status Flush();
  Status WriteBitmapBlock(int slot, uint32_t block);
  Status WriteDirtyRange(uint64_t first_bit, uint64_t last_bit);
  Status InitAlRing();
  Status WriteAlTransaction(const AlTransaction& tr);  // write + flush
  Status Fail(Status s);
  static Status ReadBitmaps(MetaIo& io, const Superblock& sb, bool tolerate_bad,
                            std::vector<Bitmap>* out, OpenReport* report);

  std::unique_ptr<MetaIo> io_;
  Superblock sb_;
  Layout layout_;
  uint32_t disk_flags_ = 0;  // flags as last written
  int current_copy_ = 0;     // superblock copy holding sb_ on disk
  bool read_only_ = false;
  bool md_flushes_ = true;
  bool al_updates_ = true;
  std::function<Status()> data_flush_;
  bool closed_ = false;
  Status failed_;                // first I/O error; everything after fails with it
  std::vector<Bitmap> bitmaps_;  // indexed by slot; empty Bitmap for unused slots
  ActivityLog al_{2};
  uint64_t next_tr_ = 1;
  uint64_t al_writes_ = 0;
};

}  // namespace bsr::meta
