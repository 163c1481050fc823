#include "frontend/nbd_parse.h"

#include <gtest/gtest.h>

#include <map>

#include "common/bytes.h"
#include "frontend/nbd_proto.h"

namespace bsr::frontend::nbd {
namespace {

class FakeCatalog : public OptionCatalog {
 public:
  FakeCatalog() {
    info_.size = 1 << 20;
    info_.min_block = 512;
    info_.description = "test disk";
  }
  std::vector<std::pair<std::string, std::string>> ListExports() const override {
    return {{"disk", "test disk"}, {"other", ""}};
  }
  std::optional<ExportInfo> Lookup(std::string_view name) const override {
    if (name == "disk" || name == "other" || name.empty()) return info_;
    return std::nullopt;
  }
  Status OpenExport(std::string_view name) override {
    if (!refuse_.empty()) return Status(Errc::kState, refuse_);
    opened_.emplace_back(name);
    return Status::Ok();
  }
  ExportInfo info_;
  std::string refuse_;
  std::vector<std::string> opened_;
};

struct ParsedReply {
  uint32_t option;
  uint32_t type;
  std::vector<uint8_t> data;
};

std::vector<ParsedReply> ParseReplies(const std::vector<uint8_t>& bytes) {
  std::vector<ParsedReply> out;
  ByteReader r(bytes);
  while (r.remaining() > 0) {
    EXPECT_EQ(r.U64(), kOptionReplyMagic);
    ParsedReply p;
    p.option = r.U32();
    p.type = r.U32();
    uint32_t len = r.U32();
    auto d = r.Bytes(len);
    p.data.assign(d.begin(), d.end());
    EXPECT_TRUE(r.ok());
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<uint8_t> InfoRequest(std::string_view name, std::vector<uint16_t> items) {
  std::vector<uint8_t> out;
  ByteWriter w(&out);
  w.U32(static_cast<uint32_t>(name.size()));
  w.Bytes(std::span(reinterpret_cast<const uint8_t*>(name.data()), name.size()));
  w.U16(static_cast<uint16_t>(items.size()));
  for (auto i : items) w.U16(i);
  return out;
}

TEST(NbdParse, GreetingAndClientFlags) {
  auto g = EncodeGreeting();
  ASSERT_EQ(g.size(), kGreetingSize);
  EXPECT_EQ(LoadBe64(g.data()), kInitMagic);
  EXPECT_EQ(LoadBe64(g.data() + 8), kOptionMagic);
  EXPECT_EQ(LoadBe16(g.data() + 16), kFlagFixedNewstyle | kFlagNoZeroes);
  uint8_t ok[4] = {0, 0, 0, 3};
  auto flags = ParseClientFlags(ok);
  ASSERT_TRUE(flags.ok());
  EXPECT_TRUE(flags->fixed_newstyle && flags->no_zeroes);
  uint8_t bad[4] = {0, 0, 0, 4};
  EXPECT_FALSE(ParseClientFlags(bad).ok());
}

TEST(NbdParse, OptionHeaderChecksMagicAndLength) {
  std::vector<uint8_t> h;
  ByteWriter w(&h);
  w.U64(kOptionMagic);
  w.U32(kOptGo);
  w.U32(10);
  auto parsed = ParseOptionHeader(h);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->option, kOptGo);
  EXPECT_EQ(parsed->length, 10u);
  h[0] ^= 1;
  EXPECT_EQ(ParseOptionHeader(h).status().code(), Errc::kProtocol);
  h[0] ^= 1;
  StoreBe32(h.data() + 12, kMaxOptionLength + 1);
  EXPECT_FALSE(ParseOptionHeader(h).ok());
}

TEST(NbdParse, GoSendsInfoAndOpens) {
  FakeCatalog catalog;
  auto out = HandleOption(
      kOptGo, InfoRequest("disk", {kInfoBlockSize, kInfoName, kInfoDescription}), {}, catalog);
  EXPECT_EQ(out.action, OptionAction::kTransmission);
  EXPECT_EQ(out.export_name, "disk");
  ASSERT_EQ(catalog.opened_.size(), 1u);
  auto replies = ParseReplies(out.reply);
  ASSERT_EQ(replies.size(), 5u);
  EXPECT_EQ(replies.back().type, kRepAck);
  bool saw_export = false, saw_block = false, saw_name = false, saw_desc = false;
  for (const auto& r : replies) {
    if (r.type != kRepInfo) continue;
    uint16_t item = LoadBe16(r.data.data());
    if (item == kInfoExport) {
      saw_export = true;
      ASSERT_EQ(r.data.size(), 12u);
      EXPECT_EQ(LoadBe64(r.data.data() + 2), 1u << 20);
      uint16_t flags = LoadBe16(r.data.data() + 10);
      EXPECT_EQ(flags & (kHasFlags | kSendFlush | kSendFua | kSendTrim | kSendWriteZeroes |
                         kCanMultiConn),
                kHasFlags | kSendFlush | kSendFua | kSendTrim | kSendWriteZeroes | kCanMultiConn);
      EXPECT_EQ(flags & kReadOnly, 0);
    } else if (item == kInfoBlockSize) {
      saw_block = true;
      EXPECT_EQ(LoadBe32(r.data.data() + 2), 512u);
    } else if (item == kInfoName) {
      saw_name = std::string(r.data.begin() + 2, r.data.end()) == "disk";
    } else if (item == kInfoDescription) {
      saw_desc = std::string(r.data.begin() + 2, r.data.end()) == "test disk";
    }
  }
  EXPECT_TRUE(saw_export && saw_block && saw_name && saw_desc);
}

TEST(NbdParse, InfoDoesNotOpen) {
  FakeCatalog catalog;
  auto out = HandleOption(kOptInfo, InfoRequest("disk", {}), {}, catalog);
  EXPECT_EQ(out.action, OptionAction::kContinue);
  EXPECT_TRUE(catalog.opened_.empty());
  EXPECT_EQ(ParseReplies(out.reply).back().type, kRepAck);
}

TEST(NbdParse, GoRefusedByPolicyCarriesMessage) {
  FakeCatalog catalog;
  catalog.refuse_ = "resource r0 is Secondary";
  auto out = HandleOption(kOptGo, InfoRequest("disk", {}), {}, catalog);
  EXPECT_EQ(out.action, OptionAction::kContinue);
  auto replies = ParseReplies(out.reply);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].type, kRepErrPolicy);
  EXPECT_EQ(std::string(replies[0].data.begin(), replies[0].data.end()), catalog.refuse_);
}

TEST(NbdParse, GoUnknownExportAndMalformedData) {
  FakeCatalog catalog;
  auto out = HandleOption(kOptGo, InfoRequest("nope", {}), {}, catalog);
  EXPECT_EQ(ParseReplies(out.reply)[0].type, kRepErrUnknown);
  auto data = InfoRequest("disk", {kInfoName});
  data.pop_back();  // odd trailing byte
  out = HandleOption(kOptGo, data, {}, catalog);
  EXPECT_EQ(ParseReplies(out.reply)[0].type, kRepErrInvalid);
  std::vector<uint8_t> huge_name = {0xff, 0xff, 0xff, 0xff};
  out = HandleOption(kOptInfo, huge_name, {}, catalog);
  EXPECT_EQ(ParseReplies(out.reply)[0].type, kRepErrInvalid);
  EXPECT_TRUE(catalog.opened_.empty());
}

TEST(NbdParse, ListAbortUnsupAndExportName) {
  FakeCatalog catalog;
  auto list = ParseReplies(HandleOption(kOptList, {}, {}, catalog).reply);
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].type, kRepServer);
  EXPECT_EQ(LoadBe32(list[0].data.data()), 4u);
  EXPECT_EQ(list[2].type, kRepAck);
  uint8_t junk[1] = {1};
  EXPECT_EQ(ParseReplies(HandleOption(kOptList, junk, {}, catalog).reply)[0].type, kRepErrInvalid);

  auto abort = HandleOption(kOptAbort, {}, {}, catalog);
  EXPECT_EQ(abort.action, OptionAction::kAbort);
  EXPECT_EQ(ParseReplies(abort.reply)[0].type, kRepAck);

  for (uint32_t opt : {kOptStartTls, kOptStructuredReply, 10u, 11u, 12345u}) {
    auto unsup = HandleOption(opt, {}, {}, catalog);
    EXPECT_EQ(unsup.action, OptionAction::kContinue);
    EXPECT_EQ(ParseReplies(unsup.reply)[0].type, kRepErrUnsup) << opt;
  }

  std::string name = "disk";
  std::span<const uint8_t> name_bytes(reinterpret_cast<const uint8_t*>(name.data()), name.size());
  auto go = HandleOption(kOptExportName, name_bytes, ClientFlags{true, false}, catalog);
  EXPECT_EQ(go.action, OptionAction::kTransmission);
  EXPECT_EQ(go.reply.size(), 8u + 2u + 124u);
  go = HandleOption(kOptExportName, name_bytes, ClientFlags{true, true}, catalog);
  EXPECT_EQ(go.reply.size(), 10u);
  std::string bad = "missing";
  auto closed = HandleOption(kOptExportName,
                             std::span(reinterpret_cast<const uint8_t*>(bad.data()), bad.size()),
                             {}, catalog);
  EXPECT_EQ(closed.action, OptionAction::kClose);
}

