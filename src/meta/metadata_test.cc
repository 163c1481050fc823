#include "meta/metadata.h"

#include <gtest/gtest.h>

#include "common/temp_dir.h"
#include "meta/test_util.h"

namespace bsr::meta {
namespace {

using testing::FlipBit;
using testing::MakeSparseFile;
using testing::OpenFile;

constexpr uint64_t kDev = uint64_t{256} << 20;  // 256 MiB: 64 extents

OpenOptions ReadOnly() {
  OpenOptions o;
  o.read_only = true;
  return o;
}
OpenOptions NoAl() {
  OpenOptions o;
  o.al_updates = false;
  return o;
}

class MetadataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (dir_ / "disk").string();
    MakeSparseFile(path_, kDev);
  }
  void CreateInternal(uint32_t peers = 2, uint32_t al_extents = 7) {
    CreateOptions c;
    c.max_peers = peers;
    c.node_id = 0;
    c.al.extents = al_extents;
    auto io = OpenFile(path_);
    ASSERT_TRUE(Metadata::Create(*io, c).ok());
  }
  Result<std::unique_ptr<Metadata>> Open(OpenOptions o = {}, OpenReport* r = nullptr) {
    return Metadata::OpenPath(path_, o, r);
  }
  TempDir dir_;
  std::string path_;
};

TEST_F(MetadataTest, CreateOpenCloseRoundTrip) {
  CreateInternal();
  OpenReport rep;
  auto m = Open({}, &rep);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE(rep.was_clean);
  EXPECT_TRUE(rep.notes.empty());
  const Superblock& sb = (*m)->superblock();
  EXPECT_EQ(sb.current_uuid, kUuidJustCreated);
  EXPECT_EQ(sb.node_id, 0);
  EXPECT_EQ(sb.data_size, kDev - sb.md_size);
  EXPECT_FALSE((*m)->al_clean_on_disk());
  EXPECT_EQ((*m)->FindPeerSlot(1), -1);
  auto slot = (*m)->AssignPeerSlot(1, false);
  ASSERT_TRUE(slot.ok());
  EXPECT_EQ(*slot, 0);
  EXPECT_EQ(*(*m)->AssignPeerSlot(1, false), 0);
  EXPECT_EQ(*(*m)->AssignPeerSlot(2, true), 1);
  EXPECT_FALSE((*m)->AssignPeerSlot(3, false).ok());  // max-peers 2
  EXPECT_FALSE((*m)->AssignPeerSlot(0, false).ok());  // own node-id
  EXPECT_EQ((*m)->OutOfSyncBits(1), (*m)->data_bits());
  ASSERT_TRUE((*m)->SetOutOfSync(0, 4096 * 10 + 1, 4096).ok());
  EXPECT_EQ((*m)->OutOfSyncBits(0), 2u);
  ASSERT_TRUE((*m)->SetInSync(0, 4096 * 10, 4096 + 100).ok());
  EXPECT_EQ((*m)->OutOfSyncBits(0), 1u);
  EXPECT_EQ((*m)->FindNextSet(0, 0), 11u);
  ASSERT_TRUE((*m)->Close().ok());

  m = Open({}, &rep);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE(rep.was_clean);
  EXPECT_EQ((*m)->FindPeerSlot(2), 1);
  EXPECT_EQ((*m)->OutOfSyncBits(0), 1u);
  EXPECT_TRUE(*(*m)->TestBit(0, 11));
  EXPECT_EQ((*m)->OutOfSyncBits(1), (*m)->data_bits());
  EXPECT_EQ((*m)->peer(1).flags, uint32_t{kPeerFullSync});
  ASSERT_TRUE((*m)->Close().ok());
}

TEST_F(MetadataTest, AttachOptionsChangeAlExtents) {
  CreateInternal(1, 7);
  OpenOptions o;
  o.al_extents = 100;
  o.md_flushes = false;
  auto m = Open(o);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ((*m)->superblock().al.extents, 100u);
  ASSERT_TRUE((*m)->Close().ok());
  m = Open(ReadOnly());
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->superblock().al.extents, 100u);
  EXPECT_TRUE((*m)->al_clean_on_disk());
  EXPECT_EQ((*m)->SetBits(0, 0, 1).code(), Errc::kState);  // read-only
  o.al_extents = 7000;                                     // more than 919 x 7
  auto bad = Open(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("919"), std::string::npos);
}

