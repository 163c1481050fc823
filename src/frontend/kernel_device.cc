#include "frontend/kernel_device.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <asio/post.hpp>
#include <future>

namespace bsr::frontend {

namespace fs = std::filesystem;

namespace {

bool OnThreadOf(asio::io_context& io) {
  return io.get_executor().running_in_this_thread();
}

// True when `dir` is the root of a mount (its device differs from its parent's), or
// when it cannot even be looked at (a dead FUSE mount answers ENOTCONN).
bool IsMountPoint(const fs::path& dir) {
  struct stat self_st, parent_st;
  if (::stat(dir.c_str(), &self_st) != 0) return errno == ENOTCONN || errno == EIO;
  if (::stat(dir.parent_path().c_str(), &parent_st) != 0) return false;
  return self_st.st_dev != parent_st.st_dev;
}

}  // namespace

KernelDevice::KernelDevice(asio::io_context& io, std::shared_ptr<Export> exp,
                           KernelDeviceOptions options)
    : io_(io), export_(std::move(exp)), options_(std::move(options)) {
  open_context_.export_name = fmt::format("bsr{}", options_.minor);
  open_context_.peer = fmt::format("kernel {}", device_link().string());
}

fs::path KernelDevice::device_link() const {
  return options_.dev_dir / fmt::format("bsr{}", options_.minor);
}

fs::path KernelDevice::by_res_link() const {
  if (options_.resource.empty()) return {};
  return options_.dev_dir / "bsr" / "by-res" / options_.resource / std::to_string(options_.volume);
}

void KernelDevice::OnIo(std::function<void()> fn) {
  std::promise<void> done;
  asio::post(io_, [&] {
    fn();
    done.set_value();
  });
  done.get_future().wait();
}

Result<std::unique_ptr<KernelDevice>> KernelDevice::Create(asio::io_context& io,
                                                           std::shared_ptr<Export> exp,
                                                           KernelDeviceOptions options) {
  std::string name = fmt::format("bsr{}", options.minor);
  if (!exp) return Error(Errc::kInvalidArgument, "{}: no export", name);
  if (options.state_dir.empty() || options.dev_dir.empty()) {
    return Error(Errc::kInvalidArgument, "{}: state dir and dev dir must be set", name);
  }
  if (options.resource.find('/') != std::string::npos || options.resource == "." ||
      options.resource == "..") {
    return Error(Errc::kInvalidArgument, "{}: bad resource name '{}'", name, options.resource);
  }
  if (OnThreadOf(io)) {
    return Error(Errc::kInternal, "{}: KernelDevice::Create called on the io thread", name);
  }
  std::unique_ptr<KernelDevice> dev(new KernelDevice(io, std::move(exp), std::move(options)));
  const KernelDeviceOptions& opts = dev->options_;

  ExportInfo info;
  Status open_status;
  dev->OnIo([&] {
    info = dev->export_->Info();
    open_status = dev->export_->Open(dev->open_context_);
  });
  if (!open_status.ok()) return open_status.WithContext(name);
  dev->opened_ = true;
  // From here on a failure returns early and ~KernelDevice undoes what was done.

  uint32_t block_size = opts.block_size;
  if (block_size == 0) block_size = std::clamp<uint32_t>(info.min_block, 512, 4096);
  if (info.size < block_size) {
    return Error(Errc::kInvalidArgument, "{}: export of {} bytes is smaller than a block", name,
                 info.size);
  }
  if (info.size % block_size != 0) {
    spdlog::warn("{}: size {} is not a multiple of {}; the tail is not reachable", name, info.size,
                 block_size);
  }

  fs::path mount_dir = opts.state_dir / "kdev" / name;
  std::error_code ec;
  // First: a dead image's mount cannot even be stat'ed, so creating it would fail vaguely.
  if (IsMountPoint(mount_dir)) {
    return Error(Errc::kExists, "{}: {} is already mounted (a stale image? run the cleanup)", name,
                 mount_dir.string());
  }
  fs::create_directories(mount_dir, ec);
  if (ec) return Error(Errc::kIo, "{}: create {}: {}", name, mount_dir.string(), ec.message());
  if (!fs::is_empty(mount_dir, ec)) {
    return Error(Errc::kExists, "{}: {} is not empty", name, mount_dir.string());
  }

  FuseImageOptions image_options;
  image_options.mount_dir = mount_dir;
  image_options.fs_name = name;
  image_options.max_threads = opts.fuse_threads;
  BSR_ASSIGN_OR_RETURN(dev->image_,
                       FuseImage::Mount(io, dev->export_, info, std::move(image_options)));

  LoopOptions loop_options;
  loop_options.block_size = block_size;
  loop_options.read_only = info.read_only;
  loop_options.direct_io = opts.direct_io;
  auto loop = AttachLoop(dev->image_->image_path().string(), loop_options);
  if (!loop.ok()) return loop.status().WithContext(name);
  dev->loop_ = std::move(loop).value();
  dev->active_ = true;

  if (Status s = dev->MakeLinks(); !s.ok()) return s.WithContext(name);
  spdlog::info("{}: {} on {} (direct I/O {}, block size {})", name, dev->device_link().string(),
               dev->loop_.path, dev->loop_.direct_io ? "on" : "off", block_size);
  return dev;
}

void KernelDevice::CreateAsync(asio::io_context& io, std::shared_ptr<Export> exp,
                               KernelDeviceOptions options,
                               std::function<void(Result<std::unique_ptr<KernelDevice>>)> done) {
  std::thread([&io, exp = std::move(exp), options = std::move(options),
               done = std::move(done)]() mutable {
    auto result = std::make_shared<Result<std::unique_ptr<KernelDevice>>>(
        Create(io, std::move(exp), std::move(options)));
    asio::post(io, [result, done = std::move(done)] { done(std::move(*result)); });
  }).detach();
}

Status KernelDevice::MakeLinks() {
  auto make = [&](const fs::path& at) -> Status {
    std::error_code ec;
    fs::create_directories(at.parent_path(), ec);
    if (ec) return Error(Errc::kIo, "create {}: {}", at.parent_path().string(), ec.message());
    auto st = fs::symlink_status(at, ec);
    if (fs::exists(st) && !fs::is_symlink(st)) {
      return Error(Errc::kExists, "{} exists and is not a link; not replacing it", at.string());
    }
    // Swap in atomically so that the name never points at nothing or something stale.
    fs::path tmp = at;
    tmp += ".new";
    fs::remove(tmp, ec);
    fs::create_symlink(loop_.path, tmp, ec);
    if (ec) return Error(Errc::kIo, "symlink {}: {}", tmp.string(), ec.message());
    fs::rename(tmp, at, ec);
    if (ec) {
      fs::remove(tmp, ec);
      return Error(Errc::kIo, "rename to {}: {}", at.string(), ec.message());
    }
    return Status::Ok();
  };
  BSR_RETURN_IF_ERROR(make(device_link()));
  if (!options_.resource.empty()) BSR_RETURN_IF_ERROR(make(by_res_link()));
  return Status::Ok();
}

void KernelDevice::RemoveLinks() {
  auto remove = [&](const fs::path& at) {
    std::error_code ec;
    // Only our own link: never a node or a link someone else put there since.
    if (fs::is_symlink(at, ec) && fs::read_symlink(at, ec) == fs::path(loop_.path)) {
      fs::remove(at, ec);
    }
  };
  remove(device_link());
  if (options_.resource.empty()) return;
  remove(by_res_link());
  std::error_code ec;
  for (fs::path dir : {by_res_link().parent_path(), options_.dev_dir / "bsr" / "by-res",
                       options_.dev_dir / "bsr"}) {
    if (fs::is_directory(dir, ec) && fs::is_empty(dir, ec)) fs::remove(dir, ec);
  }
}

Status KernelDevice::Teardown() {
  std::string name = fmt::format("bsr{}", options_.minor);
  if (OnThreadOf(io_)) {
    return Error(Errc::kInternal, "{}: KernelDevice::Teardown called on the io thread", name);
  }
  if (!active_) return Status::Ok();
  RemoveLinks();
  if (Status s = DetachLoop(loop_.index, options_.release_wait); !s.ok()) {
    if (Status links = MakeLinks(); !links.ok()) {
      spdlog::error("{}: restoring links: {}", name, links.ToString());
    }
    spdlog::warn("{}: teardown refused: {}", name, s.message());
    return s.WithContext(name);
  }
  active_ = false;
  fs::path mount_dir = image_->mount_dir();
  image_->Unmount();
  image_.reset();
  OnIo([&] { export_->Close(open_context_); });
  opened_ = false;
  std::error_code ec;
  fs::remove(mount_dir, ec);
  spdlog::info("{}: torn down ({} released)", name, loop_.path);
  return Status::Ok();
}

void KernelDevice::TeardownAsync(std::function<void(Status)> done) {
  if (worker_.joinable()) worker_.join();
  worker_ = std::thread([this, done = std::move(done)]() mutable {
    Status s = Teardown();
    asio::post(io_, [s, done = std::move(done)] { done(s); });
  });
}

KernelDevice::~KernelDevice() {
  if (worker_.joinable()) worker_.join();
  std::string name = fmt::format("bsr{}", options_.minor);
  bool on_io = OnThreadOf(io_);
  if (active_) {
    // Not torn down (a failed Create, or shutdown): detach whatever the users say.
    if (on_io) spdlog::error("{}: destroyed on the io thread while active", name);
    RemoveLinks();
    if (Status s = ForceDetachLoop(loop_.index); !s.ok()) {
      spdlog::error("{}: {}", name, s.message());
    }
    active_ = false;
  }
  if (image_) {
    fs::path mount_dir = image_->mount_dir();
    image_->Unmount();
    image_.reset();
    std::error_code ec;
    fs::remove(mount_dir, ec);
  }
  if (opened_) {
    if (on_io) {
      export_->Close(open_context_);
    } else {
      OnIo([&] { export_->Close(open_context_); });
    }
    opened_ = false;
  }
}

}  // namespace bsr::frontend
