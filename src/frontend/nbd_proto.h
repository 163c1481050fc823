// NBD wire constants (NetworkBlockDevice doc/proto.md), fixed newstyle only.
// Plain constants; usable from any thread.
#pragma once

#include <cstddef>
#include <cstdint>

namespace bsr::frontend::nbd {

inline constexpr uint64_t kInitMagic = 0x4e42444d41474943ULL;    // "NBDMAGIC"
inline constexpr uint64_t kOptionMagic = 0x49484156454F5054ULL;  // "IHAVEOPT"
inline constexpr uint64_t kOptionReplyMagic = 0x3e889045565a9ULL;
inline constexpr uint32_t kRequestMagic = 0x25609513;
inline constexpr uint32_t kSimpleReplyMagic = 0x67446698;

// Handshake flags (server) and client flags.
inline constexpr uint16_t kFlagFixedNewstyle = 1 << 0;
inline constexpr uint16_t kFlagNoZeroes = 1 << 1;
inline constexpr uint32_t kClientFixedNewstyle = 1 << 0;
inline constexpr uint32_t kClientNoZeroes = 1 << 1;

// Transmission flags.
inline constexpr uint16_t kHasFlags = 1 << 0;
inline constexpr uint16_t kReadOnly = 1 << 1;
inline constexpr uint16_t kSendFlush = 1 << 2;
inline constexpr uint16_t kSendFua = 1 << 3;
inline constexpr uint16_t kRotational = 1 << 4;
inline constexpr uint16_t kSendTrim = 1 << 5;
inline constexpr uint16_t kSendWriteZeroes = 1 << 6;
inline constexpr uint16_t kCanMultiConn = 1 << 8;

// Options.
inline constexpr uint32_t kOptExportName = 1;
inline constexpr uint32_t kOptAbort = 2;
inline constexpr uint32_t kOptList = 3;
inline constexpr uint32_t kOptStartTls = 5;
inline constexpr uint32_t kOptInfo = 6;
inline constexpr uint32_t kOptGo = 7;
inline constexpr uint32_t kOptStructuredReply = 8;

// Option reply types.
inline constexpr uint32_t kRepAck = 1;
inline constexpr uint32_t kRepServer = 2;
inline constexpr uint32_t kRepInfo = 3;
inline constexpr uint32_t kRepErrUnsup = (1u << 31) + 1;
inline constexpr uint32_t kRepErrPolicy = (1u << 31) + 2;
inline constexpr uint32_t kRepErrInvalid = (1u << 31) + 3;
inline constexpr uint32_t kRepErrUnknown = (1u << 31) + 6;
inline constexpr uint32_t kRepErrShutdown = (1u << 31) + 7;

// NBD_INFO_* items in NBD_REP_INFO.
inline constexpr uint16_t kInfoExport = 0;
inline constexpr uint16_t kInfoName = 1;
inline constexpr uint16_t kInfoDescription = 2;
inline constexpr uint16_t kInfoBlockSize = 3;

// Commands and command flags.
inline constexpr uint16_t kCmdRead = 0;
inline constexpr uint16_t kCmdWrite = 1;
inline constexpr uint16_t kCmdDisc = 2;
inline constexpr uint16_t kCmdFlush = 3;
inline constexpr uint16_t kCmdTrim = 4;
inline constexpr uint16_t kCmdWriteZeroes = 6;
inline constexpr uint16_t kCmdFlagFua = 1 << 0;
inline constexpr uint16_t kCmdFlagNoHole = 1 << 1;

// Error values in simple replies (fixed by the protocol, not the host's errno).
inline constexpr uint32_t kEperm = 1;
inline constexpr uint32_t kEio = 5;
inline constexpr uint32_t kEnomem = 12;
inline constexpr uint32_t kEinval = 22;
inline constexpr uint32_t kEnospc = 28;
inline constexpr uint32_t kEoverflow = 75;
inline constexpr uint32_t kEnotsup = 95;
inline constexpr uint32_t kEshutdown = 108;

// Sizes of the fixed parts.
inline constexpr size_t kGreetingSize = 18;
inline constexpr size_t kOptionHeaderSize = 16;
inline constexpr size_t kRequestSize = 28;
inline constexpr size_t kSimpleReplySize = 16;

// Limits this server enforces. Option data beyond kMaxOptionLength, or a write
// payload beyond kMaxDrainPayload, is a protocol violation that ends the connection.
inline constexpr uint32_t kMaxOptionLength = 64 * 1024;
inline constexpr uint32_t kMaxStringLength = 4096;
inline constexpr uint32_t kDefaultMaxBlock = 32 * 1024 * 1024;
inline constexpr uint32_t kMaxDrainPayload = 64 * 1024 * 1024;

}  // namespace bsr::frontend::nbd
