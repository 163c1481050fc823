// Device's replication-facing calls: generation UUIDs, bitmap access for the bitmap
// exchange and resync, writes and reads on behalf of a peer. io thread; bitmap calls
// take meta_mu_ briefly (in-memory only, no I/O).
#include <spdlog/spdlog.h>

#include <cstring>

#include "meta/bitmap.h"
#include "protocol/io_packets.h"
#include "replication/device.h"
#include "replication/resource.h"

namespace bsr::replication {

namespace {

// A peer's request that finds no usable disk here (detached, or failing after an error).
storage::IoResult NoDisk(const char* why) {
  storage::IoResult r;
  r.err = EIO;
  r.status = Status(Errc::kIo, why);
  return r;
}

}  // namespace

Device::UuidInfo Device::GetUuids() const {
  UuidInfo info;
  if (!md_) return info;
  std::lock_guard lk(meta_mu_);
  const auto& sb = md_->superblock();
  info.current = sb.current_uuid;
  info.flags = sb.flags;
  for (const auto& p : sb.peers) {
    if (p.node_id >= 0) info.bitmaps.emplace_back(p.node_id, p.bitmap_uuid);
  }
  for (uint64_t h : sb.history) {
    if (h != 0) info.history.push_back(h);
  }
  return info;
}

uint64_t Device::data_bits() const {
  return (data_size_ + 4095) / 4096;
}

std::vector<uint64_t> Device::PeerBitmapWords(int peer_node_id) const {
  std::vector<uint64_t> words((data_bits() + 63) / 64, 0);
  if (!md_) return words;
  std::lock_guard lk(meta_mu_);
  int slot = md_->FindPeerSlot(peer_node_id);
  const meta::Bitmap* bm = slot < 0 ? nullptr : md_->bitmap(slot);
  if (!bm) return words;
  auto w = bm->words();
  std::memcpy(words.data(), w.data(), std::min(w.size(), words.size()) * sizeof(uint64_t));
  return words;
}

Status Device::MergePeerBitmap(int peer_node_id, std::span<const uint64_t> words) {
  if (!md_) return Error(Errc::kState, "minor {} has no disk attached", minor_);
  std::lock_guard lk(meta_mu_);
  int slot = md_->FindPeerSlot(peer_node_id);
  if (slot < 0) return Error(Errc::kState, "no bitmap slot for node-id {}", peer_node_id);
  return md_->MergeBits(slot, words).status();
}

void Device::SetPeerOutOfSync(int peer_node_id, uint64_t offset, uint64_t length) {
  if (!md_ || length == 0) return;
  std::lock_guard lk(meta_mu_);
  int slot = md_->FindPeerSlot(peer_node_id);
  if (slot < 0) return;
  Status s = md_->SetOutOfSync(slot, offset, length);
  if (!s.ok()) spdlog::error("{}/{}: {}", resource_->name(), volume_, s.message());
}

void Device::SetPeerInSync(int peer_node_id, uint64_t offset, uint64_t length) {
  if (!md_ || length == 0) return;
  std::lock_guard lk(meta_mu_);
  int slot = md_->FindPeerSlot(peer_node_id);
  if (slot < 0) return;
  // The last block may be partial (data size not a multiple of 4 KiB): a range that
  // reaches the end clears it too.
  uint64_t end = offset + length;
  if (end >= data_size_ && offset < data_size_) {
    uint64_t first = (offset + 4095) / 4096;
    uint64_t bits = md_->data_bits();
    if (first < bits) md_->ClearBits(slot, first, bits - first).ok();
    return;
  }
  Status s = md_->SetInSync(slot, offset, length);
  if (!s.ok()) spdlog::error("{}/{}: {}", resource_->name(), volume_, s.message());
}

void Device::SetAllPeerBits(int peer_node_id) {
  if (!md_) return;
  std::lock_guard lk(meta_mu_);
  int slot = md_->FindPeerSlot(peer_node_id);
  if (slot >= 0) md_->SetAllBits(slot).ok();
}

uint64_t Device::NextPeerOutOfSync(int peer_node_id, uint64_t from_bit) const {
  if (!md_) return meta::kNoBit;
  std::lock_guard lk(meta_mu_);
  int slot = md_->FindPeerSlot(peer_node_id);
  if (slot < 0 || from_bit >= md_->data_bits()) return meta::kNoBit;
  return md_->FindNextSet(slot, from_bit);
}

uint64_t Device::NextPeerInSync(int peer_node_id, uint64_t from_bit) const {
  if (!md_) return 0;
  std::lock_guard lk(meta_mu_);
  int slot = md_->FindPeerSlot(peer_node_id);
  uint64_t bits = md_->data_bits();
  if (slot < 0 || from_bit >= bits) return bits;
  uint64_t b = md_->FindNextClear(slot, from_bit);
  return b == meta::kNoBit ? bits : b;
}

// Runs after every application write (AfterWrite): no heap allocation, the lock is
// held per peer only for the count.
void Device::UpdatePeerOosStats() {
  if (!md_) return;
  for (const auto& [id, spec] : resource_->peers()) {
    uint64_t sectors = 0;
    {
      std::lock_guard lk(meta_mu_);
      int slot = md_->FindPeerSlot(id);
      if (slot < 0) continue;
      sectors = md_->OutOfSyncBits(slot) * 8;
    }
    resource_->engine().UpdateStats([&, peer = id](ResourceState& st) {
      auto c = st.connections.find(peer);
      if (c == st.connections.end()) return;
      auto p = c->second.peer_devices.find(volume_);
      if (p != c->second.peer_devices.end()) p->second.stats.out_of_sync_sectors = sectors;
    });
  }
}

void Device::ApplyPeerWrite(uint64_t offset, std::span<const uint8_t> data, uint64_t length,
                            uint32_t dp_flags, storage::IoCallback done) {
  if (!disk_ || failing_) return done(NoDisk("no local disk attached"));
  auto self = shared_from_this();
  bool fua = dp_flags & protocol::kDpFua;
  self->DiskOpStart();
  auto finish = [self, offset, length, done = std::move(done)](storage::IoResult r) {
    self->UpdateIoStats(0, r.ok() ? length : 0, 0);
    if (!r.ok()) self->OnLocalIoError("peer write", offset, length, r);
    self->DiskOpDone();
    done(std::move(r));
  };
  auto write = [self, offset, data, length, dp_flags, fua, finish = std::move(finish)]() mutable {
    auto* disk = self->disk_.get();
    if (!disk) return finish(NoDisk("disk detached"));
    if (dp_flags & (protocol::kDpDiscard | protocol::kDpZeroes)) {
      auto then_fua = [disk, fua, finish = std::move(finish)](storage::IoResult r) mutable {
        if (!r.ok() || !fua) return finish(std::move(r));
        disk->Flush(std::move(finish));
      };
      if (dp_flags & protocol::kDpDiscard) {
        return disk->Discard(offset, length, std::move(then_fua));
      }
      return disk->WriteZeroes(offset, length, true, std::move(then_fua));
    }
    // The callers keep `data` alive until `done` runs, so it is written in place,
    // unless an O_DIRECT device needs an aligned copy (the socket aligns large blocks
    // without a digest already).
    uintptr_t addr = reinterpret_cast<uintptr_t>(data.data());
    if (!disk->direct() || addr % disk->logical_block_size() == 0) {
      return disk->Write(offset, data, fua, std::move(finish));
    }
    auto buf = std::make_shared<storage::AlignedBuffer>(data.size());
    std::memcpy(buf->data(), data.data(), data.size());
    disk->Write(
        offset, buf->span().first(data.size()), fua,
        [buf, finish = std::move(finish)](storage::IoResult r) mutable { finish(std::move(r)); });
  };
  if (dp_flags & protocol::kDpFlush) {
    // Preflush: everything written before must be stable first.
    disk_->Flush([write = std::move(write)](storage::IoResult) mutable { write(); });
    return;
  }
  write();
}

void Device::ApplyPeerWriteFromPipe(uint64_t offset, uint64_t length,
                                    std::shared_ptr<storage::SplicePipe> pipe,
                                    storage::IoCallback done) {
  if (!disk_ || failing_) return done(NoDisk("no local disk attached"));
  auto self = shared_from_this();
  DiskOpStart();
  storage::SplicePipe& p = *pipe;
  disk_->WriteFromPipe(offset, length, p,
                       [self, offset, length, pipe = std::move(pipe),
                        done = std::move(done)](storage::IoResult r) mutable {
                         pipe.reset();  // back to the socket's pool once empty
                         self->UpdateIoStats(0, r.ok() ? length : 0, 0);
                         if (!r.ok()) self->OnLocalIoError("peer write", offset, length, r);
                         self->DiskOpDone();
                         done(std::move(r));
                       });
}

void Device::PeerFlush(storage::IoCallback done) {
  if (!disk_ || failing_) return done(storage::IoResult::Ok());
  if (!disk_flushes_) return done(storage::IoResult::Ok());
  DiskOpStart();
  disk_->Flush([self = shared_from_this(), done = std::move(done)](storage::IoResult r) {
    if (!r.ok()) self->OnLocalIoError("flush", 0, 0, r);
    self->DiskOpDone();
    done(std::move(r));
  });
}

void Device::ReadForPeer(
    uint64_t offset, uint32_t length,
    std::function<void(storage::IoResult, std::shared_ptr<storage::AlignedBuffer>)> done) {
  auto buf = std::make_shared<storage::AlignedBuffer>(length);
  if (!disk_ || failing_) return done(NoDisk("no local disk attached"), buf);
  auto self = shared_from_this();
  DiskOpStart();
  disk_->Read(offset, buf->span().first(length),
              [self, buf, offset, length, done = std::move(done)](storage::IoResult r) {
                self->UpdateIoStats(r.ok() ? length : 0, 0, 0);
                if (!r.ok()) self->OnLocalIoError("read", offset, length, r);
                self->DiskOpDone();
                done(std::move(r), buf);
              });
}

}  // namespace bsr::replication