TEST_F(MetadataTest, RangeAndSlotErrors) {
  CreateInternal();
  auto m = Open();
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->SetBits(0, 0, 1).code(), Errc::kInvalidArgument);  // unassigned
  ASSERT_TRUE((*m)->AssignPeerSlot(1, false).ok());
  EXPECT_EQ((*m)->SetBits(0, (*m)->data_bits(), 1).code(), Errc::kInvalidArgument);
  EXPECT_EQ((*m)->BeginIo((*m)->data_size(), 1).status().code(), Errc::kInvalidArgument);
  EXPECT_EQ((*m)->BeginIo(0, 0).status().code(), Errc::kInvalidArgument);
  EXPECT_FALSE((*m)->CompleteIo(0, 4096).ok());  // nothing in flight
}

TEST_F(MetadataTest, ActivityLogTransactionsAndEviction) {
  CreateInternal(1, 7);
  auto m = Open();
  ASSERT_TRUE(m.ok());
  Metadata& md = **m;
  ASSERT_TRUE(md.AssignPeerSlot(1, false).ok());
  uint64_t base = md.al_transactions_written();
  EXPECT_TRUE(*md.BeginIo(0, 4096));          // extent 0 becomes hot: transaction
  EXPECT_FALSE(*md.BeginIo(100, 4096));       // same extent: no I/O
  EXPECT_TRUE(md.TryBeginIoFast(4096, 512));  // hot: fast path
  EXPECT_FALSE(md.TryBeginIoFast(kExtentSize, 512));
  EXPECT_EQ(md.al_transactions_written(), base + 1);
  // A write spanning extents 1..2 activates both in one transaction.
  EXPECT_TRUE(*md.BeginIo(kExtentSize * 2 - 4096, 8192));
  EXPECT_EQ(md.al_transactions_written(), base + 2);
  EXPECT_EQ(md.al_active_extents(), 3u);
  EXPECT_EQ(md.al_in_use_extents(), 3u);  // extents with I/O in flight, not I/Os
  EXPECT_EQ(md.al_slots(), 7u);
  // Fill the AL with in-flight I/O: the 8th extent must wait.
  for (uint64_t e = 3; e < 7; ++e) ASSERT_TRUE(md.BeginIo(e * kExtentSize, 4096).ok());
  EXPECT_EQ(md.al_in_use_extents(), 7u);
  auto busy = md.BeginIo(7 * kExtentSize, 4096);
  EXPECT_EQ(busy.status().code(), Errc::kBusy);
  EXPECT_EQ(md.Close().code(), Errc::kBusy);
  // Complete extent 3's I/O: it becomes the victim; its dirty bit is written first.
  ASSERT_TRUE(md.SetBits(0, 3 * kBlocksPerExtent + 5, 1).ok());
  ASSERT_TRUE(md.CompleteIo(3 * kExtentSize, 4096).ok());
  EXPECT_EQ(md.al_in_use_extents(), 6u);
  EXPECT_TRUE(*md.BeginIo(7 * kExtentSize, 4096));
  EXPECT_EQ(md.al_in_use_extents(), 7u);
  // Extent 0 has three I/Os in flight: idle only after the last one completed.
  ASSERT_TRUE(md.CompleteIo(0, 4096).ok());
  ASSERT_TRUE(md.CompleteIo(100, 4096).ok());
  EXPECT_EQ(md.al_in_use_extents(), 7u);
  ASSERT_TRUE(md.CompleteIo(4096, 512).ok());
  EXPECT_EQ(md.al_in_use_extents(), 6u);
  EXPECT_FALSE(md.bitmap(0)->dirty(0));
  EXPECT_EQ(md.al_active_extents(), 7u);
  // Too large for the AL at all.
  EXPECT_EQ(md.BeginIo(0, 8 * kExtentSize).status().code(), Errc::kInvalidArgument);
}

