#include "protocol/handshake_packets.h"

#include <algorithm>

#include "protocol/codec_util.h"

namespace bsr::protocol {

using internal::FinishDecode;
using internal::GetBlob16;
using internal::Malformed;
using internal::PutBlob16;

namespace {

Status CheckNodeId(PacketType type, std::string_view field, uint32_t id) {
  if (id >= kMaxNodes) return Malformed(type, "{} {} out of range 0..{}", field, id, kMaxNodes - 1);
  return Status::Ok();
}

Status CheckEnum(PacketType type, std::string_view field, uint8_t v, uint8_t count,
                 uint8_t first = 0) {
  if (v < first || v >= count) return Malformed(type, "invalid {} value {}", field, v);
  return Status::Ok();
}

Status CheckZero(PacketType type, uint64_t reserved) {
  if (reserved != 0) return Malformed(type, "reserved field is not zero");
  return Status::Ok();
}

}  // namespace

// ---- Preamble ----

void Preamble::Encode(ByteWriter& w) const {
  w.U8(static_cast<uint8_t>(socket));
  w.U8(flags);
  w.U16(sender_node_id);
  w.U16(receiver_node_id);
  w.U16(0);
  w.U64(cookie);
  w.String(resource);
}

Result<Preamble> Preamble::Decode(std::span<const uint8_t> payload) {
  ByteReader r(payload);
  Preamble p;
  uint8_t socket = r.U8();
  p.flags = r.U8();
  p.sender_node_id = r.U16();
  p.receiver_node_id = r.U16();
  uint16_t reserved = r.U16();
  p.cookie = r.U64();
  p.resource = r.String(kMaxResourceName);
  BSR_RETURN_IF_ERROR(FinishDecode(r, kType, payload.size()));
  BSR_RETURN_IF_ERROR(CheckZero(kType, reserved));
  if (socket != static_cast<uint8_t>(SocketKind::kData) &&
      socket != static_cast<uint8_t>(SocketKind::kMeta)) {
    return Malformed(kType, "socket kind {} is neither data (1) nor meta (2)", socket);
  }
  p.socket = static_cast<SocketKind>(socket);
  if (p.flags & ~kPreambleReply) return Malformed(kType, "unknown flags 0x{:02x}", p.flags);
  BSR_RETURN_IF_ERROR(CheckNodeId(kType, "sender node-id", p.sender_node_id));
  BSR_RETURN_IF_ERROR(CheckNodeId(kType, "receiver node-id", p.receiver_node_id));
  if (p.sender_node_id == p.receiver_node_id) {
    return Malformed(kType, "sender and receiver have the same node-id {}", p.sender_node_id);
  }
  if (p.cookie == 0) return Malformed(kType, "connection cookie is zero");
  if (p.resource.empty()) return Malformed(kType, "resource name is empty");
  return p;
}

Status CheckPreamble(const Preamble& got, std::string_view resource, uint16_t local_node_id,
                     uint16_t peer_node_id, std::optional<uint64_t> expect_reply_cookie) {
  if (got.resource != resource) {
    return Error(Errc::kProtocol, "preamble names resource '{}', this connection serves '{}'",
                 got.resource, resource);
  }
  if (got.receiver_node_id != local_node_id) {
    return Error(Errc::kProtocol, "preamble is addressed to node-id {}, this is node-id {}",
                 got.receiver_node_id, local_node_id);
  }
  if (got.sender_node_id != peer_node_id) {
    return Error(Errc::kProtocol, "preamble comes from node-id {}, expected peer node-id {}",
                 got.sender_node_id, peer_node_id);
  }
  bool is_reply = got.flags & kPreambleReply;
  if (expect_reply_cookie.has_value()) {
    if (!is_reply) return Error(Errc::kProtocol, "expected a preamble reply, got a dial preamble");
    if (got.cookie != *expect_reply_cookie) {
      return Error(Errc::kProtocol,
                   "preamble reply carries cookie 0x{:016x}, this dial attempt is 0x{:016x}",
                   got.cookie, *expect_reply_cookie);
    }
  } else if (is_reply) {
    return Error(Errc::kProtocol, "got a preamble reply on an accepted socket");
  }
  return Status::Ok();
}

// ---- Features ----

void Features::Encode(ByteWriter& w) const {
  w.U32(protocol_min);
  w.U32(protocol_max);
  w.U64(feature_bits);
}

Result<Features> Features::Decode(std::span<const uint8_t> payload) {
  ByteReader r(payload);
  Features f;
  f.protocol_min = r.U32();
  f.protocol_max = r.U32();
  f.feature_bits = r.U64();
  BSR_RETURN_IF_ERROR(FinishDecode(r, kType, payload.size()));
  if (f.protocol_min == 0 || f.protocol_min > f.protocol_max) {
    return Malformed(kType, "invalid protocol version range {}..{}", f.protocol_min,
                     f.protocol_max);
  }
  return f;
}

Result<NegotiatedFeatures> NegotiateFeatures(const Features& local, const Features& peer) {
  uint32_t low = std::max(local.protocol_min, peer.protocol_min);
  uint32_t high = std::min(local.protocol_max, peer.protocol_max);
  if (low > high) {
    return Error(Errc::kProtocol,
                 "no common protocol version: this node speaks {}..{}, the peer {}..{}",
                 local.protocol_min, local.protocol_max, peer.protocol_min, peer.protocol_max);
  }
  return NegotiatedFeatures{high, local.feature_bits & peer.feature_bits};
}

// ---- Auth ----

void AuthChallenge::Encode(ByteWriter& w) const {
  w.String(alg);
  PutBlob16(w, challenge);
}

Result<AuthChallenge> AuthChallenge::Decode(std::span<const uint8_t> payload) {
  ByteReader r(payload);
  AuthChallenge c;
  c.alg = r.String(kMaxAlgName);
  c.challenge = GetBlob16(r, kMaxChallengeSize);
  BSR_RETURN_IF_ERROR(FinishDecode(r, kType, payload.size()));
  if (c.alg.empty()) return Malformed(kType, "cram-hmac-alg name is empty");
  if (c.challenge.size() < kMinChallengeSize) {
    return Malformed(kType, "challenge of {} bytes is shorter than {}", c.challenge.size(),
                     kMinChallengeSize);
  }
  return c;
}

void AuthResponse::Encode(ByteWriter& w) const {
  PutBlob16(w, digest);
}

Result<AuthResponse> AuthResponse::Decode(std::span<const uint8_t> payload) {
  ByteReader r(payload);
  AuthResponse a;
  a.digest = GetBlob16(r, kMaxDigestSize);
  BSR_RETURN_IF_ERROR(FinishDecode(r, kType, payload.size()));
  if (a.digest.empty()) return Malformed(kType, "empty digest");
  return a;
}

void AuthResult::Encode(ByteWriter& w) const {
  w.U8(accepted ? 1 : 0);
  w.String(message);
}

Result<AuthResult> AuthResult::Decode(std::span<const uint8_t> payload) {
  ByteReader r(payload);
  AuthResult a;
  uint8_t accepted = r.U8();
  a.message = r.String(kMaxReason);
  BSR_RETURN_IF_ERROR(FinishDecode(r, kType, payload.size()));
  if (accepted > 1) return Malformed(kType, "accepted flag is {}, not 0 or 1", accepted);
  a.accepted = accepted == 1;
  return a;
}

// ---- ProtocolOptions ----

namespace {
constexpr uint8_t kOptTwoPrimaries = 1u << 0;
constexpr uint8_t kOptDiscardMyData = 1u << 1;
}  // namespace

void ProtocolOptions::Encode(ByteWriter& w) const {
  w.U8(static_cast<uint8_t>(protocol));
  w.U8(static_cast<uint8_t>(after_sb_0pri));
  w.U8(static_cast<uint8_t>(after_sb_1pri));
  w.U8(static_cast<uint8_t>(after_sb_2pri));
  w.U8((allow_two_primaries ? kOptTwoPrimaries : 0) | (discard_my_data ? kOptDiscardMyData : 0));
  w.Zeros(3);
  w.String(integrity_alg);
  w.String(csums_alg);
  w.String(verify_alg);
}

Result<ProtocolOptions> ProtocolOptions::Decode(std::span<const uint8_t> payload) {
  ByteReader r(payload);
  ProtocolOptions o;
  uint8_t proto = r.U8();
  uint8_t sb0 = r.U8();
  uint8_t sb1 = r.U8();
  uint8_t sb2 = r.U8();
  uint8_t flags = r.U8();
  uint32_t reserved = uint32_t{r.U8()} | r.U16();
  o.integrity_alg = r.String(kMaxAlgName);
  o.csums_alg = r.String(kMaxAlgName);
  o.verify_alg = r.String(kMaxAlgName);
  BSR_RETURN_IF_ERROR(FinishDecode(r, kType, payload.size()));
  BSR_RETURN_IF_ERROR(CheckZero(kType, reserved));
  BSR_RETURN_IF_ERROR(CheckEnum(kType, "protocol", proto, 4, 1));
  BSR_RETURN_IF_ERROR(CheckEnum(kType, "after-sb-0pri", sb0, kAfterSbPolicyCount));
  BSR_RETURN_IF_ERROR(CheckEnum(kType, "after-sb-1pri", sb1, kAfterSbPolicyCount));
  BSR_RETURN_IF_ERROR(CheckEnum(kType, "after-sb-2pri", sb2, kAfterSbPolicyCount));
  if (flags & ~(kOptTwoPrimaries | kOptDiscardMyData)) {
    return Malformed(kType, "unknown option flags 0x{:02x}", flags);
  }
  o.protocol = static_cast<WireProtocol>(proto);
  o.after_sb_0pri = static_cast<AfterSbPolicy>(sb0);
  o.after_sb_1pri = static_cast<AfterSbPolicy>(sb1);
  o.after_sb_2pri = static_cast<AfterSbPolicy>(sb2);
  o.allow_two_primaries = flags & kOptTwoPrimaries;
  o.discard_my_data = flags & kOptDiscardMyData;
  return o;
}

namespace {

// The peer's "discard-local" means "discard the peer's data" = our discard-remote.
AfterSbPolicy Mirror(AfterSbPolicy p) {
  if (p == AfterSbPolicy::kDiscardLocal) return AfterSbPolicy::kDiscardRemote;
  if (p == AfterSbPolicy::kDiscardRemote) return AfterSbPolicy::kDiscardLocal;
  return p;
}

std::string_view AlgOrNone(const std::string& alg) {
  return alg.empty() ? std::string_view("(none)") : std::string_view(alg);
}

Status Differs(std::string_view option, std::string_view here, std::string_view peer) {
  return Error(Errc::kProtocol, "incompatible net options: {} is '{}' here but '{}' on the peer",
               option, here, peer);
}

}  // namespace

Status CheckCompatible(const ProtocolOptions& local, const ProtocolOptions& peer) {
  if (local.protocol != peer.protocol) {
    return Differs("protocol", WireProtocolName(local.protocol), WireProtocolName(peer.protocol));
  }
  const std::pair<std::string_view, AfterSbPolicy ProtocolOptions::*> policies[] = {
      {"after-sb-0pri", &ProtocolOptions::after_sb_0pri},
      {"after-sb-1pri", &ProtocolOptions::after_sb_1pri},
      {"after-sb-2pri", &ProtocolOptions::after_sb_2pri},
  };
  for (const auto& [name, field] : policies) {
    if (local.*field != Mirror(peer.*field)) {
      return Differs(name, AfterSbPolicyName(local.*field), AfterSbPolicyName(peer.*field));
    }
  }
  if (local.allow_two_primaries != peer.allow_two_primaries) {
    return Differs("allow-two-primaries", local.allow_two_primaries ? "yes" : "no",
                   peer.allow_two_primaries ? "yes" : "no");
  }
  if (local.discard_my_data && peer.discard_my_data) {
    return Error(Errc::kProtocol,
                 "incompatible net options: discard-my-data is set on both this node and the "
                 "peer; at most one side may discard its data");
  }
  if (local.integrity_alg != peer.integrity_alg) {
    return Differs("data-integrity-alg", AlgOrNone(local.integrity_alg),
                   AlgOrNone(peer.integrity_alg));
  }
  if (local.csums_alg != peer.csums_alg) {
    return Differs("csums-alg", AlgOrNone(local.csums_alg), AlgOrNone(peer.csums_alg));
  }
  if (local.verify_alg != peer.verify_alg) {
    return Differs("verify-alg", AlgOrNone(local.verify_alg), AlgOrNone(peer.verify_alg));
  }
  return Status::Ok();
}

// ---- Sizes ----

void Sizes::Encode(ByteWriter& w) const {
  w.U64(backing_size);
  w.U64(usable_size);
  w.U64(requested_size);
  w.U64(current_size);
  w.U32(max_bio_size);
  w.U32(flags);
}

Result<Sizes> Sizes::Decode(std::span<const uint8_t> payload) {
  ByteReader r(payload);
  Sizes s;
  s.backing_size = r.U64();
  s.usable_size = r.U64();
  s.requested_size = r.U64();
  s.current_size = r.U64();
  s.max_bio_size = r.U32();
  s.flags = r.U32();
  BSR_RETURN_IF_ERROR(FinishDecode(r, kType, payload.size()));
  if (s.usable_size > s.backing_size) {
    return Malformed(kType, "usable size {} exceeds backing size {}", s.usable_size,
                     s.backing_size);
  }
  if (s.max_bio_size < 512 || s.max_bio_size > kMaxDataSize) {
    return Malformed(kType, "max bio size {} outside 512..{}", s.max_bio_size, kMaxDataSize);
  }
  return s;
}

uint64_t AgreedSize(const Sizes& local, const Sizes& peer) {
  uint64_t size = 0;
  for (uint64_t v :
       {local.usable_size, local.requested_size, peer.usable_size, peer.requested_size}) {
    if (v != 0 && (size == 0 || v < size)) size = v;
  }
  return size;
}

// ---- Uuids ----

void Uuids::Encode(ByteWriter& w) const {
  w.U64(current);
  w.U64(dirty_bits);
  w.U64(flags);
  w.U16(static_cast<uint16_t>(bitmap.size()));
  w.U16(static_cast<uint16_t>(history.size()));
  w.U32(0);
  for (const auto& b : bitmap) {
    w.U16(b.node_id);
    w.U64(b.uuid);
  }
  for (uint64_t h : history) w.U64(h);
}

Result<Uuids> Uuids::Decode(std::span<const uint8_t> payload) {
  ByteReader r(payload);
  Uuids u;
  u.current = r.U64();
  u.dirty_bits = r.U64();
  u.flags = r.U64();
  uint16_t nbitmap = r.U16();
  uint16_t nhistory = r.U16();
  uint32_t reserved = r.U32();
  if (r.ok() && nbitmap > kMaxNodes)
    return Malformed(kType, "{} bitmap UUIDs (max {})", nbitmap, kMaxNodes);
  if (r.ok() && nhistory > kMaxUuidHistory) {
    return Malformed(kType, "{} history UUIDs (max {})", nhistory, kMaxUuidHistory);
  }
  uint32_t seen = 0;
  for (uint16_t i = 0; i < nbitmap && r.ok(); ++i) {
    BitmapUuid b;
    b.node_id = r.U16();
    b.uuid = r.U64();
    if (!r.ok()) break;
    BSR_RETURN_IF_ERROR(CheckNodeId(kType, "bitmap UUID node-id", b.node_id));
    if (seen & (1u << b.node_id)) {
      return Malformed(kType, "node-id {} has two bitmap UUIDs", b.node_id);
    }
    seen |= 1u << b.node_id;
    u.bitmap.push_back(b);
  }
  for (uint16_t i = 0; i < nhistory && r.ok(); ++i) u.history.push_back(r.U64());
  BSR_RETURN_IF_ERROR(FinishDecode(r, kType, payload.size()));
  BSR_RETURN_IF_ERROR(CheckZero(kType, reserved));
  return u;
}

// ---- State ----

void StatePacket::Encode(ByteWriter& w) const {
  w.U8(static_cast<uint8_t>(role));
  w.U8(static_cast<uint8_t>(disk));
  w.U8(static_cast<uint8_t>(peer_disk));
  w.U8(static_cast<uint8_t>(conn));
  w.U8(static_cast<uint8_t>(repl));
  w.U8(susp);
  w.U16(0);
}

Result<StatePacket> StatePacket::Decode(std::span<const uint8_t> payload) {
  ByteReader r(payload);
  uint8_t role = r.U8(), disk = r.U8(), peer_disk = r.U8(), conn = r.U8(), repl = r.U8();
  StatePacket s;
  s.susp = r.U8();
  uint16_t reserved = r.U16();
  BSR_RETURN_IF_ERROR(FinishDecode(r, kType, payload.size()));
  BSR_RETURN_IF_ERROR(CheckZero(kType, reserved));
  BSR_RETURN_IF_ERROR(CheckEnum(kType, "role", role, kRoleCount));
  BSR_RETURN_IF_ERROR(CheckEnum(kType, "disk state", disk, kDiskStateCount));
  BSR_RETURN_IF_ERROR(CheckEnum(kType, "peer disk state", peer_disk, kDiskStateCount));
  BSR_RETURN_IF_ERROR(CheckEnum(kType, "connection state", conn, kConnStateCount));
  BSR_RETURN_IF_ERROR(CheckEnum(kType, "replication state", repl, kReplStateCount));
  if (s.susp & ~(kSuspUser | kSuspFencing | kSuspNoData)) {
    return Malformed(kType, "unknown suspend bits 0x{:02x}", s.susp);
  }
  s.role = static_cast<Role>(role);
  s.disk = static_cast<DiskState>(disk);
  s.peer_disk = static_cast<DiskState>(peer_disk);
  s.conn = static_cast<ConnState>(conn);
  s.repl = static_cast<ReplState>(repl);
  return s;
}

// ---- Two-phase state change ----

std::string_view StateChangeKindName(StateChangeKind kind) {
  static constexpr std::string_view kNames[] = {"generic",    "promote", "demote", "connect",
                                                "disconnect", "attach",  "detach", "resize"};
  auto i = static_cast<uint8_t>(kind);
  return i < kStateChangeKindCount ? kNames[i] : "invalid";
}

std::string_view TwoPcVoteName(TwoPcVote vote) {
  switch (vote) {
    case TwoPcVote::kYes: return "yes";
    case TwoPcVote::kNo: return "no";
    case TwoPcVote::kRetry: return "retry";
  }
  return "invalid";
}

void StateChangeRequest::Encode(ByteWriter& w) const {
  w.U32(tid);
  w.U16(initiator_node_id);
  w.U16(target_node_id);
  w.U64(reach_mask);
  w.U8(static_cast<uint8_t>(kind));
  w.U8(mask);
  w.U8(flags);
  w.U8(static_cast<uint8_t>(role));
  w.U8(static_cast<uint8_t>(disk));
  w.U8(static_cast<uint8_t>(peer_disk));
  w.U8(static_cast<uint8_t>(conn));
  w.U8(static_cast<uint8_t>(repl));
  w.U64(new_size);
}

Result<StateChangeRequest> StateChangeRequest::Decode(std::span<const uint8_t> payload) {
  ByteReader r(payload);
  StateChangeRequest q;
  q.tid = r.U32();
  q.initiator_node_id = r.U16();
  q.target_node_id = r.U16();
  q.reach_mask = r.U64();
  uint8_t kind = r.U8();
  q.mask = r.U8();
  q.flags = r.U8();
  uint8_t role = r.U8(), disk = r.U8(), peer_disk = r.U8(), conn = r.U8(), repl = r.U8();
  q.new_size = r.U64();
  BSR_RETURN_IF_ERROR(FinishDecode(r, kType, payload.size()));
  BSR_RETURN_IF_ERROR(CheckNodeId(kType, "initiator node-id", q.initiator_node_id));
  if (q.target_node_id != kAllNodes) {
    BSR_RETURN_IF_ERROR(CheckNodeId(kType, "target node-id", q.target_node_id));
  }
  BSR_RETURN_IF_ERROR(CheckEnum(kType, "change kind", kind, kStateChangeKindCount));
  if (q.mask & ~kMaskAll) return Malformed(kType, "unknown state mask bits 0x{:02x}", q.mask);
  if (q.flags & ~kChangeForce) return Malformed(kType, "unknown flags 0x{:02x}", q.flags);
  BSR_RETURN_IF_ERROR(CheckEnum(kType, "role", role, kRoleCount));
  BSR_RETURN_IF_ERROR(CheckEnum(kType, "disk state", disk, kDiskStateCount));
  BSR_RETURN_IF_ERROR(CheckEnum(kType, "peer disk state", peer_disk, kDiskStateCount));
  BSR_RETURN_IF_ERROR(CheckEnum(kType, "connection state", conn, kConnStateCount));
  BSR_RETURN_IF_ERROR(CheckEnum(kType, "replication state", repl, kReplStateCount));
  q.kind = static_cast<StateChangeKind>(kind);
  q.role = static_cast<Role>(role);
  q.disk = static_cast<DiskState>(disk);
  q.peer_disk = static_cast<DiskState>(peer_disk);
  q.conn = static_cast<ConnState>(conn);
  q.repl = static_cast<ReplState>(repl);
  return q;
}

void StateChangeReply::Encode(ByteWriter& w) const {
  w.U32(tid);
  w.U8(static_cast<uint8_t>(vote));
  w.Zeros(3);
  w.U64(reachable_nodes);
  w.U64(primary_nodes);
  w.String(reason);
}

Result<StateChangeReply> StateChangeReply::Decode(std::span<const uint8_t> payload) {
  ByteReader r(payload);
  StateChangeReply p;
  p.tid = r.U32();
  uint8_t vote = r.U8();
  uint32_t reserved = uint32_t{r.U8()} | r.U16();
  p.reachable_nodes = r.U64();
  p.primary_nodes = r.U64();
  p.reason = r.String(kMaxReason);
  BSR_RETURN_IF_ERROR(FinishDecode(r, kType, payload.size()));
  BSR_RETURN_IF_ERROR(CheckZero(kType, reserved));
  BSR_RETURN_IF_ERROR(CheckEnum(kType, "vote", vote, 4, 1));
  p.vote = static_cast<TwoPcVote>(vote);
  return p;
}

void TwoPcDecisionFields::Encode(ByteWriter& w) const {
  w.U32(tid);
  w.U16(initiator_node_id);
  w.U16(0);
  w.U64(primary_nodes);
}

Status DecodeTwoPcDecision(std::span<const uint8_t> payload, PacketType type,
                           TwoPcDecisionFields* out) {
  ByteReader r(payload);
  out->tid = r.U32();
  out->initiator_node_id = r.U16();
  uint16_t reserved = r.U16();
  out->primary_nodes = r.U64();
  BSR_RETURN_IF_ERROR(FinishDecode(r, type, payload.size()));
  BSR_RETURN_IF_ERROR(CheckZero(type, reserved));
  return CheckNodeId(type, "initiator node-id", out->initiator_node_id);
}

// ---- Disconnect ----

void Disconnect::Encode(ByteWriter& w) const {
  w.String(reason);
}

Result<Disconnect> Disconnect::Decode(std::span<const uint8_t> payload) {
  ByteReader r(payload);
  Disconnect d;
  d.reason = r.String(kMaxReason);
  BSR_RETURN_IF_ERROR(FinishDecode(r, kType, payload.size()));
  return d;
}

// ---- Duplicate connections ----

DuplicateDecision ResolveDuplicate(const DialAttempt& existing, const DialAttempt& incoming) {
  if (existing.dialer_node_id == incoming.dialer_node_id) {
    return existing.cookie == incoming.cookie ? DuplicateDecision::kSameAttempt
                                              : DuplicateDecision::kTakeIncoming;
  }
  return incoming.dialer_node_id < existing.dialer_node_id ? DuplicateDecision::kTakeIncoming
                                                           : DuplicateDecision::kKeepExisting;
}

}  // namespace bsr::protocol
