#include "meta/io.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace bsr::meta {

Result<std::unique_ptr<FileIo>> FileIo::Open(const std::string& path,
                                             const FileIoOptions& options) {
  int flags = (options.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Error(Errc::kNotFound, "{}: {}", path, std::strerror(errno));
  }
  bool block = S_ISBLK(st.st_mode);
  if (!block && !S_ISREG(st.st_mode)) {
    return Error(Errc::kInvalidArgument, "{}: neither a regular file nor a block device", path);
  }
  if (block && options.exclusive) flags |= O_EXCL;
  UniqueFd fd(::open(path.c_str(), flags));
  if (!fd.valid()) {
    int err = errno;
    if (err == EBUSY) {
      return Error(Errc::kBusy, "{}: device is in use (mounted or claimed by another holder)",
                   path);
    }
    return Error(err == EACCES ? Errc::kPermission : Errc::kIo, "open {}: {}", path,
                 std::strerror(err));
  }
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (block) {
    if (::ioctl(fd.get(), BLKGETSIZE64, &size) != 0) {
      return Error(Errc::kIo, "{}: BLKGETSIZE64: {}", path, std::strerror(errno));
    }
  }
  return std::unique_ptr<FileIo>(new FileIo(path, std::move(fd), size, block));
}

Status FileIo::Read(uint64_t offset, std::span<uint8_t> data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pread(fd_.get(), data.data() + done, data.size() - done,
                        static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error(Errc::kIo, "read {} at {}: {}", path_, offset + done, std::strerror(errno));
    }
    if (n == 0) {
      return Error(Errc::kIo, "read {} at {}: unexpected end of device", path_, offset + done);
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status FileIo::Write(uint64_t offset, std::span<const uint8_t> data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd_.get(), data.data() + done, data.size() - done,
                         static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error(Errc::kIo, "write {} at {}: {}", path_, offset + done, std::strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status FileIo::Flush() {
  if (::fdatasync(fd_.get()) != 0) {
    return Error(Errc::kIo, "flush {}: {}", path_, std::strerror(errno));
  }
  return Status::Ok();
}

Status MemIo::Read(uint64_t offset, std::span<uint8_t> data) {
  if (offset > data_.size() || data.size() > data_.size() - offset) {
    return Error(Errc::kIo, "read mem at {} (+{}): beyond end {}", offset, data.size(),
                 data_.size());
  }
  std::memcpy(data.data(), data_.data() + offset, data.size());
  return Status::Ok();
}

Status MemIo::Write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset > data_.size() || data.size() > data_.size() - offset) {
    return Error(Errc::kIo, "write mem at {} (+{}): beyond end {}", offset, data.size(),
                 data_.size());
  }
  std::memcpy(data_.data() + offset, data.data(), data.size());
  return Status::Ok();
}

Status FaultIo::Read(uint64_t offset, std::span<uint8_t> data) {
  return inner_->Read(offset, data);
}

Status FaultIo::Write(uint64_t offset, std::span<const uint8_t> data) {
  if (plan_->refused || plan_->writes >= plan_->write_limit) {
    if (plan_->tear && !plan_->refused && data.size() > 512) {
      size_t half = (data.size() / 2) / 512 * 512;
      (void)inner_->Write(offset, data.subspan(0, half));
    }
    plan_->refused = true;
    return Error(Errc::kIo, "injected write failure at {} after {} writes", offset, plan_->writes);
  }
  ++plan_->writes;
  return inner_->Write(offset, data);
}

Status FaultIo::Flush() {
  if (plan_->refused) {
    return Error(Errc::kIo, "injected flush failure after {} writes", plan_->writes);
  }
  return inner_->Flush();
}

}  // namespace bsr::meta
