// Connection: the link to one peer of a resource: listening and dialing on its path,
// the per-socket handshake (preamble, features, auth), net-option/size/UUID/state
// exchange, keepalive, the replicated write stream (both directions) and resync.
// Lives on the node's io_context thread (single-threaded: no locks); its coroutines
// hold a shared_ptr and stop touching the Resource once Stop() ran.
#pragma once

#include <asio.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "protocol/bitmap_rle.h"
#include "protocol/dispatch.h"
#include "replication/connection_socket.h"
#include "replication/peer_ack.h"
#include "replication/resource_state.h"
#include "replication/states.h"
#include "replication/sync_decision.h"
#include "storage/aligned_buffer.h"

namespace bsr::replication {

class Resource;
class Device;
class Listener;
struct PathSpec;

// Net options of one connection, parsed from PeerSpec::net_opts (DRBD units).
struct NetConfig {
  protocol::WireProtocol protocol = protocol::WireProtocol::kC;
  std::string cram_hmac_alg;  // empty: no authentication
  std::string shared_secret;
  std::chrono::milliseconds connect_int{10000};  // connect-int, seconds
  std::chrono::milliseconds ping_int{10000};     // ping-int, seconds
  std::chrono::milliseconds ping_timeout{500};   // ping-timeout, tenths of a second
  std::chrono::milliseconds timeout{6000};       // timeout, tenths of a second (handshake)
  bool use_rle = true;
  protocol::ProtocolOptions options;
  // Timeouts and buffers (connection.cc parses, connection_io.cc enforces).
  int ko_count = 7;                // a write not done in timeout*ko-count drops the peer; 0 off
  uint64_t max_buffers = 2048;     // receiver: pages of 4 KiB of peer writes in flight
  uint32_t max_epoch_size = 2048;  // writes per epoch before a barrier closes it
  SocketTuning tuning;             // sndbuf-size, rcvbuf-size, tcp-cork
  // Congestion (congestion.cc): what to do when more than congestion_fill bytes are
  // in flight to the peer.
  enum class OnCongestion { kBlock, kPullAhead, kDisconnect };
  OnCongestion on_congestion = OnCongestion::kBlock;
  uint64_t congestion_fill = 0;  // bytes; 0 disables
  uint32_t congestion_extents = 6001;
};
Result<NetConfig> ParseNetConfig(const std::map<std::string, std::string>& opts);

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using AckCallback = std::function<void(bool ok)>;

  Connection(Resource* resource, int peer_node_id);
  ~Connection();

  int peer_node_id() const { return peer_id_; }
  bool established() const;

  // StandAlone -> Connecting: listen on the local address, dial the remote one.
  Status Start();
  // -> StandAlone: tells the peer (Disconnect packet), closes everything.
  void Stop(std::string_view reason);

  // Write path (Primary). CanReplicate: the peer takes writes for this volume now.
  bool CanReplicate(int volume) const;
  // Sends a write (copied; split into 1 MiB packets); `done(true)` when the
  // connection's protocol acknowledged it, `done(false)` if the peer dropped out.
  void SendWrite(int volume, uint64_t offset, std::span<const uint8_t> data, uint64_t length,
                 uint32_t dp_flags, AckCallback done);
  // Closes the epoch with a barrier; done when the peer flushed everything before it.
  void SendFlush(int volume, AckCallback done);
  // A Primary's write (Data from another connection) is on our disk now. While we are
  // SyncTarget of this peer, those blocks need nothing from it: its copy may be older
  // (the Primary's write reaches it later), and a request sent now would bring that.
  void OnPrimaryWriteApplied(int volume, uint64_t offset, uint64_t length);
  // A peer ack (or the Primary's loss) says this peer may lack a Primary's write that is
  // on our disk. While we are SyncTarget of this peer the mark waits for the resync's end
  // (true): set now, it would make us request the block from the peer that lacks it.
  bool DeferMarkWhileTarget(int volume, uint64_t offset, uint64_t length);
  // A write group settled (peer_ack.cc): the PeerAck for `token` of `session` may go.
  void OnPeerAckReady(uint64_t session, uint32_t token, uint64_t mask);

  // The local node was promoted; with `forced` a full sync to an Inconsistent peer.
  void OnPromoted(bool forced);

