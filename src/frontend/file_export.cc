#include "frontend/file_export.h"

#include <spdlog/spdlog.h>

#include "frontend/nbd_proto.h"

namespace bsr::frontend {

FileExport::FileExport(std::unique_ptr<storage::BackingDevice> device, FileExportOptions options)
    : device_(std::move(device)), options_(std::move(options)) {}

ExportInfo FileExport::Info() const {
  ExportInfo info;
  info.size = device_->size();
  info.min_block = options_.min_block == 0 ? 1 : options_.min_block;
  info.preferred_block = std::max<uint32_t>(device_->logical_block_size(), info.min_block);
  info.max_block = nbd::kDefaultMaxBlock;
  info.read_only = device_->read_only();
  info.description = options_.description;
  return info;
}

Status FileExport::Open(const OpenContext& context) {
  if (!options_.refuse_open.empty()) return Status(Errc::kState, options_.refuse_open);
  ++open_count_;
  spdlog::debug("export {}: opened by connection {} ({}), {} open", context.export_name,
                context.connection_id, context.peer, open_count_);
  return Status::Ok();
}

void FileExport::Close(const OpenContext& context) {
  --open_count_;
  spdlog::debug("export {}: closed by connection {}, {} open", context.export_name,
                context.connection_id, open_count_);
}

void FileExport::Read(uint64_t offset, std::span<uint8_t> buffer, IoCallback done) {
  device_->Read(offset, buffer, std::move(done));
}

void FileExport::Write(uint64_t offset, std::span<const uint8_t> data, bool fua, IoCallback done) {
  device_->Write(offset, data, fua, std::move(done));
}

void FileExport::Flush(IoCallback done) {
  device_->Flush(std::move(done));
}

IoCallback FileExport::ThenFlushIf(bool fua, IoCallback done) {
  if (!fua) return done;
  return [this, done = std::move(done)](IoResult result) mutable {
    if (!result.ok()) return done(std::move(result));
    device_->Flush(std::move(done));
  };
}

void FileExport::Trim(uint64_t offset, uint64_t length, bool fua, IoCallback done) {
  device_->Discard(offset, length, ThenFlushIf(fua, std::move(done)));
}

void FileExport::WriteZeroes(uint64_t offset, uint64_t length, bool fua, bool no_hole,
                             IoCallback done) {
  device_->WriteZeroes(offset, length, /*may_unmap=*/!no_hole, ThenFlushIf(fua, std::move(done)));
}

}  // namespace bsr::frontend