TEST_F(MetadataTest, DataFlushRunsBeforeAnEvictingTransactionOnly) {
  CreateInternal(1, 7);
  int flushes = 0;
  bool fail = false;
  OpenOptions o;
  o.data_flush = [&]() -> Status {
    ++flushes;
    return fail ? Error(Errc::kIo, "flush /dev/x: Input/output error") : Status::Ok();
  };
  auto m = Open(o);
  ASSERT_TRUE(m.ok());
  Metadata& md = **m;
  // Seven extents fit: activating them evicts nothing, so nothing is flushed.
  for (uint64_t e = 0; e < 7; ++e) {
    ASSERT_TRUE(md.BeginIo(e * kExtentSize, 4096).ok());
    ASSERT_TRUE(md.CompleteIo(e * kExtentSize, 4096).ok());
  }
  EXPECT_EQ(flushes, 0);
  // The eighth evicts one: the data device is flushed first.
  ASSERT_TRUE(*md.BeginIo(7 * kExtentSize, 4096));
  EXPECT_EQ(flushes, 1);
  ASSERT_TRUE(md.CompleteIo(7 * kExtentSize, 4096).ok());
  // A failing flush fails the I/O and leaves the AL as it was.
  fail = true;
  uint64_t before = md.al_transactions_written();
  auto r = md.BeginIo(8 * kExtentSize, 4096);
  EXPECT_EQ(r.status().code(), Errc::kIo);
  EXPECT_NE(r.status().message().find("activity log drops an extent"), std::string::npos);
  EXPECT_EQ(md.al_transactions_written(), before);
  EXPECT_FALSE(md.TryBeginIoFast(8 * kExtentSize, 4096));
  fail = false;
  EXPECT_TRUE(*md.BeginIo(8 * kExtentSize, 4096));
  EXPECT_EQ(flushes, 3);
}

TEST_F(MetadataTest, CrashReplaysActivityLogForEveryPeer) {
  CreateInternal(2, 7);
  {
    auto m = Open();
    ASSERT_TRUE(m.ok());
    ASSERT_TRUE((*m)->AssignPeerSlot(1, false).ok());
    ASSERT_TRUE((*m)->AssignPeerSlot(2, false).ok());
    ASSERT_TRUE((*m)->SetFlags(kFlagPrimaryInd, 0).ok());
    ASSERT_TRUE((*m)->BeginIo(5 * kExtentSize + 12345, 4096).ok());
    ASSERT_TRUE((*m)->BeginIo(9 * kExtentSize, 2 * kExtentSize).ok());
    // Crash: the object goes away without Close.
  }
  OpenReport ro;
  auto r = Open(ReadOnly(), &ro);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(ro.al_replay_pending);
  EXPECT_EQ((*r)->OutOfSyncBits(0), 0u);  // read-only: nothing applied
  r = Result<std::unique_ptr<Metadata>>(Error(Errc::kInternal, "drop"));
  OpenReport rep;
  auto m = Open({}, &rep);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_FALSE(rep.was_clean);
  EXPECT_TRUE(rep.crashed_primary);
  EXPECT_EQ(rep.al_replayed_extents, 3u);  // 5, 9, 10
  for (int slot : {0, 1}) {
    EXPECT_EQ((*m)->OutOfSyncBits(slot), 3 * kBlocksPerExtent);
    EXPECT_TRUE(*(*m)->TestBit(slot, 5 * kBlocksPerExtent));
    EXPECT_FALSE(*(*m)->TestBit(slot, 6 * kBlocksPerExtent));
    EXPECT_TRUE(*(*m)->TestBit(slot, 11 * kBlocksPerExtent - 1));
    EXPECT_FALSE(*(*m)->TestBit(slot, 11 * kBlocksPerExtent));
  }
  EXPECT_NE((*m)->superblock().flags & kFlagCrashedPrimary, 0u);
  EXPECT_NE(rep.Summary().find("activity log replayed: 3 extents"), std::string::npos)
      << rep.Summary();
  ASSERT_TRUE((*m)->Close().ok());
  m = Open({}, &rep);
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(rep.was_clean);
  EXPECT_EQ((*m)->OutOfSyncBits(1), 3 * kBlocksPerExtent);
}

