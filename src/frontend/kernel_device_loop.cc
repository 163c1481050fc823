#include "frontend/kernel_device_loop.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/unique_fd.h"

namespace bsr::frontend {

namespace {

namespace fs = std::filesystem;

std::string SysfsPath(int index, const char* attr) {
  return fmt::format("/sys/block/loop{}/{}", index, attr);
}

std::optional<std::string> ReadSysfs(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  std::string value = text.str();
  while (!value.empty() && (value.back() == '\n' || value.back() == ' ')) value.pop_back();
  return value;
}

Status Errno(Errc code, std::string_view what) {
  int err = errno;
  return Error(code, "{}: {} (errno {})", what, std::strerror(err), err);
}

bool HasHolders(int index) {
  std::error_code ec;
  for (auto it = fs::directory_iterator(SysfsPath(index, "holders"), ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    return true;
  }
  return false;
}

// Waits until the kernel has let go of the backing file.
bool WaitUnbound(int index, std::chrono::milliseconds wait) {
  auto deadline = std::chrono::steady_clock::now() + wait;
  while (true) {
    if (!LoopBackingFile(index)) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// After LOOP_CLR_FD on a device that someone else still has open, the kernel keeps it
// bound with LO_FLAGS_AUTOCLEAR set; take that flag back so that it stays as it was.
void RestoreAfterRefusedClear(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return;
  loop_info64 info{};
  if (::ioctl(fd.get(), LOOP_GET_STATUS64, &info) != 0) return;
  if (!(info.lo_flags & LO_FLAGS_AUTOCLEAR)) return;
  info.lo_flags &= ~LO_FLAGS_AUTOCLEAR;
  if (::ioctl(fd.get(), LOOP_SET_STATUS64, &info) != 0) {
    spdlog::warn("{}: could not clear autoclear again: {}", path, std::strerror(errno));
  }
}

}  // namespace

std::optional<std::string> LoopBackingFile(int index) {
  return ReadSysfs(SysfsPath(index, "loop/backing_file"));
}

std::vector<int> ListLoopDevices() {
  std::vector<int> result;
  std::error_code ec;
  for (auto it = fs::directory_iterator("/sys/block", ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.size() <= 4 || name.compare(0, 4, "loop") != 0) continue;
    if (name.find_first_not_of("0123456789", 4) != std::string::npos) continue;
    result.push_back(std::stoi(name.substr(4)));
  }
  std::sort(result.begin(), result.end());
  return result;
}

Result<std::string> LoopDevicePath(int index) {
  std::string path = fmt::format("/dev/loop{}", index);
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (!S_ISBLK(st.st_mode)) return Error(Errc::kState, "{} is not a block device", path);
    return path;
  }
  auto dev = ReadSysfs(SysfsPath(index, "dev"));
  unsigned major_nr = 0, minor_nr = 0;
  if (!dev || std::sscanf(dev->c_str(), "%u:%u", &major_nr, &minor_nr) != 2) {
    return Error(Errc::kNotFound, "loop{}: no device number in sysfs", index);
  }
  if (::mknod(path.c_str(), S_IFBLK | 0660, makedev(major_nr, minor_nr)) != 0 && errno != EEXIST) {
    return Errno(Errc::kIo, fmt::format("mknod {}", path));
  }
  return path;
}

Result<LoopDevice> AttachLoop(const std::string& file, const LoopOptions& options) {
  uint32_t bs = options.block_size;
  if (bs < 512 || bs > 4096 || (bs & (bs - 1)) != 0) {
    return Error(Errc::kInvalidArgument, "loop block size {} is not 512..4096, a power of two", bs);
  }
  UniqueFd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (!control.valid()) return Errno(Errc::kIo, "open /dev/loop-control");
  int mode = options.read_only ? O_RDONLY : O_RDWR;
  UniqueFd backing(::open(file.c_str(), mode | O_CLOEXEC));
  if (!backing.valid()) return Errno(Errc::kIo, fmt::format("open {}", file));

  bool direct = options.direct_io;
  for (int attempt = 0; attempt < 32; ++attempt) {
    int index = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
    if (index < 0) return Errno(Errc::kIo, "LOOP_CTL_GET_FREE");
    BSR_ASSIGN_OR_RETURN(std::string path, LoopDevicePath(index));
    UniqueFd dev(::open(path.c_str(), mode | O_CLOEXEC));
    if (!dev.valid()) return Errno(Errc::kIo, fmt::format("open {}", path));
    loop_config config{};
    config.fd = static_cast<uint32_t>(backing.get());
    config.block_size = bs;
    config.info.lo_flags =
        (direct ? LO_FLAGS_DIRECT_IO : 0) | (options.read_only ? LO_FLAGS_READ_ONLY : 0);
    std::strncpy(reinterpret_cast<char*>(config.info.lo_file_name), file.c_str(), LO_NAME_SIZE - 1);
    if (::ioctl(dev.get(), LOOP_CONFIGURE, &config) != 0) {
      int err = errno;
      if (err == EBUSY) continue;  // another process bound it first
      if (err == EINVAL && direct) {
        spdlog::warn("{}: direct I/O refused for {}; using buffered loop I/O", path, file);
        direct = false;
        continue;
      }
      return Error(Errc::kIo, "LOOP_CONFIGURE {} on {}: {} (errno {})", path, file,
                   std::strerror(err), err);
    }
    LoopDevice loop;
    loop.index = index;
    loop.path = path;
    loop.direct_io = ReadSysfs(SysfsPath(index, "loop/dio")).value_or("0") == "1";
    if (options.direct_io && !loop.direct_io) {
      spdlog::warn("{}: kernel did not enable direct I/O on {}", path, file);
    }
    return loop;
  }
  return Error(Errc::kBusy, "no free loop device for {} after 32 tries", file);
}

Status DetachLoop(int index, std::chrono::milliseconds wait) {
  BSR_ASSIGN_OR_RETURN(std::string path, LoopDevicePath(index));
  if (!LoopBackingFile(index)) return Status::Ok();
  if (HasHolders(index)) {
    return Error(Errc::kBusy, "{} is held by another device (see /sys/block/loop{}/holders)", path,
                 index);
  }
  // An exclusive open fails while a filesystem is mounted on it, and keeps anyone from
  // mounting it until the clear below is done.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_EXCL | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == EBUSY) {
      return Error(Errc::kBusy, "{} is in use (mounted or opened exclusively); unmount it first",
                   path);
    }
    return Errno(Errc::kIo, fmt::format("open {}", path));
  }
  if (::ioctl(fd.get(), LOOP_CLR_FD) != 0) {
    if (errno == ENXIO) return Status::Ok();
    return Errno(Errc::kIo, fmt::format("LOOP_CLR_FD {}", path));
  }
  fd.Reset();  // the last close releases the backing file
  if (WaitUnbound(index, wait)) return Status::Ok();
  RestoreAfterRefusedClear(path);
  if (!LoopBackingFile(index)) return Status::Ok();
  return Error(Errc::kBusy, "{} is held open by another process; close it first", path);
}

Status ForceDetachLoop(int index, std::chrono::milliseconds wait) {
  BSR_ASSIGN_OR_RETURN(std::string path, LoopDevicePath(index));
  if (!LoopBackingFile(index)) return Status::Ok();
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Errno(Errc::kIo, fmt::format("open {}", path));
  if (::ioctl(fd.get(), LOOP_CLR_FD) != 0 && errno != ENXIO) {
    return Errno(Errc::kIo, fmt::format("LOOP_CLR_FD {}", path));
  }
  fd.Reset();
  if (WaitUnbound(index, wait)) return Status::Ok();
  return Error(Errc::kBusy, "{} is still in use; it detaches on its last close", path);
}

}  // namespace bsr::frontend
