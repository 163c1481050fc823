// Device: one volume of a resource on this node: its backing disk and metadata
// (attach/detach), the local write path (activity log before cold extents, bitmap
// bits for peers that miss a write, FLUSH/FUA), and the NBD export that serves it.
// Lives on the node's io_context thread; metadata I/O that may block runs on the
// node's metadata thread under meta_mu_ (see RunMeta).
#pragma once

#include <asio.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "frontend/export.h"
#include "frontend/nbd_server.h"
#include "meta/metadata.h"
#include "replication/handlers.h"
#include "replication/resource_state.h"
#include "storage/aligned_buffer.h"
#include "storage/backing_device.h"

namespace bsr::replication {

class Resource;
class Connection;

struct AttachSpec {
  std::string disk;        // backing device or file
  std::string meta_disk;   // same as disk for internal metadata
  std::string meta_index;  // "internal", "flexible"/"flex-external" or a slot number
  std::map<std::string, std::string> opts;  // disk options (--al-extents=...)
};

// I/O and metadata context shared by a node's devices.
struct DeviceEnv {
  asio::io_context* io = nullptr;
  asio::thread_pool* meta_pool = nullptr;  // may block (metadata writes)
  std::string run_dir;                     // NBD sockets: <run_dir>/<res>/<vol>.sock
  HandlerRunner* handlers = nullptr;       // usermode helper calls (handlers.h)
};

class Device : public std::enable_shared_from_this<Device> {
 public:
  Device(Resource* resource, DeviceEnv env, int volume, int minor);
  ~Device();

  int volume() const { return volume_; }
  int minor() const { return minor_; }
  bool attached() const { return md_ != nullptr; }
  const AttachSpec& attach_spec() const { return spec_; }
  std::string nbd_socket_path() const;
  uint64_t size_bytes() const;
  // Activity-log extents with writes in flight and the AL's size (congestion-extents,
  // DRBD's act_log->used): never waits for the metadata thread, whose lock may be held
  // across an AL transaction; then the last values read stand.
  std::pair<uint32_t, uint32_t> AlExtentsInUse() const {
    std::unique_lock lk(meta_mu_, std::try_to_lock);
    if (lk.owns_lock() && md_) al_seen_ = {md_->al_in_use_extents(), md_->al_slots()};
    return al_seen_;
  }

  // Creates the NBD socket (opens are refused until the role allows them).
  Status StartExport();
  // Stops the NBD server; `done` runs when every connection has ended.
  void StopExport(std::function<void()> done);

  // Opens the backing disk and metadata (replaying the activity log); returns the
  // disk state the metadata implies. Blocking: called from control requests.
  Result<DiskState> Attach(const AttachSpec& spec, const std::vector<int>& peer_node_ids);
  // Writes the metadata clean and closes the disk. Refuses while I/O is in flight.
  Status Detach();
  // Applies disk-options at runtime (the ones that can change without re-attach).
  Status SetDiskOptions(const std::map<std::string, std::string>& opts);

  // Role changes the metadata records (primary indicator, new current UUID when a
  // Primary has data its peers lack, consistent flags after --force).
  Status OnPromote(bool forced);
  Status OnDemote();
  Status EnsurePeerSlot(int node_id);

  uint64_t OutOfSyncSectors(int peer_node_id) const;

