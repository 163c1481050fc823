// MetaIo: the only way meta/ touches storage (files, block devices, or test doubles).
// Not thread-safe: owned by the Metadata object using it, i.e. one strand per device.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"

namespace bsr::meta {

// Synchronous positional I/O. Implementations may block; callers run them on a thread
// that is allowed to block (the device's metadata strand), never a network thread.
class MetaIo {
 public:
  virtual ~MetaIo() = default;
  // Reads exactly data.size() bytes at `offset` (a short read is an error).
  virtual Status Read(uint64_t offset, std::span<uint8_t> data) = 0;
  // Writes exactly data.size() bytes at `offset`.
  virtual Status Write(uint64_t offset, std::span<const uint8_t> data) = 0;
  // Makes every completed write durable (fdatasync / cache flush).
  virtual Status Flush() = 0;
  // Size of the device or file in bytes.
  virtual uint64_t Size() const = 0;
  // Human-readable name for messages ("/dev/loop3").
  virtual std::string Name() const = 0;
};

struct FileIoOptions {
  bool read_only = false;
  // Block devices only: open with O_EXCL so a mounted or otherwise claimed device is refused.
  bool exclusive = false;
};

// File or block device via pread/pwrite/fdatasync; block device size via BLKGETSIZE64.
class FileIo final : public MetaIo {
 public:
  static Result<std::unique_ptr<FileIo>> Open(const std::string& path,
                                              const FileIoOptions& options = {});

  Status Read(uint64_t offset, std::span<uint8_t> data) override;
  Status Write(uint64_t offset, std::span<const uint8_t> data) override;
  Status Flush() override;
  uint64_t Size() const override { return size_; }
  std::string Name() const override { return path_; }
  bool is_block_device() const { return block_device_; }

 private:
  FileIo(std::string path, UniqueFd fd, uint64_t size, bool block_device)
      : path_(std::move(path)), fd_(std::move(fd)), size_(size), block_device_(block_device) {}
  std::string path_;
  UniqueFd fd_;
  uint64_t size_;
  bool block_device_;
};

// In-memory device: unit tests and the fuzzer.
class MemIo final : public MetaIo {
 public:
  explicit MemIo(uint64_t size) : data_(size, 0) {}
  explicit MemIo(std::vector<uint8_t> data) : data_(std::move(data)) {}
  Status Read(uint64_t offset, std::span<uint8_t> data) override;
  Status Write(uint64_t offset, std::span<const uint8_t> data) override;
  Status Flush() override { return Status::Ok(); }
  uint64_t Size() const override { return data_.size(); }
  std::string Name() const override { return "mem"; }
  std::vector<uint8_t>& bytes() { return data_; }

 private:
  std::vector<uint8_t> data_;
};

// Fault injection for crash tests. The plan is shared by every FaultIo of one run (a
// run may reopen the metadata): writes are forwarded until `write_limit` have completed;
// later writes fail (the "crash"), the first refused one optionally torn (its first half
// of whole 512-byte sectors reaches the medium); flushes fail once a write was refused.
struct FaultPlan {
  uint64_t write_limit = ~uint64_t{0};
  bool tear = false;
  uint64_t writes = 0;   // completed writes
  bool refused = false;  // the crash happened
};

class FaultIo final : public MetaIo {
 public:
  FaultIo(MetaIo* inner, FaultPlan* plan) : inner_(inner), plan_(plan) {}
  Status Read(uint64_t offset, std::span<uint8_t> data) override;
  Status Write(uint64_t offset, std::span<const uint8_t> data) override;
  Status Flush() override;
  uint64_t Size() const override { return inner_->Size(); }
  std::string Name() const override { return inner_->Name(); }

 private:
  MetaIo* inner_;
  FaultPlan* plan_;
};

}  // namespace bsr::meta
