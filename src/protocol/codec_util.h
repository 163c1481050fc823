// Internal helpers shared by the packet codecs: payload bounds and error messages.
// Pure functions; any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"
#include "protocol/packet_type.h"

namespace bsr::protocol::internal {

// Fails when the reader ran past the end (or a length exceeded its limit) or when
// bytes are left over: every payload is decoded exactly.
inline Status FinishDecode(const ByteReader& r, PacketType type, size_t payload_size) {
  if (!r.ok()) {
    return Error(Errc::kProtocol,
                 "{} payload of {} bytes is truncated or has a field over its limit",
                 PacketTypeName(type), payload_size);
  }
  if (r.remaining() != 0) {
    return Error(Errc::kProtocol, "{} payload has {} trailing bytes after {} decoded bytes",
                 PacketTypeName(type), r.remaining(), r.pos());
  }
  return Status::Ok();
}

template <typename... Args>
Status Malformed(PacketType type, fmt::format_string<Args...> format, Args&&... args) {
  return Status(Errc::kProtocol, fmt::format("{}: {}", PacketTypeName(type),
                                             fmt::format(format, std::forward<Args>(args)...)));
}

// u16-length-prefixed byte string, at most max_len bytes.
inline void PutBlob16(ByteWriter& w, std::span<const uint8_t> b) {
  w.U16(static_cast<uint16_t>(b.size()));
  w.Bytes(b);
}
inline std::vector<uint8_t> GetBlob16(ByteReader& r, size_t max_len) {
  uint16_t n = r.U16();
  if (n > max_len) {
    r.Skip(SIZE_MAX);  // poisons the reader: reported by FinishDecode
    return {};
  }
  auto b = r.Bytes(n);
  return {b.begin(), b.end()};
}

}  // namespace bsr::protocol::internal
