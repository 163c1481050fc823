// FileExport: an Export backed by a storage::BackingDevice (file or block device).
// Runs on the BackingDevice's io_context thread, which must be the NBD server's.
#pragma once

#include <memory>
#include <string>

#include "frontend/export.h"
#include "storage/backing_device.h"

namespace bsr::frontend {

struct FileExportOptions {
  // 1 serves any alignment (unaligned requests go through the page cache); set the
  // device's logical block size to make clients align.
  uint32_t min_block = 1;
  std::string description;
  // When set, every Open is refused with this message (a Secondary's behaviour).
  std::string refuse_open;
};

class FileExport : public Export {
 public:
  FileExport(std::unique_ptr<storage::BackingDevice> device, FileExportOptions options);

  ExportInfo Info() const override;
  Status Open(const OpenContext& context) override;
  void Close(const OpenContext& context) override;
  void Read(uint64_t offset, std::span<uint8_t> buffer, IoCallback done) override;
  void Write(uint64_t offset, std::span<const uint8_t> data, bool fua, IoCallback done) override;
  void Flush(IoCallback done) override;
  void Trim(uint64_t offset, uint64_t length, bool fua, IoCallback done) override;
  void WriteZeroes(uint64_t offset, uint64_t length, bool fua, bool no_hole,
                   IoCallback done) override;

  void set_refuse_open(std::string message) { options_.refuse_open = std::move(message); }
  int open_count() const { return open_count_; }
  storage::BackingDevice& device() { return *device_; }

 private:
  // Runs `done` after a flush when fua is set and the first step succeeded.
  IoCallback ThenFlushIf(bool fua, IoCallback done);

  std::unique_ptr<storage::BackingDevice> device_;
  FileExportOptions options_;
  int open_count_ = 0;
};

}  // namespace bsr::frontend