TEST_F(MetadataTest, AlUpdatesNoMeansFullSyncAfterCrash) {
  CreateInternal(1, 7);
  {
    auto m = Open(NoAl());
    ASSERT_TRUE(m.ok());
    ASSERT_TRUE((*m)->AssignPeerSlot(1, false).ok());
    uint64_t before = (*m)->al_transactions_written();
    EXPECT_FALSE(*(*m)->BeginIo(0, 4096));
    EXPECT_EQ((*m)->al_transactions_written(), before);
  }
  OpenReport rep;
  auto m = Open({}, &rep);
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(rep.full_sync_after_crash);
  EXPECT_EQ((*m)->OutOfSyncBits(0), (*m)->data_bits());
}

TEST_F(MetadataTest, UuidRotation) {
  CreateInternal(2);
  auto m = Open();
  ASSERT_TRUE(m.ok());
  Metadata& md = **m;
  ASSERT_TRUE(md.AssignPeerSlot(1, false).ok());
  ASSERT_TRUE(md.AssignPeerSlot(2, false).ok());
  ASSERT_TRUE(md.SetCurrentUuid(0xA0).ok());
  EXPECT_EQ(md.superblock().history[0], kUuidJustCreated);
  int track[] = {1};
  ASSERT_TRUE(md.NewCurrentUuid(0xB0, track).ok());
  EXPECT_EQ(md.superblock().current_uuid, 0xB0u);
  EXPECT_EQ(md.peer(1).bitmap_uuid, 0xA0u);
  EXPECT_EQ(md.peer(0).bitmap_uuid, 0u);
  ASSERT_TRUE(md.NewCurrentUuid(0xC0, track).ok());  // slot 1 keeps its older base
  EXPECT_EQ(md.peer(1).bitmap_uuid, 0xA0u);
  EXPECT_EQ(md.superblock().history[0], 0xB0u);
  ASSERT_TRUE(md.ClearBitmapUuid(1).ok());  // after resync
  EXPECT_EQ(md.peer(1).bitmap_uuid, 0u);
  EXPECT_EQ(md.superblock().history[0], 0xA0u);
  ASSERT_TRUE(md.SetPeerFlags(0, kPeerOutdated | kPeerConnectedOnce, 0).ok());
  ASSERT_TRUE(md.SetFlags(kFlagConsistent | kFlagWasUpToDate, 0).ok());
  EXPECT_FALSE(md.SetFlags(kFlagAlClean, 0).ok());
  EXPECT_FALSE(md.UpdateSuperblock([](Superblock& sb) { sb.data_size += 4096; }).ok());
  ASSERT_TRUE(md.UpdateSuperblock([](Superblock& sb) { sb.history[5] = 77; }).ok());
  ASSERT_TRUE(md.Close().ok());
  auto again = Open();
  ASSERT_TRUE(again.ok());
  const Superblock& sb = (*again)->superblock();
  EXPECT_EQ(sb.current_uuid, 0xC0u);
  EXPECT_EQ(sb.history[5], 77u);
  EXPECT_EQ(sb.peers[0].flags, uint32_t{kPeerOutdated | kPeerConnectedOnce});
  EXPECT_EQ(sb.flags & (kFlagConsistent | kFlagWasUpToDate),
            uint32_t{kFlagConsistent | kFlagWasUpToDate});
}