  // ---- Replication (peer_device.cc); io thread. Bitmap calls are in-memory. ----
  struct UuidInfo {
    uint64_t current = 0;
    std::vector<std::pair<int, uint64_t>> bitmaps;  // (peer node-id, bitmap UUID)
    std::vector<uint64_t> history;
    uint32_t flags = 0;
  };
  UuidInfo GetUuids() const;
  uint64_t data_bits() const;
  std::vector<uint64_t> PeerBitmapWords(int peer_node_id) const;
  Status MergePeerBitmap(int peer_node_id, std::span<const uint64_t> words);
  void SetPeerOutOfSync(int peer_node_id, uint64_t offset, uint64_t length);
  void SetPeerInSync(int peer_node_id, uint64_t offset, uint64_t length);
  void SetAllPeerBits(int peer_node_id);
  uint64_t NextPeerOutOfSync(int peer_node_id, uint64_t from_bit) const;  // meta::kNoBit
  uint64_t NextPeerInSync(int peer_node_id, uint64_t from_bit) const;     // or data_bits()
  // A write received from the peer (replicated or resync data); `data` must stay valid until
  // `done` runs (it is written in place unless an O_DIRECT disk needs an aligned copy).
  void ApplyPeerWrite(uint64_t offset, std::span<const uint8_t> data, uint64_t length,
                      uint32_t dp_flags, storage::IoCallback done);
  // Peer writes may come spliced from the socket now (ApplyPeerWriteFromPipe): a disk
  // whose I/O all goes through the page cache, attached and not failing.
  bool peer_splice_writes() const { return disk_ && !failing_ && disk_->splice_writes(); }
  // ApplyPeerWrite for a block waiting in `pipe` (replication::PacketSocket::
  // RecvBlockToPipe), without FUA, flush, discard or zeroes flags: the same ordering
  // among this disk's writes, accounting and on-io-error handling. Holds `pipe` until
  // `done` runs.
  void ApplyPeerWriteFromPipe(uint64_t offset, uint64_t length,
                              std::shared_ptr<storage::SplicePipe> pipe, storage::IoCallback done);
  void PeerFlush(storage::IoCallback done);
  void ReadForPeer(
      uint64_t offset, uint32_t length,
      std::function<void(storage::IoResult, std::shared_ptr<storage::AlignedBuffer>)> done);
  // The backing file for zero-copy resync sends (storage::BackingDevice::page_cache_file):
  // nullptr without a disk, while it fails, or when its I/O bypasses the page cache.
  std::shared_ptr<storage::PageCacheFile> page_cache_file() const {
    return disk_ && !failing_ ? disk_->page_cache_file() : nullptr;
  }
  // Metadata work on the metadata thread, `then` back on the io thread.
  void UpdateMeta(std::function<Status(meta::Metadata&)> fn, std::function<void(Status)> then) {
    RunMeta(std::move(fn), std::move(then));
  }
  // Copies each peer slot's out-of-sync count into the status counters.
  void UpdatePeerOosStats();
  // A Primary lost the peer: new data generation; the peer's slot keeps the old one.
  void OnPeerLost(int peer_node_id);
  // SyncTarget: the disk is Inconsistent on disk until the resync finishes.
  void MarkInconsistent();

  // ---- Admin commands (device_admin.cc); io thread, metadata written synchronously. ----
  // `outdate`: UpToDate/Consistent -> Outdated, recorded as consistent without
  // was-up-to-date in the metadata flags.
  Status Outdate();
  // `new-current-uuid`: a new data generation. With clear_bitmap every peer slot's
  // bitmap is cleared and its bitmap UUID reset; on a just-created disk (current UUID
  // 4) it also marks the disk consistent and up to date (DRBD's skip-initial-sync).
  // Sets *up_to_date when the disk became UpToDate that way.
  Status NewCurrentUuid(bool clear_bitmap, bool* up_to_date);
  // `get-gi` / `show-gi` against the attached metadata, in bsrmeta's format.
  Result<std::string> GenerationIds(int peer_node_id, bool verbose) const;

  // ---- I/O suspension (device_admin.cc); io thread. ----
  // While the resource is suspended (suspend-io, or no data accessible with
  // on-no-data-accessible suspend-io) an application request is held: `retry(true)`
  // runs it again when I/O resumes, `retry(false)` fails it (the export stops).
  // Returns false when it is not suspended (go on at once).
  using Retry = std::function<void(bool run)>;
  bool HoldIfSuspended(Retry retry);
  // Runs every held request again (resume-io, attach); still suspended ones are held
  // again.
  void ReleaseHeld();
  // resume-io while no data is accessible: requests without data fail with EIO (the
  // io-error behaviour) until a disk is attached again.
  void SetNoDataFailsFast() { no_data_eio_ = true; }
  int held_requests() const { return static_cast<int>(held_.size()); }

  // on-io-error policy of the attached disk (disk option, changeable at runtime).
  enum class IoErrorPolicy { kPassthrough, kDetach, kCallHandler };
  IoErrorPolicy io_error_policy() const;
  // True between a local I/O error (detach policies) and the end of the detach.
  bool failing() const { return failing_; }

  // The Export the NBD server (and /dev/bsrN) serve.
  std::shared_ptr<frontend::Export> block_export() const { return export_; }
  // NBD clients holding the volume (/dev/bsrN is not counted: see OnOpen).
  int open_count() const { return open_count_; }

 private:
  class VolumeExport;
  friend class VolumeExport;

  // Runs `fn` on the metadata thread with the metadata lock held, then `then` on the
  // io thread with its status.
  void RunMeta(std::function<Status(meta::Metadata&)> fn, std::function<void(Status)> then);

