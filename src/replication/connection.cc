// A Connection to one peer: its net options, start and stop, sessions and the
// handshake that makes a session Established. io thread only.
#include "replication/connection.h"

#include <spdlog/spdlog.h>

#include <asio/experimental/as_tuple.hpp>
#include <cstdlib>
#include <set>

#include "protocol/auth.h"
#include "replication/connection_internal.h"
#include "replication/device.h"
#include "replication/resource.h"
#include "replication/twopc.h"

namespace bsr::replication {

using asio::experimental::as_tuple;
using protocol::SocketKind;

namespace {

Result<int64_t> OptInt(const std::map<std::string, std::string>& opts, const std::string& name,
                       int64_t def, int64_t min, int64_t max) {
  auto it = opts.find(name);
  if (it == opts.end()) return def;
  try {
    size_t pos = 0;
    int64_t v = std::stoll(it->second, &pos);
    if (pos == it->second.size() && v >= min && v <= max) return v;
  } catch (...) {
  }
  return Error(Errc::kInvalidArgument, "net option {}={}: expected an integer in {}..{}", name,
               it->second, min, max);
}

std::string Opt(const std::map<std::string, std::string>& opts, const std::string& name) {
  auto it = opts.find(name);
  return it == opts.end() ? std::string() : it->second;
}

// A size option: a bare number counts `unit` bytes; K/M/G (KiB, MiB, GiB) and s
// (sectors) suffixes give the unit explicitly. The result is in bytes.
Result<uint64_t> OptBytes(const std::map<std::string, std::string>& opts, const std::string& name,
                          uint64_t def, uint64_t unit, uint64_t max_bytes) {
  auto it = opts.find(name);
  if (it == opts.end() || it->second.empty()) return def;
  const std::string& v = it->second;
  size_t pos = 0;
  uint64_t n = 0;
  try {
    n = std::stoull(v, &pos);
  } catch (...) {
    pos = 0;
  }
  uint64_t scale = unit;
  if (pos > 0 && pos + 1 == v.size()) {
    switch (v[pos]) {
      case 'k':
      case 'K': scale = 1024; break;
      case 'm':
      case 'M': scale = 1024 * 1024; break;
      case 'g':
      case 'G': scale = 1024ull * 1024 * 1024; break;
      case 's':
      case 'S': scale = 512; break;
      default: pos = 0;
    }
  } else if (pos != v.size()) {
    pos = 0;
  }
  if (pos == 0 || v[0] == '-' || n > max_bytes / scale || n * scale > max_bytes) {
    return Error(Errc::kInvalidArgument,
                 "net option {}={}: expected a size up to {} bytes (number, K, M, G or s suffix)",
                 name, v, max_bytes);
  }
  return n * scale;
}

bool OptBool(const std::map<std::string, std::string>& opts, const std::string& name, bool def) {
  auto it = opts.find(name);
  if (it == opts.end()) return def;
  const std::string& v = it->second;
  return v.empty() || v == "yes" || v == "on" || v == "true";
}

// A fatal handshake failure: the connection goes StandAlone instead of retrying.
bool IsFatal(const Status& s) {
  return s.code() == Errc::kPermission || s.code() == Errc::kState;
}

template <typename T>
asio::awaitable<Result<T>> Expect(PacketSocket& sock, std::string_view during) {
  auto r = co_await sock.Recv();
  if (!r.ok()) co_return r.status();
  if (auto* p = std::get_if<T>(&(*r)->packet)) co_return std::move(*p);
  auto got = protocol::TypeOf((*r)->packet);
  if (got == protocol::PacketType::kAuthChallenge) {
    co_return Error(Errc::kPermission,
                    "the peer requires authentication (cram-hmac-alg) but none is configured "
                    "here (during {})",
                    during);
  }
  if (T::kType == protocol::PacketType::kAuthChallenge) {
    co_return Error(Errc::kPermission,
                    "authentication (cram-hmac-alg) is configured here but the peer sent {} "
                    "instead of a challenge",
                    protocol::PacketTypeName(got));
  }
  co_return Error(Errc::kProtocol, "expected {} during {}, got {}",
                  protocol::PacketTypeName(T::kType), during, protocol::PacketTypeName(got));
}

}  // namespace

Result<NetConfig> ParseNetConfig(const std::map<std::string, std::string>& opts) {
  NetConfig c;
  std::string proto = Opt(opts, "protocol");
  if (!proto.empty()) {
    auto p = protocol::ParseWireProtocol(proto);
    if (!p)
      return Error(Errc::kInvalidArgument, "net option protocol={}: expected A, B or C", proto);
    c.protocol = *p;
  }
  c.cram_hmac_alg = Opt(opts, "cram-hmac-alg");
  c.shared_secret = Opt(opts, "shared-secret");
  if (!c.cram_hmac_alg.empty()) BSR_RETURN_IF_ERROR(protocol::CheckHmacAlg(c.cram_hmac_alg));
  BSR_ASSIGN_OR_RETURN(int64_t ci, OptInt(opts, "connect-int", 10, 1, 120));
  BSR_ASSIGN_OR_RETURN(int64_t pi, OptInt(opts, "ping-int", 10, 1, 120));
  BSR_ASSIGN_OR_RETURN(int64_t pt, OptInt(opts, "ping-timeout", 5, 1, 300));
  BSR_ASSIGN_OR_RETURN(int64_t to, OptInt(opts, "timeout", 60, 1, 600));
  c.connect_int = std::chrono::seconds(ci);
  c.ping_int = std::chrono::seconds(pi);
  c.ping_timeout = std::chrono::milliseconds(pt * 100);
  c.timeout = std::chrono::milliseconds(to * 100);
  std::string rle = Opt(opts, "use-rle");
  c.use_rle = rle.empty() || rle == "yes" || rle == "on" || rle == "true";
  auto& o = c.options;
  o.protocol = c.protocol;
  for (auto [name, field] :
       {std::pair{"after-sb-0pri", &o.after_sb_0pri}, std::pair{"after-sb-1pri", &o.after_sb_1pri},
        std::pair{"after-sb-2pri", &o.after_sb_2pri}}) {
    std::string v = Opt(opts, name);
    if (v.empty()) continue;
    auto p = protocol::ParseAfterSbPolicy(v);
    if (!p) return Error(Errc::kInvalidArgument, "net option {}={}: unknown policy", name, v);
    *field = *p;
  }
  std::string two = Opt(opts, "allow-two-primaries");
  o.allow_two_primaries = two == "yes" || two == "on" || two == "true";
  std::string dmd = Opt(opts, "discard-my-data");
  o.discard_my_data = dmd == "yes" || dmd == "on" || dmd == "true" ||
                      (opts.count("discard-my-data") && dmd.empty());
  o.integrity_alg = Opt(opts, "data-integrity-alg");
  if (!o.integrity_alg.empty()) {
    BSR_RETURN_IF_ERROR(
        protocol::CheckDigestAlg(o.integrity_alg).WithContext("data-integrity-alg"));
  }
  o.csums_alg = Opt(opts, "csums-alg");
  o.verify_alg = Opt(opts, "verify-alg");
  BSR_ASSIGN_OR_RETURN(int64_t ko, OptInt(opts, "ko-count", 7, 0, 200));
  BSR_ASSIGN_OR_RETURN(int64_t mb, OptInt(opts, "max-buffers", 2048, 32, 131072));
  BSR_ASSIGN_OR_RETURN(int64_t me, OptInt(opts, "max-epoch-size", 2048, 1, 20000));
  BSR_ASSIGN_OR_RETURN(uint64_t sb, OptBytes(opts, "sndbuf-size", 0, 1, 10 << 20));
  BSR_ASSIGN_OR_RETURN(uint64_t rb, OptBytes(opts, "rcvbuf-size", 0, 1, 10 << 20));
  BSR_ASSIGN_OR_RETURN(uint64_t cf, OptBytes(opts, "congestion-fill", 0, 512, 10ull << 30));
  BSR_ASSIGN_OR_RETURN(int64_t ce, OptInt(opts, "congestion-extents", 6001, 7, 65536));
  c.ko_count = static_cast<int>(ko);
  c.max_buffers = static_cast<uint64_t>(mb);
  c.max_epoch_size = static_cast<uint32_t>(me);
  c.tuning.sndbuf = static_cast<int>(sb);
  c.tuning.rcvbuf = static_cast<int>(rb);
  c.tuning.cork = OptBool(opts, "tcp-cork", true);
  c.congestion_fill = cf;
  c.congestion_extents = static_cast<uint32_t>(ce);
  std::string oc = Opt(opts, "on-congestion");
  if (oc.empty() || oc == "block") {
    c.on_congestion = NetConfig::OnCongestion::kBlock;
  } else if (oc == "pull-ahead") {
    c.on_congestion = NetConfig::OnCongestion::kPullAhead;
  } else if (oc == "disconnect") {
    c.on_congestion = NetConfig::OnCongestion::kDisconnect;
  } else {
    return Error(Errc::kInvalidArgument,
                 "net option on-congestion={}: expected block, pull-ahead or disconnect", oc);
  }
  return c;
}

Connection::Connection(Resource* resource, int peer_node_id)
    : resource_(resource),
      peer_id_(peer_node_id),
      my_id_(resource->node_id()),
      io_(*resource->env().io) {
  if (const char* c = std::getenv("BSR_TEST_CORRUPT_DATA")) corrupt_data_ = std::atoi(c);
}

Connection::~Connection() {
  if (!stopped_) Stop("connection removed");
}

std::string Connection::Tag() const {
  if (stopped_) return fmt::format("peer node-id {}", peer_id_);
  auto it = resource_->peers().find(peer_id_);
  return fmt::format("{} {}(node-id {})", resource_->name(),
                     it == resource_->peers().end() ? "?" : it->second.name, peer_id_);
}

std::chrono::milliseconds Connection::HandshakeTimeout() const {
  // `timeout` is the reply timeout of established traffic and may be well below a
  // second; dialing and the handshake get at least connect-int.
  return std::max(cfg_.timeout, cfg_.connect_int);
}

bool Connection::established() const {
  return session_ && session_->established && !session_->closed;
}

bool Connection::Alive(const std::shared_ptr<Session>& s) const {
  return !stopped_ && running_ && s && !s->closed && session_ == s;
}

std::shared_ptr<Device> Connection::device(int volume) const {
  if (stopped_) return nullptr;
  return resource_->device(volume);
}

Connection::PeerDevice& Connection::pd(int volume) {
  auto& p = peer_devices_[volume];
  if (!p) {
    p = std::make_unique<PeerDevice>();
    p->volume = volume;
  }
  return *p;
}

void Connection::SetConn(ConnState c) {
  if (stopped_) return;
  Status s = resource_->engine().Change("connection",
                                        [&](ResourceState& st) {
                                          auto it = st.connections.find(peer_id_);
                                          if (it == st.connections.end()) return;
                                          it->second.conn = c;
                                          if (c != ConnState::kConnected) {
                                            it->second.peer_role = Role::kUnknown;
                                            for (auto& [vol, p] : it->second.peer_devices) {
                                              p.repl = ReplState::kOff;
                                              p.peer_disk = DiskState::kDUnknown;
                                              p.stats.rs_total_sectors = 0;
                                              p.stats.pending = 0;
                                              p.stats.unacked = 0;
                                            }
                                          }
                                        },
                                        {.internal = true});
  if (!s.ok()) spdlog::error("{}: {}", Tag(), s.message());
}

Status Connection::Start() {
  if (running_) return Status::Ok();
  auto it = resource_->peers().find(peer_id_);
  if (it == resource_->peers().end()) {
    return Error(Errc::kNotFound, "no connection to node-id {}", peer_id_);
  }
  if (it->second.paths.empty()) {
    return Error(Errc::kState, "connection to {} has no path (new-path first)", it->second.name);
  }
  BSR_ASSIGN_OR_RETURN(cfg_, ParseNetConfig(it->second.net_opts));
  if (!cfg_.cram_hmac_alg.empty() && cfg_.shared_secret.empty()) {
    return Error(Errc::kInvalidArgument, "cram-hmac-alg {} is set but shared-secret is empty",
                 cfg_.cram_hmac_alg);
  }
  std::string paths;
  for (const auto& path : it->second.paths) {
    BSR_RETURN_IF_ERROR(ParseAddress(path.local).status().WithContext("path local address"));
    BSR_RETURN_IF_ERROR(ParseAddress(path.remote).status().WithContext("path remote address"));
    paths += fmt::format("{}{} -> {}", paths.empty() ? "" : ", ", path.local, path.remote);
  }
  running_ = true;
  dial_timer_ = std::make_unique<asio::steady_timer>(io_);
  engine_listener_ = resource_->engine().Subscribe(
      [this](const ResourceState& o, const ResourceState& n) { OnLocalChange(o, n); });
  SetConn(ConnState::kConnecting);
  spdlog::info("{}: connecting (path{} {}; protocol {}{})", Tag(),
               it->second.paths.size() > 1 ? "s" : "", paths,
               protocol::WireProtocolName(cfg_.protocol),
               cfg_.cram_hmac_alg.empty() ? "" : ", cram-hmac-alg " + cfg_.cram_hmac_alg);
  // A local address that is not on this host (yet) is no error: DialLoop retries
  // listening on it every connect-int, as the dial from it.
  RegisterListeners();
  asio::co_spawn(io_, DialLoop(), asio::detached);
  return Status::Ok();
}

void Connection::Stop(std::string_view reason) {
  if (stopped_) return;
  bool was_running = running_;
  running_ = false;
  if (session_) {
    if (session_->established && session_->data) {
      protocol::Disconnect d;
      d.reason = std::string(reason);
      session_->data->SendPacket(d);
    }
    EndSession(session_, ConnState::kStandAlone, std::string(reason), false);
  }
  StopListening();
  if (dial_timer_) dial_timer_->cancel();
  if (pending_in_) {
    if (pending_in_->data) pending_in_->data->Close();
    if (pending_in_->meta) pending_in_->meta->Close();
    pending_in_.reset();
  }
  if (was_running) {
    resource_->engine().Unsubscribe(engine_listener_);
    SetConn(ConnState::kStandAlone);
    spdlog::info("{}: StandAlone ({})", Tag(), reason);
  }
  stopped_ = true;
}

void Connection::EndSession(const std::shared_ptr<Session>& s, ConnState why,
                            const std::string& reason, bool retry) {
  if (!s || s->closed) return;
  s->closed = true;
  if (s->data) s->data->Close();
  if (s->meta) s->meta->Close();
  s->ping_timer.cancel();
  s->drain_timer.cancel();
  s->handshake_timer.cancel();
  bool was_established = s->established;
  // The cause first: failing the pending writes below may answer clients at once.
  if (was_established && !stopped_) spdlog::warn("{}: connection lost: {}", Tag(), reason);
  // Writes the peer will not acknowledge now: their bits go to its bitmap slot.
  auto pending = std::move(s->pending);
  auto tl = std::move(s->tl);
  auto barriers = std::move(s->barriers);
  MarkUnstableWrites(s);  // peer_ack.cc: the lost Primary's writes not on every node
  if (session_ == s) session_.reset();
  std::map<uint64_t, std::shared_ptr<Session::PendingWrite>> unique;
  for (auto& [id, pw] : pending) {
    if (pw->parts > 0) {
      pw->parts = 0;
      if (pw->done) pw->done(false);
      pw->done = nullptr;
    }
  }
  for (auto& [nr, cbs] : barriers) {
    for (auto& cb : cbs) cb(false);
  }
  // Not stable on the peer: the other Secondaries keep tracking these writes.
  for (const auto& w : tl) SettlePeerAck(w.dagtag, false);
  if (stopped_) return;
  // Writes the peer may not have on stable storage (no BarrierAck yet): resync them.
  std::set<int> marked;
  for (auto& w : tl) {
    if (auto dev = device(w.volume)) {
      dev->SetPeerOutOfSync(peer_id_, w.offset, w.length);
      marked.insert(w.volume);
    }
  }
  // Status shows them now, not only after the next application write.
  for (int vol : marked) {
    if (auto dev = device(vol)) dev->UpdatePeerOosStats();
  }
  if (was_established) resource_->twopc().OnPeerLost(peer_id_);
  for (auto& [vol, p] : peer_devices_) {
    p->ahead = false;
    p->leaving_ahead = false;
    if (was_established && p->sync != PeerDevice::Sync::kNone) {
      spdlog::info("{}/{}: resync interrupted ({} KiB still out of sync)", Tag(), vol,
                   device(vol) ? device(vol)->OutOfSyncSectors(peer_id_) / 2 : 0);
    }
    p->ResetSync();  // deferred_marks stay for the next decision (sync.cc)
    p->have_info = false;
  }
  if (was_established) {
    if (resource_->state().role == Role::kPrimary) {
      for (auto& [vol, dev] : resource_->devices()) dev->OnPeerLost(peer_id_);
    }
  } else if (retry) {
    spdlog::debug("{}: attempt failed: {}", Tag(), reason);
  }
  if (!running_) return;
  if (!retry) {
    spdlog::error("{}: {}; going StandAlone", Tag(), reason);
    running_ = false;
    StopListening();
    if (dial_timer_) dial_timer_->cancel();
    resource_->engine().Unsubscribe(engine_listener_);
    SetConn(ConnState::kStandAlone);
    return;
  }
  if (was_established) SetConn(why);
  SetConn(ConnState::kConnecting);
  // A connection that broke is redialed at once, and so is a first failed attempt (two
  // nodes dialing at the same moment); attempts that keep failing wait connect-int
  // (e.g. a peer that refuses them while it holds this connection, Held()).
  failed_attempts_ = was_established ? 0 : failed_attempts_ + 1;
  if (dial_timer_ && !Held() && failed_attempts_ <= 1) dial_timer_->cancel();  // redial now
}

// ---- Handshake -------------------------------------------------------------------

asio::awaitable<void> Connection::RunSession(std::shared_ptr<Session> s) {
  auto self = shared_from_this();
  s->handshake_timer.expires_after(HandshakeTimeout());
  s->handshake_timer.async_wait([s](std::error_code ec) {
    if (ec) return;
    s->data->Close();
    s->meta->Close();
  });
  Status st = co_await Handshake(s);
  s->handshake_timer.cancel();
  if (!Alive(s)) co_return;
  if (!st.ok()) {
    bool fatal = IsFatal(st);
    ConnState why =
        st.code() == Errc::kProtocol ? ConnState::kProtocolError : ConnState::kNetworkFailure;
    if (fatal) spdlog::error("{}: {}", Tag(), st.message());
    EndSession(s, why, st.message(), !fatal);
    co_return;
  }
  Established(s);
}

asio::awaitable<Status> Connection::SocketHandshake(std::shared_ptr<Session> s,
                                                    PacketSocket& sock) {
  if (s->dialer) {
    auto reply = co_await Expect<protocol::Preamble>(sock, "preamble reply");
    if (!reply.ok()) co_return reply.status();
    Status chk = protocol::CheckPreamble(*reply, resource_->name(), my_id_, peer_id_, s->cookie);
    if (!chk.ok()) co_return chk;
  }
  co_return Status::Ok();
}

asio::awaitable<Status> Connection::Handshake(std::shared_ptr<Session> s) {
  auto self = shared_from_this();
  PacketSocket* socks[2] = {s->data.get(), s->meta.get()};
  for (auto* sock : socks) {
    Status st = co_await SocketHandshake(s, *sock);
    if (!st.ok()) co_return st;
  }
  protocol::Features local;
  // Tests play an older peer by offering fewer feature bits ($BSR_TEST_FEATURE_BITS).
  if (const char* bits = std::getenv("BSR_TEST_FEATURE_BITS")) {
    local.feature_bits = std::strtoull(bits, nullptr, 0) & protocol::kFeatureAll;
  }
  for (auto* sock : socks) sock->SendPacket(local);
  for (auto* sock : socks) {
    auto f = co_await Expect<protocol::Features>(*sock, "feature negotiation");
    if (!f.ok()) co_return f.status();
    auto n = protocol::NegotiateFeatures(local, *f);
    if (!n.ok()) co_return Status(Errc::kState, n.status().message());
    s->features = *n;
    // Frames after the peer's Features may use what both offered.
    sock->SetBlockOutsideCrc(n->feature_bits & protocol::kFeatureBlockOutsideCrc);
  }
  spdlog::info("{}: protocol {}, feature bits 0x{:x} (ours 0x{:x})", Tag(),
               s->features.protocol_version, s->features.feature_bits, local.feature_bits);
  if (!Alive(s)) co_return Error(Errc::kIo, "stopped");
  // Authentication, both ways on each socket at once.
  const std::string& alg = cfg_.cram_hmac_alg;
  if (!alg.empty()) {
    for (int i = 0; i < 2; ++i) {
      auto ch = protocol::MakeChallenge();
      if (!ch.ok()) co_return ch.status();
      s->challenge[i] = *ch;
      protocol::AuthChallenge c;
      c.alg = alg;
      c.challenge = *ch;
      socks[i]->SendPacket(c);
    }
    for (int i = 0; i < 2; ++i) {
      auto c = co_await Expect<protocol::AuthChallenge>(*socks[i], "authentication");
      if (!c.ok()) co_return c.status();
      Status chk = protocol::CheckPeerChallenge(alg, s->challenge[i], *c);
      if (!chk.ok()) co_return Status(Errc::kPermission, chk.message());
      auto resp = protocol::ComputeAuthResponse(alg, cfg_.shared_secret, c->challenge,
                                                static_cast<uint16_t>(my_id_));
      if (!resp.ok()) co_return resp.status();
      protocol::AuthResponse r;
      r.digest = *resp;
      socks[i]->SendPacket(r);
    }
    for (int i = 0; i < 2; ++i) {
      auto r = co_await Expect<protocol::AuthResponse>(*socks[i], "authentication");
      if (!r.ok()) co_return r.status();
      Status v = protocol::VerifyAuthResponse(alg, cfg_.shared_secret, s->challenge[i],
                                              static_cast<uint16_t>(peer_id_), r->digest);
      protocol::AuthResult res;
      res.accepted = v.ok();
      res.message = v.ok() ? "" : v.message();
      socks[i]->SendPacket(res);
      if (!v.ok()) co_return Status(Errc::kPermission, v.message());
    }
    for (int i = 0; i < 2; ++i) {
      auto r = co_await Expect<protocol::AuthResult>(*socks[i], "authentication");
      if (!r.ok()) co_return r.status();
      if (!r->accepted) {
        co_return Error(Errc::kPermission, "the peer refused our authentication: {}", r->message);
      }
    }
    spdlog::info("{}: peer authenticated ({})", Tag(), alg);
  }
  // Net options.
  s->data->SendPacket(cfg_.options);
  auto po = co_await Expect<protocol::ProtocolOptions>(*s->data, "net option exchange");
  if (!po.ok()) co_return po.status();
  Status compat = protocol::CheckCompatible(cfg_.options, *po);
  if (!compat.ok()) co_return Status(Errc::kState, compat.message());
  if (!Alive(s)) co_return Error(Errc::kIo, "stopped");
  // Per volume: sizes, UUIDs, state.
  std::vector<int> volumes;
  for (auto& [vol, dev] : resource_->devices()) {
    volumes.push_back(vol);
    SendSizes(s, vol);
    SendUuids(s, vol);
    SendState(s, vol);
  }
  for (size_t i = 0; i < volumes.size() * 3; ++i) {
    auto r = co_await s->data->Recv();
    if (!r.ok()) co_return r.status();
    if (!Alive(s)) co_return Error(Errc::kIo, "stopped");
    int vol = (*r)->frame.volume();
    if (!resource_->device(vol)) {
      co_return Error(Errc::kState, "the peer has volume {} which this node does not have", vol);
    }
    auto& p = pd(vol);
    if (auto* sz = std::get_if<protocol::Sizes>(&(*r)->packet)) {
      p.sizes = *sz;
    } else if (auto* u = std::get_if<protocol::Uuids>(&(*r)->packet)) {
      p.uuids = *u;
    } else if (auto* stp = std::get_if<protocol::StatePacket>(&(*r)->packet)) {
      p.state = *stp;
      p.have_info = true;
    } else {
      co_return Error(Errc::kProtocol, "expected Sizes/Uuids/State, got {}",
                      protocol::PacketTypeName(protocol::TypeOf((*r)->packet)));
    }
  }
  co_return Status::Ok();
}

uint64_t Connection::CurrentUuid(int volume) const {
  auto dev = device(volume);
  return dev && dev->attached() ? dev->GetUuids().current : 0;
}

void Connection::Established(std::shared_ptr<Session> s) {
  // A new current UUID made while the handshake ran (a Primary that lost another peer,
  // new-current-uuid) did not reach this peer, which only gets Uuids once Established:
  // both sides would decide on different generations. Try again at once instead.
  for (const auto& [vol, sent] : s->sent_current) {
    if (CurrentUuid(vol) != sent) {
      spdlog::info("{}/{}: our current UUID changed during the handshake; connecting again", Tag(),
                   vol);
      EndSession(s, ConnState::kNetworkFailure,
                 fmt::format("volume {}: our current UUID changed during the handshake", vol),
                 true);
      return;
    }
  }
  s->established = true;
  const auto& st0 = resource_->state();
  Status ch =
      resource_->engine().Change("connection",
                                 [&](ResourceState& st) {
                                   auto it = st.connections.find(peer_id_);
                                   if (it == st.connections.end()) return;
                                   auto& c = it->second;
                                   c.conn = ConnState::kConnected;
                                   for (auto& [vol, p] : c.peer_devices) {
                                     auto pit = peer_devices_.find(vol);
                                     if (pit == peer_devices_.end() || !pit->second->have_info)
                                       continue;
                                     const auto& ps = pit->second->state;
                                     c.peer_role = ps.role;
                                     p.peer_disk = ps.disk;
                                     p.repl = ReplState::kEstablished;
                                   }
                                   if (st0.devices.empty()) c.peer_role = Role::kUnknown;
                                 },
                                 {.internal = true});
  if (!ch.ok()) {
    EndSession(s, ConnState::kStandAlone, ch.message(), false);
    return;
  }
  spdlog::info("{}: Connected ({} socket {}, {} socket {}; peer role {})", Tag(),
               s->dialer ? "dialed" : "accepted", s->data->remote(), "meta", s->meta->remote(),
               Name(resource_->state().connections.at(peer_id_).peer_role));
  for (auto& entry : peer_devices_) {
    int vol = entry.first;  // a plain variable: clang 14 cannot capture a structured binding
    auto& p = entry.second;
    if (!p->have_info) continue;
    uint64_t agreed = protocol::AgreedSize(
        [&] {
          protocol::Sizes mine;
          auto dev = device(vol);
          mine.usable_size = dev ? dev->size_bytes() : 0;
          return mine;
        }(),
        p->sizes);
    if (device(vol) && agreed < device(vol)->size_bytes()) {
      spdlog::warn("{}/{}: the peer's disk is smaller: agreed size {} bytes", Tag(), vol, agreed);
    }
  }
  // Decide before the receivers run: co_spawn may start them inline, and they
  // could otherwise act on the peer's sync start first.
  for (auto& [vol, p] : peer_devices_) {
    if (Alive(s) && p->have_info) DecideAndStartSync(s, vol);
  }
  if (!Alive(s)) return;
  asio::co_spawn(io_, DataReceiver(s), asio::detached);
  asio::co_spawn(io_, MetaReceiver(s), asio::detached);
  asio::co_spawn(io_, PingLoop(s), asio::detached);
}

Status Connection::ApplyNetOptions(const std::map<std::string, std::string>& opts) {
  BSR_ASSIGN_OR_RETURN(NetConfig n, ParseNetConfig(opts));
  if (!n.cram_hmac_alg.empty() && n.shared_secret.empty()) {
    return Error(Errc::kInvalidArgument, "cram-hmac-alg {} needs a shared-secret", n.cram_hmac_alg);
  }
  auto s = session_;
  if (s && s->established && !s->closed) {
    // What the handshake agreed on (or checked for compatibility) stays as it is until
    // the next handshake: DRBD refuses these on a connected peer too.
    const auto& o = cfg_.options;
    std::string fixed;
    auto add = [&fixed](std::string_view name) {
      if (!fixed.empty()) fixed += ", ";
      fixed += name;
    };
    if (n.protocol != cfg_.protocol) add("protocol");
    if (n.cram_hmac_alg != cfg_.cram_hmac_alg) add("cram-hmac-alg");
    if (n.shared_secret != cfg_.shared_secret) add("shared-secret");
    if (n.options.after_sb_0pri != o.after_sb_0pri) add("after-sb-0pri");
    if (n.options.after_sb_1pri != o.after_sb_1pri) add("after-sb-1pri");
    if (n.options.after_sb_2pri != o.after_sb_2pri) add("after-sb-2pri");
    if (n.options.allow_two_primaries != o.allow_two_primaries) {
      add("allow-two-primaries");
    }
    if (n.options.integrity_alg != o.integrity_alg) add("data-integrity-alg");
    if (n.options.csums_alg != o.csums_alg) add("csums-alg");
    if (n.options.verify_alg != o.verify_alg) add("verify-alg");
    if (!fixed.empty()) {
      return Error(Errc::kState,
                   "{}: net-options {}: cannot change these network options while connected "
                   "(the peer agreed on them in the handshake); disconnect, change them while "
                   "StandAlone, then connect",
                   Tag(), fixed);
    }
  }
  bool retune = n.tuning.sndbuf != cfg_.tuning.sndbuf || n.tuning.rcvbuf != cfg_.tuning.rcvbuf ||
                n.tuning.cork != cfg_.tuning.cork;
  // While Connected the handshake-agreed part is unchanged (checked above); otherwise
  // the next handshake sends the new one.
  cfg_ = std::move(n);
  if (retune && s && !s->closed) {
    for (auto* sock : {s->data.get(), s->meta.get()}) {
      if (!sock) continue;
      if (Status t = sock->Tune(cfg_.tuning); !t.ok()) spdlog::warn("{}: {}", Tag(), t.message());
    }
  }
  spdlog::info(
      "{}: net options changed: ping-int {} ms, ping-timeout {} ms, timeout {} ms, "
      "ko-count {}, max-buffers {}, max-epoch-size {}",
      Tag(), cfg_.ping_int.count(), cfg_.ping_timeout.count(), cfg_.timeout.count(), cfg_.ko_count,
      cfg_.max_buffers, cfg_.max_epoch_size);
  return Status::Ok();
}

}  // namespace bsr::replication
