// libFuzzer target for the NBD option and request parsers (frontend/nbd_parse.h):
// client flags, a run of options (each with its data) through HandleOption against a
// fake catalog, then request headers through ParseRequest/CheckRequest. Any input
// must be handled without crashing, and the invariants below must hold.
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "frontend/nbd_parse.h"
#include "frontend/nbd_proto.h"

namespace {

using namespace bsr::frontend;

class Catalog : public nbd::OptionCatalog {
 public:
  explicit Catalog(bool refuse) : refuse_(refuse) {
    info_.size = 1 << 30;
    info_.min_block = 512;
    info_.description = "fuzz";
  }
  std::vector<std::pair<std::string, std::string>> ListExports() const override {
    return {{"a", "first"}, {"", "default"}};
  }
  std::optional<ExportInfo> Lookup(std::string_view name) const override {
    if (name == "a" || name.empty()) return info_;
    return std::nullopt;
  }
  bsr::Status OpenExport(std::string_view) override {
    if (refuse_) return bsr::Status(bsr::Errc::kState, "refused");
    return bsr::Status::Ok();
  }
  ExportInfo info_;
  bool refuse_;
};

void Require(bool cond) {
  if (!cond) std::abort();
}

// Walks the reply stream: every option reply must be well-formed.
void CheckReplies(uint32_t option, const nbd::OptionOutcome& out) {
  if (option == nbd::kOptExportName) return;  // raw size+flags, not option replies
  bsr::ByteReader r(out.reply);
  while (r.remaining() > 0) {
    Require(r.U64() == nbd::kOptionReplyMagic);
    Require(r.U32() == option);
    r.U32();
    uint32_t len = r.U32();
    r.Skip(len);
    Require(r.ok());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  bsr::ByteReader in(std::span(data, size));
  uint8_t mode = in.U8();
  auto flag_bytes = in.Bytes(4);
  if (!in.ok()) return 0;
  auto flags = nbd::ParseClientFlags(flag_bytes);
  if (!flags.ok()) return 0;
  Catalog catalog(mode & 1);
  // Options: 16-byte header, then its data (clipped to what the input has).
  while (in.remaining() >= nbd::kOptionHeaderSize) {
    auto header = nbd::ParseOptionHeader(in.Bytes(nbd::kOptionHeaderSize));
    if (!header.ok()) break;
    size_t take = std::min<size_t>(header->length, in.remaining());
    auto payload = in.Bytes(take);
    nbd::OptionOutcome out = nbd::HandleOption(header->option, payload, *flags, catalog);
    CheckReplies(header->option, out);
    if (out.action == nbd::OptionAction::kTransmission) {
      Require(catalog.Lookup(out.export_name).has_value());
      break;
    }
    if (out.action != nbd::OptionAction::kContinue) return 0;
  }
  // Requests.
  ExportInfo info = catalog.info_;
  info.read_only = mode & 2;
  info.max_block = (mode & 4) ? 65536 : nbd::kDefaultMaxBlock;
  while (in.remaining() >= nbd::kRequestSize) {
    auto req = nbd::ParseRequest(in.Bytes(nbd::kRequestSize));
    if (!req.ok()) break;
    nbd::RequestCheck c = nbd::CheckRequest(*req, info);
    if (c.close) break;
    if (c.error == 0 && req->type != nbd::kCmdFlush && req->type != nbd::kCmdDisc) {
      // Accepted requests lie inside the export and respect the limits.
      Require(req->offset <= info.size && req->length <= info.size - req->offset);
      Require(req->length > 0 && req->length % info.min_block == 0);
      Require(!info.read_only || req->type == nbd::kCmdRead);
      if (req->type == nbd::kCmdRead || req->type == nbd::kCmdWrite) {
        Require(req->length <= info.max_block);
      }
    }
    Require(c.payload == (req->type == nbd::kCmdWrite ? req->length : 0));
    in.Skip(std::min<size_t>(c.payload, in.remaining()));
  }
  return 0;
}