TEST_F(MetadataTest, FlippedBitsInEachBlockTypeAreNamed) {
  CreateInternal(1, 7);
  {
    auto m = Open();
    ASSERT_TRUE(m.ok());
    ASSERT_TRUE((*m)->AssignPeerSlot(1, false).ok());
    ASSERT_TRUE((*m)->Close().ok());
  }
  Layout l;
  {
    auto m = Open(ReadOnly());
    ASSERT_TRUE(m.ok());
    l = (*m)->superblock().layout();
  }
  // Bitmap block.
  FlipBit(path_, l.BitmapBlockOffset(0, 0) + 100, 3);
  auto restore_bm = [&] { FlipBit(path_, l.BitmapBlockOffset(0, 0) + 100, 3); };
  auto r = Open();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Errc::kCorrupt);
  EXPECT_NE(r.status().message().find("bitmap block 0 of peer slot 0: crc32c mismatch"),
            std::string::npos)
      << r.status().message();
  restore_bm();
  // AL block.
  FlipBit(path_, l.al_offset() + 3 * kBlockSize + 50);
  r = Open();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("activity log block 3"), std::string::npos)
      << r.status().message();
  // Salvage: accepted, every assigned slot fully out of sync, and the ring rewritten.
  {
    OpenOptions salvage;
    salvage.salvage = true;
    OpenReport srep;
    auto s = Open(salvage, &srep);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    EXPECT_TRUE(srep.full_sync_after_crash);
    EXPECT_EQ((*s)->OutOfSyncBits(0), (*s)->data_bits());
    ASSERT_FALSE(srep.notes.empty());
    EXPECT_NE(srep.notes[0].find("salvaged"), std::string::npos);
    ASSERT_TRUE((*s)->ClearAllBits(0).ok());
    ASSERT_TRUE((*s)->Close().ok());
  }
  ASSERT_TRUE(Open(ReadOnly()).ok());
  // One superblock copy: the other one is used and the report says so.
  FlipBit(path_, l.sb_offset() + 40);
  FlipBit(path_, l.sb_offset() + kSuperblockCopySize + 40);
  r = Open();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("both superblock copies invalid"), std::string::npos);
  FlipBit(path_, l.sb_offset() + 40);
  OpenReport rep;
  r = Open(ReadOnly(), &rep);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(rep.notes.size(), 1u);
  EXPECT_NE(rep.notes[0].find("crc32c mismatch"), std::string::npos);
}

TEST_F(MetadataTest, TruncatedAndMismatchedDevices) {
  CreateInternal();
  ASSERT_TRUE(Open().ok());
  // Truncated device: the superblock is no longer at the end.
  ASSERT_EQ(::truncate(path_.c_str(), kDev - 8192), 0);
  auto r = Open();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Errc::kNotFound);
  EXPECT_NE(r.status().message().find("check-resize"), std::string::npos);
  ASSERT_EQ(::truncate(path_.c_str(), kDev), 0);
  CreateInternal();
  r = Open(OpenOptions{.placement = Placement{PlacementKind::kFlexExternal, 0}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("created as internal"), std::string::npos);
  // A device too small for anything.
  std::string tiny = (dir_ / "tiny").string();
  MakeSparseFile(tiny, 4096);
  auto io = OpenFile(tiny);
  EXPECT_FALSE(Metadata::Create(*io, CreateOptions{}).ok());
  EXPECT_FALSE(Metadata::Open(std::move(io), OpenOptions{}).ok());
}

TEST_F(MetadataTest, ExternalFlexAndIndexed) {
  std::string meta = (dir_ / "meta").string();
  MakeSparseFile(meta, uint64_t{512} << 20);
  auto io = OpenFile(meta);
  CreateOptions c;
  c.placement = Placement{PlacementKind::kIndexed, 1};
  c.max_peers = 1;
  ASSERT_TRUE(Metadata::Create(*io, c).ok());
  c.placement = Placement{PlacementKind::kIndexed, 3};
  ASSERT_TRUE(Metadata::Create(*io, c).ok());
  OpenOptions o{.placement = Placement{PlacementKind::kIndexed, 1}, .backing_size = kDev};
  auto m = Metadata::Open(OpenFile(meta), o);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ((*m)->data_size(), kDev);
  ASSERT_TRUE((*m)->AssignPeerSlot(1, false).ok());
  ASSERT_TRUE((*m)->SetBits(0, 7, 3).ok());
  ASSERT_TRUE((*m)->Close().ok());
  // Grown backing device: the new area is out of sync.
  o.backing_size = 2 * kDev;
  OpenReport rep;
  m = Metadata::Open(OpenFile(meta), o, &rep);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(rep.grown_bits, kDev / kBlockSize);
  EXPECT_EQ((*m)->OutOfSyncBits(0), 3 + kDev / kBlockSize);
  ASSERT_TRUE((*m)->Close().ok());
  // Shrunk: refused.
  o.backing_size = kDev;
  m = Metadata::Open(OpenFile(meta), o);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("shrank"), std::string::npos);
  // Slot 3 is independent and still fresh; slot 2 was never created.
  o.placement.index = 3;
  ASSERT_TRUE(Metadata::Open(OpenFile(meta), o).ok());
  o.placement.index = 2;
  EXPECT_EQ(Metadata::Open(OpenFile(meta), o).status().code(), Errc::kNotFound);
  // Flex-external on a small meta file bounds the data size.
  std::string flex = (dir_ / "flex").string();
  MakeSparseFile(flex, 36 * 1024 + 4096);  // one bitmap block: 127 MiB
  io = OpenFile(flex);
  c.placement = Placement{PlacementKind::kFlexExternal, 0};
  ASSERT_TRUE(Metadata::Create(*io, c).ok());
  m = Metadata::Open(OpenFile(flex),
                     OpenOptions{.placement = c.placement, .backing_size = uint64_t{1} << 30},
                     &rep);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ((*m)->data_size(), kBitsPerBitmapBlock * kBlockSize);
  ASSERT_EQ(rep.notes.size(), 1u);
}

}  // namespace
}  // namespace bsr::meta

