// Test-only: one non-trivial sample value of every packet type (shared by the unit
// tests and the fuzz corpus writer). Plain values; any thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "common/bytes.h"
#include "common/crc32c.h"
#include "protocol/dispatch.h"

namespace bsr::protocol::testing {

// Rewrites header bytes and recomputes the header crc, so only that field changes.
inline void PatchHeader(std::vector<uint8_t>* wire, size_t offset, std::span<const uint8_t> bytes) {
  std::copy(bytes.begin(), bytes.end(), wire->begin() + static_cast<ptrdiff_t>(offset));
  StoreBe32(wire->data() + 20, Crc32c(std::span(*wire).first(20)));
}

// A Data packet at `sector` whose `size`-byte block is random (from `seed`) and lives
// in *block.
inline DataPacket RandomDataPacket(uint64_t sector, uint32_t size, unsigned seed,
                                   std::vector<uint8_t>* block) {
  DataPacket d;
  d.sector = sector;
  d.block_id = seed;
  d.size = size;
  block->resize(size);
  std::mt19937 rng(seed);
  for (auto& b : *block) b = static_cast<uint8_t>(rng());
  d.data = *block;
  return d;
}

inline const std::vector<uint8_t>& SampleBlock() {
  static const std::vector<uint8_t> block = [] {
    std::vector<uint8_t> b(4096);
    for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i * 7 + 3);
    return b;
  }();
  return block;
}

template <typename T>
T Sample();

template <>
inline Preamble Sample<Preamble>() {
  return {SocketKind::kMeta, kPreambleReply, 2, 5, 0x1122334455667788ull, "r0"};
}
template <>
inline Features Sample<Features>() {
  return {1, 3, kFeatureTrim | kFeatureBitmapRle};
}
template <>
inline AuthChallenge Sample<AuthChallenge>() {
  return {"sha256", std::vector<uint8_t>(64, 0xA5)};
}
template <>
inline AuthResponse Sample<AuthResponse>() {
  return {std::vector<uint8_t>(32, 0x5A)};
}
template <>
inline AuthResult Sample<AuthResult>() {
  return {false, "wrong shared-secret"};
}
template <>
inline ProtocolOptions Sample<ProtocolOptions>() {
  ProtocolOptions o;
  o.protocol = WireProtocol::kB;
  o.after_sb_0pri = AfterSbPolicy::kDiscardZeroChanges;
  o.after_sb_1pri = AfterSbPolicy::kConsensus;
  o.after_sb_2pri = AfterSbPolicy::kCallPriLostAfterSb;
  o.allow_two_primaries = true;
  o.discard_my_data = true;
  o.integrity_alg = "crc32c";
  o.csums_alg = "sha1";
  o.verify_alg = "md5";
  return o;
}
template <>
inline Sizes Sample<Sizes>() {
  return {1ull << 40, (1ull << 40) - (1ull << 25), 1ull << 39, 1ull << 39, 1u << 17, 3};
}
template <>
inline Uuids Sample<Uuids>() {
  return {0xAAAA0001,
          42,
          kUuidFlagCrashedPrimary | kUuidFlagStable,
          {{0, 0xBBBB0001}, {3, 0xBBBB0003}},
          {0xCCCC0001, 0xCCCC0002, 0xCCCC0003}};
}
template <>
inline StatePacket Sample<StatePacket>() {
  return {Role::kPrimary,        DiskState::kUpToDate,   DiskState::kInconsistent,
          ConnState::kConnected, ReplState::kSyncSource, kSuspFencing};
}
template <>
inline StateChangeRequest Sample<StateChangeRequest>() {
  StateChangeRequest q;
  q.tid = 77;
  q.initiator_node_id = 1;
  q.target_node_id = kAllNodes;
  q.reach_mask = 0b1011;
  q.kind = StateChangeKind::kPromote;
  q.mask = kMaskRole;
  q.flags = kChangeForce;
  q.role = Role::kPrimary;
  q.new_size = 123;
  return q;
}
template <>
inline StateChangeReply Sample<StateChangeReply>() {
  return {77, TwoPcVote::kNo, 0b1010, 0b1000, "node 3 is Primary"};
}
template <>
inline TwoPcCommit Sample<TwoPcCommit>() {
  TwoPcCommit c;
  c.tid = 77;
  c.initiator_node_id = 1;
  c.primary_nodes = 0b10;
  return c;
}
template <>
inline TwoPcAbort Sample<TwoPcAbort>() {
  TwoPcAbort c;
  c.tid = 78;
  c.initiator_node_id = 4;
  return c;
}
template <>
inline Disconnect Sample<Disconnect>() {
  return {"bsradm disconnect"};
}
template <typename T>
T SampleData() {
  T d;
  d.sector = 8 * 1000;
  d.block_id = 0xDEADBEEF;
  d.seq_num = 9;
  d.dp_flags = kDpFua | kDpSendWriteAck;
  d.size = static_cast<uint32_t>(SampleBlock().size());
  d.digest = {1, 2, 3, 4};
  d.data = SampleBlock();
  return d;
}
template <>
inline DataPacket Sample<DataPacket>() {
  return SampleData<DataPacket>();
}
template <>
inline RsDataReply Sample<RsDataReply>() {
  return SampleData<RsDataReply>();
}
template <>
inline Barrier Sample<Barrier>() {
  return {123456};
}
template <>
inline BarrierAck Sample<BarrierAck>() {
  return {123456, 17};
}
template <>
inline OutOfSync Sample<OutOfSync>() {
  return {2048, 65536};
}
template <>
inline PeerAck Sample<PeerAck>() {
  return {0b110, 987654321};
}
template <>
inline Ping Sample<Ping>() {
  return {};
}
template <>
inline PingAck Sample<PingAck>() {
  return {};
}
template <>
inline BitmapPlain Sample<BitmapPlain>() {
  return {128, {0x1, 0xFFFF0000FFFF0000ull, 0}};
}
template <>
inline BitmapRle Sample<BitmapRle>() {
  return {64, 156, true, {10, 0x90, 0x01, 2}};  // 10 set, 144 clear, 2 set
}