  // Cluster-wide state changes (twopc.h drives them); false when not established.
  bool SendStateChangeRequest(const protocol::StateChangeRequest& rq);
  bool SendTwoPcDecision(bool commit, const protocol::TwoPcDecisionFields& d);
  // Sends our state of every volume again (a committed change that failed locally).
  void ResendState();
  // Our generation UUIDs again, after they changed while connected (a new current UUID).
  void ResendUuids(int volume);
  // A received write of some connection finished: writes of this one waiting for room
  // look again (Resource::RemoveReceivedWrite).
  void WakeReceivers();
  // Resync requests of ours for that range get stale (Resource::MarkResyncStale).
  void MarkResyncStale(int volume, uint64_t offset, uint64_t length);
  // net-options at runtime: `opts` is the whole new option set. Live options (ping-int,
  // ping-timeout, timeout, ko-count, max-buffers, max-epoch-size, sndbuf/rcvbuf-size,
  // tcp-cork, congestion, ...) apply at once; those the handshake agreed on are refused
  // while Connected, nothing changed.
  Status ApplyNetOptions(const std::map<std::string, std::string>& opts);

  // sync_admin.cc: `connect --discard-my-data` (this node is the victim if this connection
  // finds a split brain; cleared by the next sync decision), invalidate (full resync of
  // the local disk from this peer), invalidate-remote (of the peer's disk from here).
  void SetDiscardMyData(bool on) { discard_my_data_ = on; }
  Status Invalidate(int volume);
  Status InvalidateRemote(int volume);

  // pause-sync / resume-sync (resync.cc): the user's resync-suspend flag of a volume;
  // kept across resyncs. Already set / already clear -> kState.
  Status SetResyncPaused(int volume, bool paused);
  // verify (verify.cc): online verify of sectors [start, stop) as VerifyS; stop 0 or
  // past the end: to the end of the device.
  Status StartVerify(int volume, uint64_t start_sector, uint64_t stop_sector);

 private:
  struct Session;
  struct PeerDevice;
  struct Attempt;
  struct DialRound;

  // connection.cc: lifecycle, listening, dialing, handshake.
  void OnIncoming(std::shared_ptr<PacketSocket> sock, const protocol::Preamble& pre);
  void StopListening();
  void RegisterListeners();  // every path's local address not listened on yet
  asio::awaitable<void> DialLoop();
  void DialAll();  // one round: all paths at once, the first connected one wins
  asio::awaitable<void> DialPath(PathSpec path, std::shared_ptr<DialRound> round);
  asio::awaitable<std::shared_ptr<PacketSocket>> DialSocket(const PathSpec& path,
                                                            protocol::SocketKind kind,
                                                            std::shared_ptr<DialRound> round);
  asio::awaitable<void> RunSession(std::shared_ptr<Session> s);
  asio::awaitable<Status> Handshake(std::shared_ptr<Session> s);
  asio::awaitable<Status> SocketHandshake(std::shared_ptr<Session> s, PacketSocket& sock);
  void Established(std::shared_ptr<Session> s);
  // Ends the session; retry -> NetworkFailure then Connecting, else StandAlone.
  void EndSession(const std::shared_ptr<Session>& s, ConnState why, const std::string& reason,
                  bool retry);
  void SetConn(ConnState c);
  std::chrono::milliseconds HandshakeTimeout() const;  // dial + handshake
  bool Alive(const std::shared_ptr<Session>& s) const;

  // connection_io.cc: established traffic.
  asio::awaitable<void> DataReceiver(std::shared_ptr<Session> s);
  asio::awaitable<void> MetaReceiver(std::shared_ptr<Session> s);
  asio::awaitable<void> PingLoop(std::shared_ptr<Session> s);
  asio::awaitable<Status> OnDataPacket(std::shared_ptr<Session> s, std::unique_ptr<Received> r);
  Status OnMetaPacket(const std::shared_ptr<Session>& s, const Received& r);
  asio::awaitable<void> WaitWritesBelow(std::shared_ptr<Session> s, int limit);
  // Receiver back-pressure: overlap order (with the received writes of every
  // connection), max-buffers (`mem` bytes of this write).
  asio::awaitable<void> WaitRoom(std::shared_ptr<Session> s, int volume, uint64_t off, uint64_t len,
                                 uint64_t mem);
  // A received write is at the disk now / is done (Resource's registry and ours).
  void ReceivedWriteStarted(const std::shared_ptr<Session>& s, uint64_t key, int volume,
                            uint64_t off, uint64_t len);
  void ReceivedWriteDone(const std::shared_ptr<Session>& s, uint64_t key);
  // Closes the epoch: Barrier{n}; `done` (may be empty) when the peer acked it.
  void SendBarrier(const std::shared_ptr<Session>& s, int volume, AckCallback done);
  void SendState(const std::shared_ptr<Session>& s, int volume);
  void SendUuids(const std::shared_ptr<Session>& s, int volume);
  void SendSizes(const std::shared_ptr<Session>& s, int volume);
  void OnPeerState(const std::shared_ptr<Session>& s, int volume, const protocol::StatePacket& st);
  void OnLocalChange(const ResourceState& o, const ResourceState& n);

