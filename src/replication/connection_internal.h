// Internal state of a Connection shared by connection.cc, connection_io.cc and
// sync.cc: one session (socket pair) and the per-volume peer devices. io thread only.
#pragma once

#include <asio.hpp>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "replication/block_set.h"
#include "replication/connection.h"
#include "replication/resync_controller.h"

namespace bsr::replication {

struct Connection::Attempt {
  uint64_t cookie = 0;
  std::shared_ptr<PacketSocket> data;
  std::shared_ptr<PacketSocket> meta;
};

// One dial attempt that passed the preamble: its two sockets, the handshake, and
// everything in flight on it. Ends (closed) exactly once.
struct Connection::Session {
  explicit Session(asio::io_context& io) : ping_timer(io), drain_timer(io), handshake_timer(io) {}

  uint64_t id = 0;
  uint64_t cookie = 0;
  bool dialer = false;
  std::shared_ptr<PacketSocket> data;
  std::shared_ptr<PacketSocket> meta;
  bool established = false;
  bool closed = false;
  std::map<int, uint64_t> sent_current;  // per volume: the current UUID last sent (Uuids)
  protocol::NegotiatedFeatures features;
  std::vector<uint8_t> challenge[2];  // ours, per socket (data, meta)

  // Keepalive.
  asio::steady_timer ping_timer;
  bool ping_outstanding = false;

  // Outgoing writes (we are Primary): block_id -> ack callback.
  struct PendingWrite {
    int volume = 0;
    uint32_t sectors = 0;
    int parts = 0;  // packets still unacknowledged
    bool ok = true;
    AckCallback done;
    std::chrono::steady_clock::time_point sent;  // for timeout / ko-count
    uint64_t bytes = 0;                          // unacknowledged bytes (congestion)
  };
  uint64_t next_block_id = 1;
  uint32_t next_seq = 1;
  std::map<uint64_t, std::shared_ptr<PendingWrite>> pending;  // by packet block_id
  uint32_t barrier_nr = 0;
  uint32_t epoch_writes = 0;
  std::map<uint32_t, std::vector<AckCallback>> barriers;

  // Incoming writes (we are Secondary / SyncTarget): local writes in flight.
  struct Range {
    uint64_t offset, length;
  };
  std::map<uint64_t, Range> inflight;  // by a local counter
  uint64_t next_inflight = 1;
  asio::steady_timer drain_timer;
  uint32_t epoch_received = 0;

  asio::steady_timer handshake_timer;

  // Timeouts (connection_io.cc): last packet on the meta socket, the ping in flight.
  std::chrono::steady_clock::time_point last_meta_rx;
  std::chrono::steady_clock::time_point ping_sent;
  std::chrono::steady_clock::time_point last_ping;
  std::map<uint32_t, std::chrono::steady_clock::time_point> barrier_sent;  // by barrier nr
  uint64_t unacked_bytes = 0;  // sent writes not acknowledged yet (protocol B/C)
  // The transfer log: sent writes (every protocol) whose epoch the peer has not
  // acknowledged (BarrierAck) yet; if the session ends they are marked out of sync.
  struct SentWrite {
    int volume = 0;
    uint64_t offset = 0, length = 0;
    uint32_t barrier = 0;  // the barrier that closes its epoch
    std::chrono::steady_clock::time_point sent;
    // Its peer-ack group (0: none, fewer than two peers) and acks (JoinPeerAck): the
    // write counts as on this peer once it leaves here with its epoch's BarrierAck.
    uint64_t dagtag = 0;
    std::shared_ptr<PendingWrite> acks;
  };
  std::deque<SentWrite> tl;
  // Peer acks (peer_ack.cc): as Primary, our writes in send order until settled; as
  // Secondary, the writes received that no PeerAck covered yet.
  PeerAckOrder pa_order;
  UnstableWrites unstable;
};

// Per volume: what we know of the peer's device and the resync in progress.
struct Connection::PeerDevice {
  int volume = 0;
  bool have_info = false;
  protocol::Sizes sizes;
  protocol::Uuids uuids;
  protocol::StatePacket state;

  enum class Sync { kNone, kSource, kTarget };
  Sync sync = Sync::kNone;
  bool full = false;
  bool bitmap_done = false;
  std::vector<uint64_t> bm_rx;  // peer's bitmap chunks land here, then merge
  std::unique_ptr<protocol::BitmapReceiver> bm_receiver;
  uint64_t total_bits = 0;
  uint64_t rs_total_bits = 0;
  uint64_t cursor = 0;  // next bit to request (target)
  struct Request {
    uint64_t offset, length;
    bool stale = false;
  };
  std::map<uint64_t, Request> requests;  // target: by block_id
  uint64_t next_request_id = 1;
  uint64_t requested_bytes = 0;
  uint64_t zero_copy_bytes = 0;  // source: reply blocks sent from the page cache (resync.cc)
  uint64_t rate_kib = 0;         // resync-rate; 0 = unlimited (bounded by requests in flight)
  // Target: reply blocks spliced from the socket into the disk (resync.cc), since the
  // last finished resync (sync.cc logs and clears it).
  uint64_t spliced_bytes = 0;
  std::chrono::steady_clock::time_point started;
  bool pump_scheduled = false;
  bool finishing = false;
  // Ahead/Behind (congestion.cc): we are Ahead of this peer; writes only mark bits.
  bool ahead = false;
  // Drained: writes replicate again; the resync starts once the writes decided while
  // Ahead (their bits go to the bitmap asynchronously) are done.
  bool leaving_ahead = false;
  std::chrono::steady_clock::time_point left_ahead;
  // sync.cc: our bitmap went out (the exchange ends when both directions are done); a
  // before-resync handler runs; the dirty bits our last Uuids announced.
  bool bitmap_sent = false;
  bool handler_pending = false;
  std::optional<uint64_t> sent_dirty_bits;
  // Rate control, pause, verify (resync.cc, verify.cc, csums.cc).
  ResyncRun rs;
  VerifyRun ov;
  bool user_paused = false;  // pause-sync here; kept across resyncs
  bool peer_paused = false;  // pause-sync on the peer (its replication state says so)
  // Target, with a Primary on another connection (resync.cc): blocks the Primary wrote
  // to our disk before the bitmap exchange ended, cleared once it has (the exchange
  // would set them again); and marks toward this peer that a peer ack or the Primary's
  // loss asks for meanwhile, kept until a resync from this peer ends, or a session
  // decides anything but such a resync, so that they are never requested from it
  // (ApplyDeferredMarks; in memory only, not cleared by ResetSync or a session's end).
  BlockSet early_clears;
  std::vector<std::pair<uint64_t, uint64_t>> deferred_marks;
  uint64_t deferred_since_uuid = 0;  // the peer's current UUID when the first was held

  void ResetSync() {
    sync = Sync::kNone;
    full = false;
    bitmap_done = false;
    bm_rx.clear();
    bm_receiver.reset();
    rs_total_bits = 0;
    cursor = 0;
    requests.clear();
    requested_bytes = 0;
    zero_copy_bytes = 0;
    pump_scheduled = false;
    finishing = false;
    bitmap_sent = false;
    handler_pending = false;
    rs.Reset();
    ov = VerifyRun{};
    peer_paused = false;
    early_clears.clear();
  }
};

}  // namespace bsr::replication
