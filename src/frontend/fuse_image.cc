#define FUSE_USE_VERSION 312
#include "frontend/fuse_image.h"

#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <linux/falloc.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <asio/post.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <future>
#include <vector>

#include "storage/aligned_buffer.h"

namespace bsr::frontend {

namespace {

constexpr fuse_ino_t kImageIno = 2;
// The image never changes size behind the kernel's back, so attributes stay valid.
constexpr double kAttrTimeout = 3600.0;
// Largest range one Trim/WriteZeroes call covers (NBD lengths are 32-bit).
constexpr uint64_t kMaxZeroChunk = 1ull << 30;

// Per-worker scratch buffer, kept between requests: a fresh 1 MiB allocation per
// request would cost an mmap and 256 page faults each time.
std::span<uint8_t> Scratch(size_t size) {
  thread_local storage::AlignedBuffer buffer;
  if (buffer.size() < size) buffer = storage::AlignedBuffer(size);
  return {buffer.data(), size};
}

}  // namespace

// The low-level callbacks; a struct so that it can reach FuseImage's private members.
struct FuseOps {
  static FuseImage& Self(fuse_req_t req) {
    return *static_cast<FuseImage*>(fuse_req_userdata(req));
  }

  static void FillAttr(const FuseImage& self, fuse_ino_t ino, struct stat* st) {
    std::memset(st, 0, sizeof(*st));
    st->st_ino = ino;
    st->st_uid = 0;
    st->st_gid = 0;
    st->st_blksize = 4096;
    if (ino == FUSE_ROOT_ID) {
      st->st_mode = S_IFDIR | 0700;
      st->st_nlink = 2;
    } else {
      st->st_mode = S_IFREG | (self.info_.read_only ? 0400 : 0600);
      st->st_nlink = 1;
      st->st_size = static_cast<off_t>(self.info_.size);
      st->st_blocks = static_cast<blkcnt_t>(self.info_.size / 512);
    }
  }

  static void Reply(fuse_req_t req, const storage::IoResult& result) {
    if (!result.ok()) {
      Self(req).stats_.errors++;
      spdlog::warn("{}: {}", Self(req).options_.fs_name, result.status.ToString());
    }
    fuse_reply_err(req, result.err);
  }

  static void Init(void* userdata, fuse_conn_info* conn) {
    auto* self = static_cast<FuseImage*>(userdata);
    // Loop's direct I/O arrives as async kiocbs: let the kernel keep several in flight.
    if (conn->capable & FUSE_CAP_ASYNC_DIO) conn->want |= FUSE_CAP_ASYNC_DIO;
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
    conn->max_write = self->options_.max_io;
    conn->max_background = 64;
    conn->congestion_threshold = 48;
  }

  static void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
    FuseImage& self = Self(req);
    if (parent != FUSE_ROOT_ID || self.options_.file_name != name) {
      fuse_reply_err(req, ENOENT);
      return;
    }
    fuse_entry_param entry{};
    entry.ino = kImageIno;
    entry.generation = 1;
    entry.attr_timeout = kAttrTimeout;
    entry.entry_timeout = kAttrTimeout;
    FillAttr(self, kImageIno, &entry.attr);
    fuse_reply_entry(req, &entry);
  }

