// Connection-setup and cluster-state packets: preamble, features, auth, net options,
// sizes, generation UUIDs, state, two-phase state changes, disconnect; plus the pure
// decisions made from them (feature negotiation, option compatibility, duplicate
// connection resolution, agreed size). Plain values; any thread.
//
// Every packet struct has `static constexpr PacketType kType`, `void Encode(ByteWriter&)`
// (payload only; EncodePacket in dispatch.h adds the frame) and
// `static Result<T> Decode(std::span<const uint8_t> payload)`.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"
#include "protocol/packet_type.h"
#include "protocol/states.h"

namespace bsr::protocol {

inline constexpr uint32_t kMaxNodes = 32;      // node ids 0..31
inline constexpr uint16_t kAllNodes = 0xFFFF;  // StateChangeRequest target: everyone
inline constexpr size_t kMaxResourceName = 128;
inline constexpr size_t kMaxAlgName = 64;
inline constexpr size_t kMaxReason = 512;
inline constexpr size_t kMaxUuidHistory = 32;
inline constexpr uint32_t kMinChallengeSize = 16;
inline constexpr uint32_t kMaxChallengeSize = 256;

// Protocol versions of packet semantics this build speaks (Features negotiation).
inline constexpr uint32_t kProtocolVersionMin = 1;
inline constexpr uint32_t kProtocolVersionMax = 1;

// First packet on every socket. The dialer sends it; the acceptor checks it and
// answers with its own preamble (kPreambleReply set, same cookie, ids swapped).
inline constexpr uint8_t kPreambleReply = 0x01;
struct Preamble {
  static constexpr PacketType kType = PacketType::kPreamble;
  SocketKind socket = SocketKind::kData;  // kData or kMeta (kAny is refused)
  uint8_t flags = 0;
  uint16_t sender_node_id = 0;
  uint16_t receiver_node_id = 0;
  uint64_t cookie = 0;  // random per dial attempt, shared by its data and meta socket
  std::string resource;

  void Encode(ByteWriter& w) const;
  static Result<Preamble> Decode(std::span<const uint8_t> payload);
  bool operator==(const Preamble&) const = default;
};

// Checks a received preamble against what this node expects on the socket: the
// resource it serves, its own node id as receiver, the configured peer as sender.
// A dialer reading the acceptor's reply also passes its own cookie (expect_reply);
// an acceptor passes std::nullopt. kProtocol Status naming both values on mismatch.
Status CheckPreamble(const Preamble& got, std::string_view resource, uint16_t local_node_id,
                     uint16_t peer_node_id, std::optional<uint64_t> expect_reply_cookie);

// Feature bits (Features.feature_bits); the negotiated set is the AND of both sides.
inline constexpr uint64_t kFeatureTrim = 1u << 0;
inline constexpr uint64_t kFeatureWriteZeroes = 1u << 1;
inline constexpr uint64_t kFeatureBitmapRle = 1u << 2;
inline constexpr uint64_t kFeatureTwoPc = 1u << 3;
inline constexpr uint64_t kFeatureCsumResync = 1u << 4;
inline constexpr uint64_t kFeatureOnlineVerify = 1u << 5;
// Data blocks may travel outside the frame payload crc (frame.h kFrameFlagBlockOutsideCrc).
inline constexpr uint64_t kFeatureBlockOutsideCrc = 1u << 6;
inline constexpr uint64_t kFeatureAll = (1u << 7) - 1;

struct Features {
  static constexpr PacketType kType = PacketType::kFeatures;
  uint32_t protocol_min = kProtocolVersionMin;
  uint32_t protocol_max = kProtocolVersionMax;
  uint64_t feature_bits = kFeatureAll;

  void Encode(ByteWriter& w) const;
  static Result<Features> Decode(std::span<const uint8_t> payload);
  bool operator==(const Features&) const = default;
};

struct NegotiatedFeatures {
  uint32_t protocol_version = 0;
  uint64_t feature_bits = 0;
};
// Highest common version and the common feature bits; error when the ranges do
// not overlap (both ranges named).
Result<NegotiatedFeatures> NegotiateFeatures(const Features& local, const Features& peer);

struct AuthChallenge {
  static constexpr PacketType kType = PacketType::kAuthChallenge;
  std::string alg;  // cram-hmac-alg of the sender, so a mismatch is reported clearly
  std::vector<uint8_t> challenge;

  void Encode(ByteWriter& w) const;
  static Result<AuthChallenge> Decode(std::span<const uint8_t> payload);
  bool operator==(const AuthChallenge&) const = default;
};

struct AuthResponse {
  static constexpr PacketType kType = PacketType::kAuthResponse;
  std::vector<uint8_t> digest;  // HMAC over the receiver's challenge (auth.h)