  // What a write sends to the peers: dp_flags (FUA, discard, zeroes) and the data.
  struct Replica {
    uint32_t dp_flags = 0;
    std::span<const uint8_t> data;
  };
  // The local part of a write: gets the write's range and replica (so the callable
  // captures at most a pointer and a flag, and std::function does not allocate).
  using LocalIo = std::function<void(uint64_t offset, uint64_t length, const Replica& replica,
                                     storage::IoCallback done)>;
  struct WriteOp;
  void SubmitWrite(uint64_t offset, uint64_t length, LocalIo io, Replica replica,
                   storage::IoCallback done);
  void StartWrite(uint64_t offset, uint64_t length, LocalIo io, Replica replica,
                  std::vector<std::shared_ptr<Connection>> peers, storage::IoCallback done);
  void FlushAll(storage::IoCallback done);
  // device_unaligned.cc: writes that are not whole sectors, as read-modify-writes. While
  // one runs (rmw_active_), every new application write waits in rmw_waiting_.
  static bool IsUnaligned(uint64_t offset, uint64_t length);
  // Narrows [offset, offset+length) to the whole sectors inside it; false when none are.
  static bool ShrinkToWholeSectors(uint64_t& offset, uint64_t& length);
  void HoldBehindRmw(std::function<void()> retry);
  void WriteUnaligned(uint64_t offset, std::span<const uint8_t> data, bool fua,
                      storage::IoCallback done);
  void RmwRead(uint64_t offset, std::span<const uint8_t> data, bool fua, storage::IoCallback done);
  void WriteZeroesUnaligned(uint64_t offset, uint64_t length, bool fua, bool no_hole,
                            storage::IoCallback done);
  void MaybeStartRmw();  // when no write is in flight: the waiting read-modify-write
  void EndRmw();
  void AfterWrite(uint64_t offset, uint64_t length, storage::IoResult r, bool peer_took_it,
                  storage::IoCallback done);
  // A failed local request (device_io_error.cc). With passthrough the range is marked
  // out of sync for every peer and the error goes up. With detach/call-local-io-error
  // the disk goes Failed, the handler runs, and once no request is in flight the
  // metadata is written (where it still can be) and the disk becomes Diskless.
  void OnLocalIoError(const char* what, uint64_t offset, uint64_t length,
                      const storage::IoResult& r);
  void MaybeFinishFailure();
  // The disk goes Failed (a detach that completes in MaybeFinishFailure); with
  // call_handler the local-io-error handler runs. `why` is logged.
  void BeginFailure(const std::string& why, bool call_handler);
  // disk-timeout (disk option, tenths of a second; 0 = off): while a disk is attached a
  // timer looks at the oldest pending backing-device request; one older than the
  // timeout fails the disk as an I/O error with on-io-error detach would.
  std::chrono::milliseconds disk_timeout() const;
  void WatchDiskTimeout();
  void CheckDiskTimeout();
  // No local data and no UpToDate peer: with on-no-data-accessible suspend-io the
  // resource suspends (susp_no_data) and the request is held.
  bool HoldIfNoData(Retry retry);
  // False when HoldIfSuspended cannot hold (no suspension flag set): skips building a
  // retry for every write.
  bool MayHold() const;
  // After a successful attach (posted from Attach): leaves a no-data suspension.
  void OnAttached();
  // Counts a backing-device request that is not an application write (reads, peer
  // writes, flushes), so that a failure detach waits for it.
  void DiskOpStart() { ++disk_ops_; }
  void DiskOpDone();
  std::vector<int> DisconnectedPeerSlots() const;
  // The peer is connected and its disk for this volume is UpToDate.
  bool PeerUpToDate(int peer_node_id) const;
  Status OnOpen(const frontend::OpenContext& ctx);
  void OnClose(const frontend::OpenContext& ctx);
  void UpdateIoStats(uint64_t read_bytes, uint64_t written_bytes, int pending_delta);

  Resource* resource_;
  DeviceEnv env_;
  int volume_;
  int minor_;
  AttachSpec spec_;
  std::unique_ptr<storage::BackingDevice> disk_;
  std::unique_ptr<meta::Metadata> md_;
  mutable std::mutex meta_mu_;  // guards md_ contents between io and metadata threads
  mutable std::pair<uint32_t, uint32_t> al_seen_{0, 0};  // AlExtentsInUse's last read
  std::unique_ptr<asio::strand<asio::thread_pool::executor_type>> meta_strand_;
  uint64_t data_size_ = 0;
  bool disk_flushes_ = true;
  bool auto_promoted_ = false;
  int open_count_ = 0;
  bool kernel_open_ = false;
  int inflight_ = 0;
  bool rmw_active_ = false;                         // a read-modify-write holds new writes
  std::function<void()> rmw_start_;                 // it, until inflight_ reaches 0
  std::vector<std::function<void()>> rmw_waiting_;  // writes held behind it, in order
  int disk_ops_ = 0;      // other backing-device requests in flight (DiskOpStart)
  bool failing_ = false;  // local I/O error: detaching (disk Failed)
  std::unique_ptr<asio::steady_timer> disk_timer_;  // disk-timeout watchdog
  bool disk_watch_armed_ = false;
  std::vector<Retry> held_;   // requests held while I/O is suspended
  bool no_data_eio_ = false;  // see SetNoDataFailsFast
  bool export_stopping_ = false;
  std::shared_ptr<frontend::Export> export_;
  std::unique_ptr<frontend::NbdServer> nbd_;
};

}  // namespace bsr::replication