  static void GetAttr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
    if (ino != FUSE_ROOT_ID && ino != kImageIno) {
      fuse_reply_err(req, ENOENT);
      return;
    }
    struct stat st;
    FillAttr(Self(req), ino, &st);
    fuse_reply_attr(req, &st, kAttrTimeout);
  }

  static void SetAttr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                      fuse_file_info*) {
    FuseImage& self = Self(req);
    // The image is a block device's contents: it cannot be truncated or grown, and its
    // owner and mode are fixed. Time updates are accepted and forgotten.
    if ((to_set & FUSE_SET_ATTR_SIZE) &&
        (ino != kImageIno || static_cast<uint64_t>(attr->st_size) != self.info_.size)) {
      fuse_reply_err(req, EPERM);
      return;
    }
    if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
      fuse_reply_err(req, EPERM);
      return;
    }
    struct stat st;
    FillAttr(self, ino, &st);
    fuse_reply_attr(req, &st, kAttrTimeout);
  }

  static void Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    FuseImage& self = Self(req);
    if (ino != kImageIno) {
      fuse_reply_err(req, EISDIR);
      return;
    }
    if ((fi->flags & O_ACCMODE) != O_RDONLY && self.info_.read_only) {
      fuse_reply_err(req, EROFS);
      return;
    }
    // With atomic O_TRUNC (libfuse's default) the truncate arrives here; the image
    // cannot shrink.
    if (fi->flags & O_TRUNC) {
      fuse_reply_err(req, EPERM);
      return;
    }
    // No page cache for the image: every read and write reaches the Export.
    fi->direct_io = 1;
    fi->keep_cache = 0;
    fi->noflush = 1;
    fuse_reply_open(req, fi);
  }

  static void Release(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }
  static void FlushOp(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }

  static bool Misaligned(const FuseImage& self, uint64_t offset, uint64_t length) {
    uint64_t align = self.info_.min_block;
    return align > 1 && (offset % align != 0 || length % align != 0);
  }

  static void Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
    FuseImage& self = Self(req);
    if (ino != kImageIno || off < 0) {
      fuse_reply_err(req, EINVAL);
      return;
    }
    uint64_t offset = static_cast<uint64_t>(off);
    if (offset >= self.info_.size || size == 0) {
      fuse_reply_buf(req, nullptr, 0);
      return;
    }
    uint64_t length = std::min<uint64_t>(size, self.info_.size - offset);
    if (Misaligned(self, offset, length)) {
      fuse_reply_err(req, EINVAL);
      return;
    }
    self.stats_.reads++;
    std::span<uint8_t> buffer = Scratch(length);
    uint64_t done = 0;
    while (done < length) {
      uint64_t chunk = std::min<uint64_t>(length - done, self.info_.max_block);
      std::span<uint8_t> part(buffer.data() + done, chunk);
      auto result = self.Call(
          [&](Export& e, storage::IoCallback cb) { e.Read(offset + done, part, std::move(cb)); });
      if (!result.ok()) return Reply(req, result);
      done += chunk;
    }
    fuse_reply_buf(req, reinterpret_cast<const char*>(buffer.data()), length);
  }

  static void Write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
                    fuse_file_info*) {
    FuseImage& self = Self(req);
    if (ino != kImageIno || off < 0) {
      fuse_reply_err(req, EINVAL);
      return;
    }
    if (self.info_.read_only) {
      fuse_reply_err(req, EROFS);
      return;
    }
    uint64_t offset = static_cast<uint64_t>(off);
    if (offset > self.info_.size || size > self.info_.size - offset) {
      fuse_reply_err(req, ENOSPC);
      return;
    }
    if (Misaligned(self, offset, size)) {
      fuse_reply_err(req, EINVAL);
      return;
    }
    self.stats_.writes++;
    // An aligned copy lets the Export take its O_DIRECT path.
    std::span<uint8_t> buffer = Scratch(size);
    if (size > 0) std::memcpy(buffer.data(), buf, size);
    uint64_t done = 0;
    while (done < size) {
      uint64_t chunk = std::min<uint64_t>(size - done, self.info_.max_block);
      std::span<const uint8_t> part(buffer.data() + done, chunk);
      auto result = self.Call([&](Export& e, storage::IoCallback cb) {
        e.Write(offset + done, part, /*fua=*/false, std::move(cb));
      });
      if (!result.ok()) return Reply(req, result);
      done += chunk;
    }
    fuse_reply_write(req, size);
  }

  static void Fsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) {
    FuseImage& self = Self(req);
    self.stats_.fsyncs++;
    if (!self.info_.can_flush) {
      fuse_reply_err(req, 0);
      return;
    }
    Reply(req, self.Call([](Export& e, storage::IoCallback cb) { e.Flush(std::move(cb)); }));
  }

  static void Fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                        fuse_file_info*) {
    FuseImage& self = Self(req);
    if (ino != kImageIno || off < 0 || len <= 0) {
      fuse_reply_err(req, EINVAL);
      return;
    }
    uint64_t offset = static_cast<uint64_t>(off);
    uint64_t length = static_cast<uint64_t>(len);
    bool keep_size = mode & FALLOC_FL_KEEP_SIZE;
    int op = mode & ~FALLOC_FL_KEEP_SIZE;
    if (op == 0) {
      // Preallocation: every block of the image already exists; it cannot grow.
      fuse_reply_err(req, (offset + length <= self.info_.size || keep_size) ? 0 : EFBIG);
      return;
    }
    // Punching a hole must read back as zeroes, which Trim does not promise; so both
    // modes become WriteZeroes (a hole may be punched, or the blocks kept).
    bool no_hole;
    if (op == FALLOC_FL_PUNCH_HOLE && keep_size) {
      no_hole = false;
    } else if (op == FALLOC_FL_ZERO_RANGE) {
      no_hole = true;
    } else {
      fuse_reply_err(req, EOPNOTSUPP);
      return;
    }
    if (self.info_.read_only) {
      fuse_reply_err(req, EROFS);
      return;
    }
    if (!self.info_.can_write_zeroes) {
      fuse_reply_err(req, EOPNOTSUPP);
      return;
    }
    if (offset >= self.info_.size) {
      fuse_reply_err(req, keep_size ? 0 : EFBIG);
      return;
    }
    if (length > self.info_.size - offset) {
      if (!keep_size) {
        fuse_reply_err(req, EFBIG);
        return;
      }
      length = self.info_.size - offset;
    }
    if (Misaligned(self, offset, length)) {
      fuse_reply_err(req, EINVAL);
      return;
    }
    self.stats_.zeroes++;
    uint64_t done = 0;
    while (done < length) {
      uint64_t chunk = std::min(length - done, kMaxZeroChunk);
      auto result = self.Call([&](Export& e, storage::IoCallback cb) {
        e.WriteZeroes(offset + done, chunk, /*fua=*/false, no_hole, std::move(cb));
      });
      if (!result.ok()) return Reply(req, result);
      done += chunk;
    }
    fuse_reply_err(req, 0);
  }

  static void StatFs(fuse_req_t req, fuse_ino_t) {
    FuseImage& self = Self(req);
    struct statvfs st {};
    // Loop derives its discard granularity from f_bsize.
    st.f_bsize = 4096;
    st.f_frsize = 4096;
    st.f_blocks = self.info_.size / 4096;
    st.f_files = 2;
    st.f_namemax = 255;
    fuse_reply_statfs(req, &st);
  }

  static void OpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    if (ino != FUSE_ROOT_ID) {
      fuse_reply_err(req, ENOTDIR);
      return;
    }
    fuse_reply_open(req, fi);
  }

  static void ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
    FuseImage& self = Self(req);
    if (ino != FUSE_ROOT_ID) {
      fuse_reply_err(req, ENOTDIR);
      return;
    }
    struct Entry {
      const char* name;
      fuse_ino_t ino;
    };
    const Entry entries[] = {
        {".", FUSE_ROOT_ID}, {"..", FUSE_ROOT_ID}, {self.options_.file_name.c_str(), kImageIno}};
    std::vector<char> buffer(size);
    size_t used = 0;
    for (off_t i = off; i < static_cast<off_t>(std::size(entries)); ++i) {
      struct stat st;
      FillAttr(self, entries[i].ino, &st);
      size_t need =
          fuse_add_direntry(req, buffer.data() + used, size - used, entries[i].name, &st, i + 1);
      if (need > size - used) break;
      used += need;
    }
    fuse_reply_buf(req, buffer.data(), used);
  }

  static void ReleaseDir(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }
};