template <typename T>
T SampleRequest(bool with_digest) {
  T r;
  r.sector = 4096;
  r.block_id = 55;
  r.size = 4096;
  if (with_digest) r.digest = std::vector<uint8_t>(20, 0x11);
  return r;
}
template <>
inline RsDataRequest Sample<RsDataRequest>() {
  return SampleRequest<RsDataRequest>(false);
}
template <>
inline OvRequest Sample<OvRequest>() {
  return SampleRequest<OvRequest>(false);
}
template <>
inline CsumRsRequest Sample<CsumRsRequest>() {
  return SampleRequest<CsumRsRequest>(true);
}
template <>
inline OvReply Sample<OvReply>() {
  return SampleRequest<OvReply>(true);
}

template <typename T>
T SampleAck() {
  T a;
  a.sector = 16;
  a.block_id = 0xABCDEF;
  a.size = 4096;
  a.seq_num = 3;
  return a;
}
template <>
inline RecvAck Sample<RecvAck>() {
  return SampleAck<RecvAck>();
}
template <>
inline WriteAck Sample<WriteAck>() {
  return SampleAck<WriteAck>();
}
template <>
inline RsWriteAck Sample<RsWriteAck>() {
  return SampleAck<RsWriteAck>();
}
template <>
inline NegAck Sample<NegAck>() {
  return SampleAck<NegAck>();
}
template <>
inline NegRsDataReply Sample<NegRsDataReply>() {
  return SampleAck<NegRsDataReply>();
}
template <>
inline DataIntegrityFail Sample<DataIntegrityFail>() {
  return SampleAck<DataIntegrityFail>();
}
template <>
inline RsIsInSync Sample<RsIsInSync>() {
  return SampleAck<RsIsInSync>();
}
template <>
inline RsCancel Sample<RsCancel>() {
  return SampleAck<RsCancel>();
}
template <>
inline OvResult Sample<OvResult>() {
  return SampleAck<OvResult>();
}

// A sample of every alternative of Packet, in variant order.
template <size_t... I>
std::vector<Packet> AllSamplesImpl(std::index_sequence<I...>) {
  return {Packet(Sample<std::variant_alternative_t<I, Packet>>())...};
}
inline std::vector<Packet> AllSamples() {
  return AllSamplesImpl(std::make_index_sequence<std::variant_size_v<Packet>>());
}

}  // namespace bsr::protocol::testing