  // congestion.cc: on-congestion pull-ahead / disconnect (Ahead/Behind).
  uint64_t BytesInFlight(const std::shared_ptr<Session>& s);
  bool CongestionChecked() const;  // on-congestion is not block and a threshold is set
  void CheckCongestion(const std::shared_ptr<Session>& s);    // after a write was queued
  void CheckAheadDrained(const std::shared_ptr<Session>& s);  // keepalive tick
  void OnPeerAheadBehind(const std::shared_ptr<Session>& s, int volume, ReplState peer_repl);

  // sync.cc: sync decision, sync start, bitmap exchange, sync end.
  GenerationUuids LocalUuids(int volume) const;
  void DecideAndStartSync(const std::shared_ptr<Session>& s, int volume);
  void BeginSync(const std::shared_ptr<Session>& s, int volume, bool source, bool full);
  Status OnBitmapChunk(const std::shared_ptr<Session>& s, int volume,
                       const protocol::BitmapChunk& chunk);
  void OnBitmapExchanged(const std::shared_ptr<Session>& s, int volume);
  void FinishSyncTarget(const std::shared_ptr<Session>& s, int volume);
  void FinishSyncSource(const std::shared_ptr<Session>& s, int volume);
  // sync.cc: Uuids flags we send (discard-my-data, crashed primary); the peer's Uuids
  // after the handshake (a Secondary adopts its Primary's new generation); the bitmap
  // exchange once the before-resync handler returned.
  uint64_t LocalUuidFlags(int volume);
  void OnPeerUuids(const std::shared_ptr<Session>& s, int volume, const protocol::Uuids& u);
  void StartBitmapExchange(const std::shared_ptr<Session>& s, int volume);
  void PersistSyncStart(int volume, bool source, bool full);
  asio::awaitable<void> WriteBitmapWhileSyncing(std::shared_ptr<Session> s, int volume,
                                                std::chrono::steady_clock::time_point id);
  // EndSession, but the sockets close only once our handshake packets reached the peer.
  void EndSessionAfterDecision(const std::shared_ptr<Session>& s, ConnState why,
                               const std::string& reason, bool retry);
  bool discard_my_data_ = false;

  // resync.cc: the block transfer of a running resync.
  void ConfigureResync(PeerDevice& pdv, int volume);  // peer-device options -> pdv
  void PumpResync(const std::shared_ptr<Session>& s, int volume);
  void OnResyncRequest(const std::shared_ptr<Session>& s, int volume,
                       const protocol::RsDataRequest& rq);
  void OnResyncReply(const std::shared_ptr<Session>& s, int volume, std::shared_ptr<Received> r);
  // A resync reply whose block is still in the data socket (Received::block_pending):
  // spliced into the disk when it is to be written and may be, else received into memory.
  asio::awaitable<Status> OnResyncReplyBlock(std::shared_ptr<Session> s, int volume,
                                             std::unique_ptr<Received> r);
  // OnResyncReply's write, of r's block or, with `pipe`, of the block waiting there.
  void WriteResyncReply(const std::shared_ptr<Session>& s, int volume, std::shared_ptr<Received> r,
                        std::shared_ptr<storage::SplicePipe> pipe);
  // BSR_RECV_SPLICE=0 turns splicing received blocks into the disk off (A/B runs).
  static bool RecvSpliceEnabled();
  void OnResyncAck(const std::shared_ptr<Session>& s, int volume,
                   const protocol::BlockAckFields& ack, bool ok);
  void MarkStaleResync(PeerDevice& pd, uint64_t offset, uint64_t length);
  void UpdateSyncStats(int volume);
  void ApplyDeferredMarks(int volume, PeerDevice& pd);
  // resync.cc: rate control (resync_controller.h) and pause/resume.
  void StartResyncTick(const std::shared_ptr<Session>& s, int volume);
  void ResyncTick(const std::shared_ptr<Session>& s, int volume, uint64_t run_id);
  void ApplyResyncSuspend(const std::shared_ptr<Session>& s, int volume);
  uint64_t AppIoSectors(int volume) const;  // local disk I/O that is not ours
  void SendResyncData(const std::shared_ptr<Session>& s, int volume,
                      const protocol::BlockRequestFields& rq,
                      std::shared_ptr<storage::AlignedBuffer> buf);
  // The reply to `rq` sent from the page cache by sendfile; false when that does not
  // apply (see resync.cc), and the block is read and sent instead.
  bool SendResyncFromPageCache(const std::shared_ptr<Session>& s, Device& dev, int volume,
                               const protocol::BlockRequestFields& rq);
  // verify.cc: packets of online verify and checksum-based resync, and the peer's
  // replication state (VerifyS, paused) as connection_io.cc receives them.
  static bool IsSyncExtraPacket(const protocol::Packet& p);
  Status OnSyncExtraPacket(const std::shared_ptr<Session>& s, int volume, const Received& r);
  void OnPeerReplState(const std::shared_ptr<Session>& s, int volume, ReplState peer_repl);
  void PumpVerify(const std::shared_ptr<Session>& s, int volume);
  void BeginVerifyTarget(const std::shared_ptr<Session>& s, int volume, uint64_t start_sector);
  void OnVerifyRequest(const std::shared_ptr<Session>& s, int volume,
                       const protocol::BlockRequestFields& rq);
  void OnVerifyReply(const std::shared_ptr<Session>& s, int volume,
                     const protocol::BlockRequestFields& rp);
  void OnVerifyResult(const std::shared_ptr<Session>& s, int volume,
                      const protocol::BlockAckFields& res, bool failed);
  void VerifyBlockDone(const std::shared_ptr<Session>& s, int volume, uint64_t offset,
                       uint64_t length, bool in_sync);
  void MaybeFinishVerify(const std::shared_ptr<Session>& s, int volume);
  void UpdateVerifyStats(int volume);
  // csums.cc: the SyncTarget sends a digest of its block, the source answers
  // RsIsInSync or the data.
  void SendCsumRequest(const std::shared_ptr<Session>& s, int volume, uint64_t block_id,
                       uint64_t offset, uint64_t length);
  void OnCsumRequest(const std::shared_ptr<Session>& s, int volume,
                     const protocol::BlockRequestFields& rq);
  void OnResyncInSync(const std::shared_ptr<Session>& s, int volume,
                      const protocol::BlockAckFields& ack);