namespace {

const fuse_lowlevel_ops kOps = [] {
  fuse_lowlevel_ops ops{};
  ops.init = FuseOps::Init;
  ops.lookup = FuseOps::Lookup;
  ops.getattr = FuseOps::GetAttr;
  ops.setattr = FuseOps::SetAttr;
  ops.open = FuseOps::Open;
  ops.release = FuseOps::Release;
  ops.flush = FuseOps::FlushOp;
  ops.read = FuseOps::Read;
  ops.write = FuseOps::Write;
  ops.fsync = FuseOps::Fsync;
  ops.fallocate = FuseOps::Fallocate;
  ops.statfs = FuseOps::StatFs;
  ops.opendir = FuseOps::OpenDir;
  ops.readdir = FuseOps::ReadDir;
  ops.releasedir = FuseOps::ReleaseDir;
  return ops;
}();

// libfuse logs through its own hook; route it to spdlog.
void FuseLog(enum fuse_log_level level, const char* fmt, va_list ap) {
  char line[512];
  std::vsnprintf(line, sizeof(line), fmt, ap);
  std::string_view text(line);
  while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  if (level <= FUSE_LOG_ERR) {
    spdlog::error("libfuse: {}", text);
  } else if (level <= FUSE_LOG_NOTICE) {
    spdlog::info("libfuse: {}", text);
  } else {
    spdlog::debug("libfuse: {}", text);
  }
}

}  // namespace

FuseImage::FuseImage(asio::io_context& io, std::shared_ptr<Export> exp, const ExportInfo& info,
                     FuseImageOptions options)
    : io_(io), export_(std::move(exp)), info_(info), options_(std::move(options)) {}

