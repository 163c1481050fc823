#include "frontend/nbd_parse.h"

#include <cerrno>

#include "common/bytes.h"
#include "frontend/nbd_proto.h"

namespace bsr::frontend::nbd {
namespace {

void AppendError(std::vector<uint8_t>* out, uint32_t option, uint32_t type,
                 std::string_view message) {
  if (message.size() > kMaxStringLength) message = message.substr(0, kMaxStringLength);
  AppendOptionReply(out, option, type,
                    std::span(reinterpret_cast<const uint8_t*>(message.data()), message.size()));
}

bool ValidString(std::string_view s) {
  return s.size() <= kMaxStringLength && s.find('\0') == std::string_view::npos;
}

void AppendInfoExport(std::vector<uint8_t>* out, uint32_t option, const ExportInfo& info) {
  std::vector<uint8_t> data;
  ByteWriter w(&data);
  w.U16(kInfoExport);
  w.U64(info.size);
  w.U16(TransmissionFlags(info));
  AppendOptionReply(out, option, kRepInfo, data);
}

void AppendInfoBlockSize(std::vector<uint8_t>* out, uint32_t option, const ExportInfo& info) {
  std::vector<uint8_t> data;
  ByteWriter w(&data);
  w.U16(kInfoBlockSize);
  w.U32(info.min_block);
  w.U32(info.preferred_block);
  w.U32(info.max_block);
  AppendOptionReply(out, option, kRepInfo, data);
}

void AppendInfoString(std::vector<uint8_t>* out, uint32_t option, uint16_t type,
                      std::string_view text) {
  std::vector<uint8_t> data;
  ByteWriter w(&data);
  w.U16(type);
  w.Bytes(std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  AppendOptionReply(out, option, kRepInfo, data);
}

// NBD_OPT_INFO and NBD_OPT_GO: name, then a list of requested NBD_INFO_* items.
OptionOutcome HandleInfoOrGo(uint32_t option, std::span<const uint8_t> data,
                             OptionCatalog& catalog) {
  OptionOutcome out;
  ByteReader r(data);
  uint32_t name_len = r.U32();
  if (!r.ok() || name_len > kMaxStringLength || name_len > r.remaining()) {
    AppendError(&out.reply, option, kRepErrInvalid, "malformed export name length");
    return out;
  }
  auto name_bytes = r.Bytes(name_len);
  std::string name(name_bytes.begin(), name_bytes.end());
  uint16_t count = r.U16();
  if (!r.ok() || r.remaining() != size_t{count} * 2 || !ValidString(name)) {
    AppendError(&out.reply, option, kRepErrInvalid, "malformed information request list");
    return out;
  }
  bool want_name = false;
  bool want_description = false;
  for (uint16_t i = 0; i < count; ++i) {
    uint16_t item = r.U16();
    if (item == kInfoName) want_name = true;
    if (item == kInfoDescription) want_description = true;
  }
  std::optional<ExportInfo> info = catalog.Lookup(name);
  if (!info) {
    out.log = "unknown export '" + name + "'";
    AppendError(&out.reply, option, kRepErrUnknown, "no export named '" + name + "'");
    return out;
  }
  if (option == kOptGo) {
    Status opened = catalog.OpenExport(name);
    if (!opened.ok()) {
      out.log = opened.ToString();
      AppendError(&out.reply, option, kRepErrPolicy, opened.message());
      return out;
    }
    out.action = OptionAction::kTransmission;
    out.export_name = name;
  }
  if (want_name) AppendInfoString(&out.reply, option, kInfoName, name);
  if (want_description && !info->description.empty()) {
    AppendInfoString(&out.reply, option, kInfoDescription,
                     info->description.substr(0, kMaxStringLength));
  }
  // Block sizes go out even when not requested (the spec allows it), so clients
  // that skipped the request still learn the limits.
  AppendInfoBlockSize(&out.reply, option, *info);
  AppendInfoExport(&out.reply, option, *info);
  AppendOptionReply(&out.reply, option, kRepAck);
  return out;
}

}  // namespace

std::vector<uint8_t> EncodeGreeting() {
  std::vector<uint8_t> out;
  ByteWriter w(&out);
  w.U64(kInitMagic);
  w.U64(kOptionMagic);
  w.U16(kFlagFixedNewstyle | kFlagNoZeroes);
  return out;
}

Result<ClientFlags> ParseClientFlags(std::span<const uint8_t> bytes) {
  if (bytes.size() != 4) return Error(Errc::kProtocol, "client flags: need 4 bytes");
  uint32_t flags = LoadBe32(bytes.data());
  if (flags & ~(kClientFixedNewstyle | kClientNoZeroes)) {
    return Error(Errc::kProtocol, "client flags 0x{:x}: unknown bits", flags);
  }
  return ClientFlags{(flags & kClientFixedNewstyle) != 0, (flags & kClientNoZeroes) != 0};
}

Result<OptionHeader> ParseOptionHeader(std::span<const uint8_t> bytes) {
  if (bytes.size() != kOptionHeaderSize) return Error(Errc::kProtocol, "option header: size");
  ByteReader r(bytes);
  uint64_t magic = r.U64();
  OptionHeader h{r.U32(), r.U32()};
  if (magic != kOptionMagic) return Error(Errc::kProtocol, "option magic 0x{:x}", magic);
  if (h.length > kMaxOptionLength) {
    return Error(Errc::kProtocol, "option {} data length {} exceeds {}", h.option, h.length,
                 kMaxOptionLength);
  }
  return h;
}

uint16_t TransmissionFlags(const ExportInfo& info) {
  uint16_t flags = kHasFlags;
  if (info.read_only) flags |= kReadOnly;
  if (info.can_flush) flags |= kSendFlush;
  if (info.can_fua) flags |= kSendFua;
  if (info.rotational) flags |= kRotational;
  if (!info.read_only && info.can_trim) flags |= kSendTrim;
  if (!info.read_only && info.can_write_zeroes) flags |= kSendWriteZeroes;
  if (info.can_multi_conn) flags |= kCanMultiConn;
  return flags;
}

void AppendOptionReply(std::vector<uint8_t>* out, uint32_t option, uint32_t type,
                       std::span<const uint8_t> data) {
  ByteWriter w(out);
  w.U64(kOptionReplyMagic);
  w.U32(option);
  w.U32(type);
  w.U32(static_cast<uint32_t>(data.size()));
  w.Bytes(data);
}

OptionOutcome HandleOption(uint32_t option, std::span<const uint8_t> data,
                           const ClientFlags& client, OptionCatalog& catalog) {
  OptionOutcome out;
  switch (option) {
    case kOptExportName: {
      std::string name(data.begin(), data.end());
      std::optional<ExportInfo> info = catalog.Lookup(name);
      // This option cannot carry an error: the spec says to drop the connection.
      if (!ValidString(name) || !info) {
        out.action = OptionAction::kClose;
        out.log = "NBD_OPT_EXPORT_NAME: unknown export '" + name + "'";
        return out;
      }
      Status opened = catalog.OpenExport(name);
      if (!opened.ok()) {
        out.action = OptionAction::kClose;
        out.log = opened.ToString();
        return out;
      }
      ByteWriter w(&out.reply);
      w.U64(info->size);
      w.U16(TransmissionFlags(*info));
      if (!client.no_zeroes) w.Zeros(124);
      out.action = OptionAction::kTransmission;
      out.export_name = name;
      return out;
    }
    case kOptAbort:
      AppendOptionReply(&out.reply, option, kRepAck);
      out.action = OptionAction::kAbort;
      return out;
    case kOptList: {
      if (!data.empty()) {
        AppendError(&out.reply, option, kRepErrInvalid, "NBD_OPT_LIST takes no data");
        return out;
      }
      for (const auto& [name, description] : catalog.ListExports()) {
        std::vector<uint8_t> entry;
        ByteWriter w(&entry);
        w.U32(static_cast<uint32_t>(name.size()));
        w.Bytes(std::span(reinterpret_cast<const uint8_t*>(name.data()), name.size()));
        std::string_view d = std::string_view(description).substr(0, kMaxStringLength);
        w.Bytes(std::span(reinterpret_cast<const uint8_t*>(d.data()), d.size()));
        AppendOptionReply(&out.reply, option, kRepServer, entry);
      }
      AppendOptionReply(&out.reply, option, kRepAck);
      return out;
    }
    case kOptInfo:
    case kOptGo: return HandleInfoOrGo(option, data, catalog);
    default:
      // STARTTLS, STRUCTURED_REPLY, meta contexts and anything newer: simple replies
      // only, no TLS.
      AppendError(&out.reply, option, kRepErrUnsup, "option not supported by this server");
      return out;
  }
}

Result<Request> ParseRequest(std::span<const uint8_t> bytes) {
  if (bytes.size() != kRequestSize) return Error(Errc::kProtocol, "request: need 28 bytes");
  ByteReader r(bytes);
  uint32_t magic = r.U32();
  Request req;
  req.flags = r.U16();
  req.type = r.U16();
  req.cookie = r.U64();
  req.offset = r.U64();
  req.length = r.U32();
  if (magic != kRequestMagic) return Error(Errc::kProtocol, "request magic 0x{:08x}", magic);
  return req;
}

RequestCheck CheckRequest(const Request& req, const ExportInfo& info) {
  RequestCheck c;
  auto fail = [&](uint32_t error, std::string why) {
    c.error = error;
    c.why = std::move(why);
    return c;
  };
  if (req.type == kCmdWrite) {
    c.payload = req.length;
    if (req.length > kMaxDrainPayload) {
      c.close = true;
      c.why = fmt::format("write payload {} exceeds {}", req.length, kMaxDrainPayload);
      return c;
    }
  }
  uint16_t allowed = 0;
  bool is_write = false;
  bool needs_range = true;
  switch (req.type) {
    case kCmdRead: break;
    case kCmdWrite:
      allowed = kCmdFlagFua;
      is_write = true;
      break;
    case kCmdFlush:
      needs_range = false;
      if (!info.can_flush) return fail(kEinval, "flush not supported");
      break;
    case kCmdTrim:
      allowed = kCmdFlagFua;
      is_write = true;
      if (!info.can_trim) return fail(kEinval, "trim not supported");
      break;
    case kCmdWriteZeroes:
      allowed = kCmdFlagFua | kCmdFlagNoHole;
      is_write = true;
      if (!info.can_write_zeroes) return fail(kEinval, "write-zeroes not supported");
      break;
    case kCmdDisc: return c;
    default: return fail(kEinval, fmt::format("unknown command {}", req.type));
  }
  // FUA is harmless on reads and flushes (some clients set it); other unknown flags
  // are refused.
  if (req.flags & ~(allowed | kCmdFlagFua)) {
    return fail(kEinval,
                fmt::format("flags 0x{:x} not valid for {}", req.flags, CommandName(req.type)));
  }
  if (is_write && info.read_only) return fail(kEperm, "export is read-only");
  if (!needs_range) return c;
  if (req.length == 0) return fail(kEinval, "zero length");
  if ((req.type == kCmdRead || req.type == kCmdWrite) && req.length > info.max_block) {
    return fail(kEoverflow, fmt::format("length {} exceeds the maximum block size {}", req.length,
                                        info.max_block));
  }
  if (req.offset > info.size || req.length > info.size - req.offset) {
    uint32_t error = (req.type == kCmdWrite || req.type == kCmdWriteZeroes) ? kEnospc : kEinval;
    return fail(error, fmt::format("offset {} length {} beyond the end ({} bytes)", req.offset,
                                   req.length, info.size));
  }
  if (info.min_block > 1 && (req.offset % info.min_block || req.length % info.min_block)) {
    return fail(kEinval, fmt::format("offset {} length {} not aligned to {}", req.offset,
                                     req.length, info.min_block));
  }
  return c;
}

void EncodeSimpleReply(uint8_t* out, uint32_t error, uint64_t cookie) {
  StoreBe32(out, kSimpleReplyMagic);
  StoreBe32(out + 4, error);
  StoreBe64(out + 8, cookie);
}

uint32_t ErrnoToNbd(int err) {
  switch (err) {
    case 0: return 0;
    case EPERM:
    case EROFS:
    case EACCES: return kEperm;
    case ENOMEM: return kEnomem;
    case EINVAL: return kEinval;
    case ENOSPC:
    case EDQUOT:
    case EFBIG: return kEnospc;
    case EOVERFLOW: return kEoverflow;
    case ENOTSUP: return kEnotsup;
    case ESHUTDOWN: return kEshutdown;
    default: return kEio;
  }
}

const char* CommandName(uint16_t type) {
  switch (type) {
    case kCmdRead: return "READ";
    case kCmdWrite: return "WRITE";
    case kCmdDisc: return "DISC";
    case kCmdFlush: return "FLUSH";
    case kCmdTrim: return "TRIM";
    case kCmdWriteZeroes: return "WRITE_ZEROES";
    default: return "UNKNOWN";
  }
}

}  // namespace bsr::frontend::nbd