  // peer_ack.cc: peer acks. Primary: each write sent here joins the resource's
  // PeerAckTracker (JoinPeerAck returns its group's dagtag, 0 for none) and settles when
  // it leaves the transfer log (SettlePeerAck: stable with its epoch's BarrierAck, or
  // not when the session ends first); settled writes leave as PeerAck packets in send
  // order. Secondary: received writes wait for a PeerAck; nodes not in its mask, or
  // every other peer if the session ends first, get them marked.
  uint64_t JoinPeerAck(const std::shared_ptr<Session>& s, uint64_t length);
  // `on_peer`: the peer acknowledged the write and flushed its epoch (BarrierAck).
  void SettlePeerAck(uint64_t dagtag, bool on_peer);
  void NoteUnstableWrite(const std::shared_ptr<Session>& s, int volume, uint32_t seq,
                         uint64_t offset, uint64_t length);
  void OnPeerAck(const std::shared_ptr<Session>& s, const protocol::PeerAck& pa);
  void MarkUnstableWrites(const std::shared_ptr<Session>& s);
  void MarkUnstable(const std::vector<UnstableWrite>& writes, uint64_t mask, const char* why);
  // sync.cc: promoted while blocks are marked toward this (connected) peer, e.g. writes
  // of a lost Primary that not every node got: resync them from here.
  void ResyncMarkedAfterPromotion(const std::shared_ptr<Session>& s, int volume);
  // sync.cc: the node-id of a Primary peer this volume is SyncTarget of (-1: none), and
  // ending this session to retry the sync decision once that resync is over.
  int SyncTargetOfPrimary(int volume) const;
  uint64_t CurrentUuid(int volume) const;  // connection.cc: 0 without a disk
  void RetryAfterOtherResync(const std::shared_ptr<Session>& s);
  // No dial and no accepted attempt from this peer while a volume is SyncTarget of a
  // Primary (another peer). Held() lifts the hold once none is; the state engine's
  // listener (OnLocalChange) then dials at once.
  bool Held();

  PeerDevice& pd(int volume);
  std::shared_ptr<Device> device(int volume) const;
  std::string Tag() const;  // "r0 peer node1(1)" for logs

  Resource* resource_;
  int peer_id_;
  int my_id_;
  asio::io_context& io_;
  NetConfig cfg_;
  bool running_ = false;  // between Start and Stop
  bool stopped_ = false;  // Stop ran: never touch resource_ again
  std::map<std::string, std::shared_ptr<Listener>> listeners_;  // by path local address
  std::set<std::string> listen_failed_;  // local addresses we could not listen on (logged)
  std::unique_ptr<asio::steady_timer> dial_timer_;
  std::shared_ptr<Session> session_;     // handshaking or established
  std::unique_ptr<Attempt> pending_in_;  // incoming sockets waiting for their pair
  uint64_t next_session_id_ = 1;
  bool hold_ = false;        // see Held()
  int failed_attempts_ = 0;  // attempts ended before Established since the last session
  int engine_listener_ = 0;
  std::map<int, std::unique_ptr<PeerDevice>> peer_devices_;
  int corrupt_data_ = 0;  // $BSR_TEST_CORRUPT_DATA: Data packets still to damage (tests)
};

}  // namespace bsr::replication