namespace bsr::meta {
namespace {

// Large I/O needing several transactions (> 64 new extents), on striped and plain rings.
TEST(MetadataGeometryTest, ManyExtentsAndStripedRings) {
  TempDir dir;
  std::string path = (dir / "big").string();
  testing::MakeSparseFile(path, uint64_t{1} << 30);  // 256 extents
  for (AlGeometry g : {AlGeometry{1, 8, 300}, AlGeometry{2, 4, 300}, AlGeometry{4, 4, 1000}}) {
    SCOPED_TRACE(fmt::format("stripes {} x {} KiB", g.stripes, g.stripe_size_4k * 4));
    CreateOptions c;
    c.al = g;
    c.node_id = 0;
    auto io = testing::OpenFile(path);
    ASSERT_TRUE(Metadata::Create(*io, c).ok());
    {
      auto m = Metadata::Open(testing::OpenFile(path), OpenOptions{});
      ASSERT_TRUE(m.ok()) << m.status().ToString();
      ASSERT_TRUE((*m)->AssignPeerSlot(1, false).ok());
      uint64_t before = (*m)->al_transactions_written();
      // 150 extents in one request: three transactions (64 + 64 + 22).
      ASSERT_TRUE(*(*m)->BeginIo(10 * kExtentSize, 150 * kExtentSize));
      EXPECT_EQ((*m)->al_transactions_written(), before + 3);
      // Cycle through more extents than the ring holds transactions.
      ASSERT_TRUE((*m)->CompleteIo(10 * kExtentSize, 150 * kExtentSize).ok());
      for (uint64_t e = 200; e < 240; ++e) {
        ASSERT_TRUE((*m)->BeginIo(e * kExtentSize, 4096).ok());
        ASSERT_TRUE((*m)->CompleteIo(e * kExtentSize, 4096).ok());
      }
      ASSERT_TRUE((*m)->BeginIo(250 * kExtentSize, 4096).ok());  // in flight at the crash
    }
    OpenReport rep;
    auto m = Metadata::Open(testing::OpenFile(path), OpenOptions{}, &rep);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_FALSE(rep.was_clean);
    // Every extent still hot (at most al-extents of them) is out of sync, including the
    // one in flight and the most recent ones; the ring never covers fewer than that.
    EXPECT_TRUE(*(*m)->TestBit(0, 250 * kBlocksPerExtent));
    // No eviction happened (191 < al-extents), so all 191 extents are still hot: the
    // first 150 are known only from context windows, their transactions were overwritten.
    for (uint64_t e = 10; e < 160; ++e) {
      ASSERT_TRUE(*(*m)->TestBit(0, e * kBlocksPerExtent)) << "extent " << e;
    }
    for (uint64_t e = 200; e < 240; ++e) {
      ASSERT_TRUE(*(*m)->TestBit(0, e * kBlocksPerExtent)) << "extent " << e;
    }
    EXPECT_EQ(rep.al_replayed_extents, 191u);
    EXPECT_FALSE(*(*m)->TestBit(0, 0));
    ASSERT_TRUE((*m)->Close().ok());
  }
}

}  // namespace
}  // namespace bsr::meta