  void Encode(ByteWriter& w) const;
  static Result<AuthResponse> Decode(std::span<const uint8_t> payload);
  bool operator==(const AuthResponse&) const = default;
};

struct AuthResult {
  static constexpr PacketType kType = PacketType::kAuthResult;
  bool accepted = false;
  std::string message;  // why it was refused

  void Encode(ByteWriter& w) const;
  static Result<AuthResult> Decode(std::span<const uint8_t> payload);
  bool operator==(const AuthResult&) const = default;
};

// Net options both sides must agree on (CheckCompatible).
struct ProtocolOptions {
  static constexpr PacketType kType = PacketType::kProtocolOptions;
  WireProtocol protocol = WireProtocol::kC;
  AfterSbPolicy after_sb_0pri = AfterSbPolicy::kDisconnect;
  AfterSbPolicy after_sb_1pri = AfterSbPolicy::kDisconnect;
  AfterSbPolicy after_sb_2pri = AfterSbPolicy::kDisconnect;
  bool allow_two_primaries = false;
  bool discard_my_data = false;
  std::string integrity_alg;  // empty: none
  std::string csums_alg;
  std::string verify_alg;

  void Encode(ByteWriter& w) const;
  static Result<ProtocolOptions> Decode(std::span<const uint8_t> payload);
  bool operator==(const ProtocolOptions&) const = default;
};

// Ok when the two nodes' options can work together; otherwise a kProtocol Status
// naming the first option that differs with the local and the peer value, e.g.
// "incompatible net options: after-sb-0pri is 'disconnect' here but 'discard-local' on
// the peer". after-sb discard-local on one side matches discard-remote on the other.
Status CheckCompatible(const ProtocolOptions& local, const ProtocolOptions& peer);

// Sizes in bytes. A diskless node sends zero backing/usable size.
struct Sizes {
  static constexpr PacketType kType = PacketType::kSizes;
  uint64_t backing_size = 0;    // size of the backing device
  uint64_t usable_size = 0;     // what the backing device offers for data
  uint64_t requested_size = 0;  // `disk { size }` from the config; 0 = not set
  uint64_t current_size = 0;    // size the device currently exposes
  uint32_t max_bio_size = kMaxDataSize;
  uint32_t flags = 0;

  void Encode(ByteWriter& w) const;
  static Result<Sizes> Decode(std::span<const uint8_t> payload);
  bool operator==(const Sizes&) const = default;
};
// The smaller size wins: min over the non-zero usable and requested sizes of both.
uint64_t AgreedSize(const Sizes& local, const Sizes& peer);

// Uuids.flags bits.
inline constexpr uint64_t kUuidFlagDiscardMyData = 1u << 0;
inline constexpr uint64_t kUuidFlagCrashedPrimary = 1u << 1;
inline constexpr uint64_t kUuidFlagInconsistent = 1u << 2;
inline constexpr uint64_t kUuidFlagSkipInitialSync = 1u << 3;
inline constexpr uint64_t kUuidFlagNewDatagen = 1u << 4;
inline constexpr uint64_t kUuidFlagStable = 1u << 5;
inline constexpr uint64_t kUuidFlagResyncAfterSb = 1u << 6;

struct BitmapUuid {
  uint16_t node_id = 0;
  uint64_t uuid = 0;
  bool operator==(const BitmapUuid&) const = default;
};

struct Uuids {
  static constexpr PacketType kType = PacketType::kUuids;
  uint64_t current = 0;
  uint64_t dirty_bits = 0;  // bits set in the bitmap toward the receiver
  uint64_t flags = 0;
  std::vector<BitmapUuid> bitmap;  // one per peer slot that has a bitmap UUID
  std::vector<uint64_t> history;

  void Encode(ByteWriter& w) const;
  static Result<Uuids> Decode(std::span<const uint8_t> payload);
  bool operator==(const Uuids&) const = default;
};

// StatePacket.susp bits.
inline constexpr uint8_t kSuspUser = 1u << 0;
inline constexpr uint8_t kSuspFencing = 1u << 1;
inline constexpr uint8_t kSuspNoData = 1u << 2;

// The sender's state as seen on this connection/volume.
struct StatePacket {
  static constexpr PacketType kType = PacketType::kState;
  Role role = Role::kSecondary;
  DiskState disk = DiskState::kDiskless;
  DiskState peer_disk = DiskState::kDUnknown;  // sender's view of the receiver's disk
  ConnState conn = ConnState::kConnected;
  ReplState repl = ReplState::kOff;
  uint8_t susp = 0;