Result<std::unique_ptr<FuseImage>> FuseImage::Mount(asio::io_context& io,
                                                    std::shared_ptr<Export> exp,
                                                    const ExportInfo& info,
                                                    FuseImageOptions options) {
  if (options.file_name.empty() || options.file_name.find('/') != std::string::npos) {
    return Error(Errc::kInvalidArgument, "fuse image: bad file name '{}'", options.file_name);
  }
  if (options.max_io < 4096) options.max_io = 4096;
  if (options.max_threads == 0) options.max_threads = 1;
  std::unique_ptr<FuseImage> self(new FuseImage(io, std::move(exp), info, std::move(options)));
  const auto& mount_dir = self->options_.mount_dir;
  fuse_set_log_func(FuseLog);

  // allow_other + default_permissions: the kernel checks the 0600 root-owned mode, so
  // root (and the loop driver acting for it) may open the image and nobody else.
  std::string mount_opts = fmt::format(
      "allow_other,default_permissions,noatime,fsname={},subtype=bsr", self->options_.fs_name);
  std::vector<std::string> arg_strings = {"bsr", "-o", mount_opts};
  std::vector<char*> argv;
  for (auto& a : arg_strings) argv.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  self->session_ = fuse_session_new(&args, &kOps, sizeof(kOps), self.get());
  fuse_opt_free_args(&args);
  if (self->session_ == nullptr) {
    return Error(Errc::kInternal, "fuse image {}: fuse_session_new failed (see log)",
                 mount_dir.string());
  }
  if (fuse_session_mount(self->session_, mount_dir.c_str()) != 0) {
    fuse_session_destroy(self->session_);
    self->session_ = nullptr;
    return Error(Errc::kIo, "fuse image: mounting FUSE on {} failed (is /dev/fuse there?)",
                 mount_dir.string());
  }
  self->mounted_ = true;

  FuseImage* raw = self.get();
  self->loop_thread_ = std::thread([raw] {
    // The workers serve a block device's writeback: reclaim must not wait on them.
    ::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0);
    fuse_loop_config* config = fuse_loop_cfg_create();
    fuse_loop_cfg_set_clone_fd(config, 1);
    fuse_loop_cfg_set_max_threads(config, raw->options_.max_threads);
    fuse_loop_cfg_set_idle_threads(config, raw->options_.max_threads);
    int rc = fuse_session_loop_mt(raw->session_, config);
    fuse_loop_cfg_destroy(config);
    if (rc < 0) spdlog::warn("{}: FUSE loop ended: {}", raw->options_.fs_name, std::strerror(-rc));
    raw->loop_done_ = true;
  });
  // Only now: the stat needs a worker to answer the kernel's FUSE_INIT.
  struct stat st;
  if (::stat(mount_dir.c_str(), &st) == 0) self->connection_id_ = minor(st.st_dev);
  spdlog::info("{}: FUSE image {} ({} bytes) mounted", self->options_.fs_name,
               self->image_path().string(), info.size);
  return self;
}

FuseImage::~FuseImage() {
  Unmount();
}

void FuseImage::Unmount() {
  if (session_ == nullptr) return;
  fuse_session_exit(session_);
  if (mounted_) {
    fuse_session_unmount(session_);
    mounted_ = false;
  }
  // The workers see ENODEV once the kernel drops the connection; if something still
  // holds the (detached) mount, abort the connection so that they do not wait forever.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!loop_done_ && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!loop_done_ && connection_id_ != 0) {
    spdlog::warn("{}: FUSE connection {} still busy after unmount; aborting it", options_.fs_name,
                 connection_id_);
    std::ofstream abort_file(fmt::format("/sys/fs/fuse/connections/{}/abort", connection_id_));
    abort_file << "1";
  }
  if (loop_thread_.joinable()) loop_thread_.join();
  fuse_session_destroy(session_);
  session_ = nullptr;
  spdlog::info("{}: FUSE image unmounted (reads={} writes={} fsyncs={} zeroes={} errors={})",
               options_.fs_name, stats_.reads.load(), stats_.writes.load(), stats_.fsyncs.load(),
               stats_.zeroes.load(), stats_.errors.load());
}

storage::IoResult FuseImage::Call(std::function<void(Export&, storage::IoCallback)> start) {
  std::promise<storage::IoResult> promise;
  auto future = promise.get_future();
  asio::post(io_, [&] {
    start(*export_, [&promise](storage::IoResult result) { promise.set_value(std::move(result)); });
  });
  return future.get();
}

}  // namespace bsr::frontend
