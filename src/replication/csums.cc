// Checksum-based resync (csums-alg) of a Connection: the SyncTarget reads its own copy
// of a block range and sends its digest (CsumRsRequest); the SyncSource compares it
// with the digest of its data and answers RsIsInSync (nothing else on the wire) or
// the data as RsDataReply. io thread only.
#include <spdlog/spdlog.h>

#include "protocol/auth.h"
#include "replication/connection.h"
#include "replication/connection_internal.h"
#include "replication/device.h"
#include "replication/resource.h"

namespace bsr::replication {

namespace p = protocol;

void Connection::SendCsumRequest(const std::shared_ptr<Session>& s, int volume, uint64_t block_id,
                                 uint64_t offset, uint64_t length) {
  auto dev = device(volume);
  if (!dev) return;
  auto self = shared_from_this();
  dev->ReadForPeer(offset, static_cast<uint32_t>(length),
                   [this, self, s, volume, block_id, offset, length](
                       storage::IoResult r, std::shared_ptr<storage::AlignedBuffer> buf) {
                     if (!Alive(s)) return;
                     auto& pdv = pd(volume);
                     if (!pdv.requests.count(block_id)) return;
                     if (r.ok()) pdv.rs.own_io += length / 512;
                     p::CsumRsRequest rq;
                     rq.sector = offset / 512;
                     rq.block_id = block_id;
                     rq.size = static_cast<uint32_t>(length);
                     Result<std::vector<uint8_t>> d =
                         r.ok() ? p::ComputeDigest(cfg_.options.csums_alg,
                                                   std::span<const uint8_t>(buf->data(), length))
                                : Result<std::vector<uint8_t>>(r.status);
                     if (d.ok()) {
                       rq.digest = std::move(*d);
                     } else {
                       // A one-byte digest never matches: the source sends the data.
                       spdlog::warn(
                           "{}/{}: csums read/digest at {} failed: {}; asking for the data", Tag(),
                           volume, offset, d.status().message());
                       rq.digest = {0};
                     }
                     s->data->SendPacket(rq, static_cast<uint16_t>(volume));
                   });
}

void Connection::OnCsumRequest(const std::shared_ptr<Session>& s, int volume,
                               const p::BlockRequestFields& rq) {
  auto dev = device(volume);
  auto neg = [s, volume, rq] {
    p::NegRsDataReply n;
    n.sector = rq.sector;
    n.block_id = rq.block_id;
    n.size = rq.size;
    s->meta->SendPacket(n, static_cast<uint16_t>(volume));
  };
  if (!dev || !dev->attached() || cfg_.options.csums_alg.empty()) return neg();
  ApplyResyncSuspend(s, volume);
  auto self = shared_from_this();
  dev->ReadForPeer(rq.sector * 512, rq.size,
                   [this, self, s, volume, rq, neg](storage::IoResult r,
                                                    std::shared_ptr<storage::AlignedBuffer> buf) {
                     if (!Alive(s)) return;
                     if (!r.ok()) {
                       spdlog::error("{}/{}: resync read at sector {} failed: {}", Tag(), volume,
                                     rq.sector, r.status.message());
                       return neg();
                     }
                     auto mine = p::ComputeDigest(cfg_.options.csums_alg,
                                                  std::span<const uint8_t>(buf->data(), rq.size));
                     if (!mine.ok() || *mine != rq.digest) {
                       SendResyncData(s, volume, rq, std::move(buf));
                       return;
                     }
                     auto& pdv = pd(volume);
                     pdv.rs.own_io += rq.size / 512;
                     pdv.rs.same_csum += rq.size / 512;
                     if (auto dv = device(volume))
                       dv->SetPeerInSync(peer_id_, rq.sector * 512, rq.size);
                     p::RsIsInSync a;
                     a.sector = rq.sector;
                     a.block_id = rq.block_id;
                     a.size = rq.size;
                     s->meta->SendPacket(a, static_cast<uint16_t>(volume));
                     UpdateSyncStats(volume);
                   });
}

void Connection::OnResyncInSync(const std::shared_ptr<Session>& s, int volume,
                                const p::BlockAckFields& ack) {
  auto& pdv = pd(volume);
  auto it = pdv.requests.find(ack.block_id);
  auto dev = device(volume);
  if (it == pdv.requests.end() || !dev) {
    spdlog::warn("{}/{}: RsIsInSync for unknown request {}", Tag(), volume, ack.block_id);
    return;
  }
  auto rq = it->second;
  pdv.requests.erase(it);
  pdv.rs.in_flight -= std::min(pdv.rs.in_flight, rq.length);
  pdv.rs.sect_in += rq.length / 512;
  if (rq.stale) {
    // An application write to this range came in meanwhile: ask again for what is
    // still marked (not the write's own blocks: see OnResyncReply).
    pdv.cursor = std::min(pdv.cursor, rq.offset / 4096);
  } else {
    dev->SetPeerInSync(peer_id_, rq.offset, rq.length);
    pdv.rs.same_csum += rq.length / 512;
  }
  UpdateSyncStats(volume);
  PumpResync(s, volume);
}

}  // namespace bsr::replication