std::vector<uint8_t> RequestBytes(uint16_t flags, uint16_t type, uint64_t cookie, uint64_t offset,
                                  uint32_t length, uint32_t magic = kRequestMagic) {
  std::vector<uint8_t> out;
  ByteWriter w(&out);
  w.U32(magic);
  w.U16(flags);
  w.U16(type);
  w.U64(cookie);
  w.U64(offset);
  w.U32(length);
  return out;
}

TEST(NbdParse, RequestRoundTripAndBadMagic) {
  auto req = ParseRequest(RequestBytes(kCmdFlagFua, kCmdWrite, 77, 4096, 512));
  ASSERT_TRUE(req.ok());
  EXPECT_EQ(req->cookie, 77u);
  EXPECT_EQ(req->offset, 4096u);
  EXPECT_EQ(req->length, 512u);
  EXPECT_EQ(req->flags, kCmdFlagFua);
  EXPECT_FALSE(ParseRequest(RequestBytes(0, kCmdRead, 1, 0, 512, 0x12345678)).ok());
}

TEST(NbdParse, CheckRequestErrors) {
  ExportInfo info;
  info.size = 1 << 20;
  info.min_block = 512;
  info.max_block = 1 << 16;
  auto check = [&](uint16_t flags, uint16_t type, uint64_t off, uint32_t len) {
    return CheckRequest(*ParseRequest(RequestBytes(flags, type, 1, off, len)), info);
  };
  EXPECT_EQ(check(0, kCmdRead, 0, 4096).error, 0u);
  EXPECT_EQ(check(0, kCmdRead, (1 << 20) - 512, 1024).error, kEinval);
  EXPECT_EQ(check(0, kCmdWrite, (1 << 20) - 512, 1024).error, kEnospc);
  EXPECT_EQ(check(0, kCmdWrite, (1 << 20) - 512, 1024).payload, 1024u);
  EXPECT_EQ(check(0, kCmdWriteZeroes, 1 << 20, 512).error, kEnospc);
  EXPECT_EQ(check(0, kCmdTrim, ~0ull - 100, 512).error, kEinval);  // no overflow wrap
  EXPECT_EQ(check(0, kCmdRead, 100, 512).error, kEinval);          // unaligned
  EXPECT_EQ(check(0, kCmdRead, 0, 1 << 17).error, kEoverflow);
  auto big_write = check(0, kCmdWrite, 0, 1 << 17);
  EXPECT_EQ(big_write.error, kEoverflow);
  EXPECT_EQ(big_write.payload, 1u << 17);
  EXPECT_FALSE(big_write.close);
  EXPECT_TRUE(check(0, kCmdWrite, 0, kMaxDrainPayload + 1).close);
  EXPECT_EQ(check(0, kCmdRead, 0, 0).error, kEinval);
  EXPECT_EQ(check(0, 99, 0, 512).error, kEinval);
  EXPECT_EQ(check(kCmdFlagNoHole, kCmdWrite, 0, 512).error, kEinval);
  EXPECT_EQ(check(kCmdFlagNoHole | kCmdFlagFua, kCmdWriteZeroes, 0, 512).error, 0u);
  EXPECT_EQ(check(0, kCmdFlush, 0, 0).error, 0u);
  EXPECT_EQ(check(0, kCmdDisc, 0, 0).error, 0u);
  info.read_only = true;
  EXPECT_EQ(check(0, kCmdWrite, 0, 512).error, kEperm);
  EXPECT_EQ(check(0, kCmdTrim, 0, 512).error, kEperm);
  EXPECT_EQ(check(0, kCmdRead, 0, 512).error, 0u);
  EXPECT_EQ(TransmissionFlags(info) & (kReadOnly | kSendTrim), kReadOnly);
}

TEST(NbdParse, ErrnoMapping) {
  EXPECT_EQ(ErrnoToNbd(0), 0u);
  EXPECT_EQ(ErrnoToNbd(EROFS), kEperm);
  EXPECT_EQ(ErrnoToNbd(EDQUOT), kEnospc);
  EXPECT_EQ(ErrnoToNbd(EIO), kEio);
  EXPECT_EQ(ErrnoToNbd(ENODEV), kEio);
}

}  // namespace
}  // namespace bsr::frontend::nbd