  void Encode(ByteWriter& w) const;
  static Result<StatePacket> Decode(std::span<const uint8_t> payload);
  bool operator==(const StatePacket&) const = default;
};

enum class StateChangeKind : uint8_t {
  kGeneric = 0,
  kPromote,
  kDemote,
  kConnect,
  kDisconnect,
  kAttach,
  kDetach,
  kResize,
};
inline constexpr uint8_t kStateChangeKindCount = 8;
std::string_view StateChangeKindName(StateChangeKind kind);

// StateChangeRequest.mask bits: which of the new-state fields apply.
inline constexpr uint8_t kMaskRole = 1u << 0;
inline constexpr uint8_t kMaskDisk = 1u << 1;
inline constexpr uint8_t kMaskPeerDisk = 1u << 2;
inline constexpr uint8_t kMaskConn = 1u << 3;
inline constexpr uint8_t kMaskRepl = 1u << 4;
inline constexpr uint8_t kMaskAll = (1u << 5) - 1;
// StateChangeRequest.flags bits.
inline constexpr uint8_t kChangeForce = 1u << 0;

// Phase one of a cluster-wide state change: the initiator asks every node in
// reach_mask (relayed by its neighbours) whether it can apply the change.
struct StateChangeRequest {
  static constexpr PacketType kType = PacketType::kStateChangeRequest;
  uint32_t tid = 0;  // transaction id, chosen by the initiator
  uint16_t initiator_node_id = 0;
  uint16_t target_node_id = kAllNodes;
  uint64_t reach_mask = 0;  // nodes the request must reach
  StateChangeKind kind = StateChangeKind::kGeneric;
  uint8_t mask = 0;
  uint8_t flags = 0;
  Role role = Role::kUnknown;
  DiskState disk = DiskState::kDiskless;
  DiskState peer_disk = DiskState::kDiskless;
  ConnState conn = ConnState::kStandAlone;
  ReplState repl = ReplState::kOff;
  uint64_t new_size = 0;  // kResize

  void Encode(ByteWriter& w) const;
  static Result<StateChangeRequest> Decode(std::span<const uint8_t> payload);
  bool operator==(const StateChangeRequest&) const = default;
};

enum class TwoPcVote : uint8_t { kYes = 1, kNo = 2, kRetry = 3 };
std::string_view TwoPcVoteName(TwoPcVote vote);

struct StateChangeReply {
  static constexpr PacketType kType = PacketType::kStateChangeReply;
  uint32_t tid = 0;
  TwoPcVote vote = TwoPcVote::kYes;
  uint64_t reachable_nodes = 0;  // nodes that answered through the replier
  uint64_t primary_nodes = 0;    // which of them are Primary
  std::string reason;            // non-empty on kNo: why the change is refused

  void Encode(ByteWriter& w) const;
  static Result<StateChangeReply> Decode(std::span<const uint8_t> payload);
  bool operator==(const StateChangeReply&) const = default;
};

// Phase two: commit or abort transaction `tid`.
struct TwoPcDecisionFields {
  uint32_t tid = 0;
  uint16_t initiator_node_id = 0;
  uint64_t primary_nodes = 0;  // after the change (commit)

  void Encode(ByteWriter& w) const;
  bool operator==(const TwoPcDecisionFields&) const = default;
};
Status DecodeTwoPcDecision(std::span<const uint8_t> payload, PacketType type,
                           TwoPcDecisionFields* out);
template <PacketType T>
struct TwoPcDecision : TwoPcDecisionFields {
  static constexpr PacketType kType = T;
  static Result<TwoPcDecision> Decode(std::span<const uint8_t> payload) {
    TwoPcDecision out;
    BSR_RETURN_IF_ERROR(DecodeTwoPcDecision(payload, T, &out));
    return out;
  }
  bool operator==(const TwoPcDecision&) const = default;
};
using TwoPcCommit = TwoPcDecision<PacketType::kTwoPcCommit>;
using TwoPcAbort = TwoPcDecision<PacketType::kTwoPcAbort>;

struct Disconnect {
  static constexpr PacketType kType = PacketType::kDisconnect;
  std::string reason;

  void Encode(ByteWriter& w) const;
  static Result<Disconnect> Decode(std::span<const uint8_t> payload);
  bool operator==(const Disconnect&) const = default;
};

// Duplicate connections: both nodes may dial. A dial attempt is identified by its
// dialer's node id and cookie; the acceptor pairs data and meta sockets by it, and a
// dialer abandons its previous attempt before it starts a new one.
struct DialAttempt {
  uint16_t dialer_node_id = 0;
  uint64_t cookie = 0;
};
enum class DuplicateDecision {
  kSameAttempt,   // same dialer and cookie: the other socket of the same attempt
  kKeepExisting,  // close the incoming attempt's socket
  kTakeIncoming,  // close the existing attempt's sockets, continue with the incoming one
};
// Depends only on the two attempts, never on timing, so both nodes decide alike:
// the same dialer with a new cookie -> the incoming one (the dialer gave the old one
// up, even if it looked established here); different dialers -> the attempt dialed
// by the lower node id wins.
DuplicateDecision ResolveDuplicate(const DialAttempt& existing, const DialAttempt& incoming);

}  // namespace bsr::protocol
