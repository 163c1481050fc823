// Test helpers for the FUSE image and kernel device tests: an io_context on its own
// thread, a FileExport on a temp file, and an Export wrapper that counts calls.
// The wrapper's methods run on the io thread; its counters are read from the test thread.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <atomic>
#include <fstream>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "frontend/file_export.h"

namespace bsr::frontend::testing {

inline std::vector<uint8_t> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

inline std::vector<uint8_t> ReadRange(const std::string& path, uint64_t offset, size_t n) {
  std::vector<uint8_t> out(n);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  ssize_t got = ::pread(fd, out.data(), n, static_cast<off_t>(offset));
  ::close(fd);
  if (got != static_cast<ssize_t>(n)) return {};
  return out;
}

// Delegates to an inner Export and counts what reaches it.
class CountingExport : public Export {
 public:
  explicit CountingExport(std::shared_ptr<Export> inner) : inner_(std::move(inner)) {}
  ExportInfo Info() const override { return inner_->Info(); }
  Status Open(const OpenContext& c) override {
    Status s = inner_->Open(c);
    if (s.ok()) opens++;
    return s;
  }
  void Close(const OpenContext& c) override {
    closes++;
    inner_->Close(c);
  }
  void Read(uint64_t o, std::span<uint8_t> b, IoCallback d) override {
    reads++;
    inner_->Read(o, b, std::move(d));
  }
  void Write(uint64_t o, std::span<const uint8_t> b, bool fua, IoCallback d) override {
    writes++;
    inner_->Write(o, b, fua, std::move(d));
  }
  void Flush(IoCallback d) override {
    flushes++;
    inner_->Flush(std::move(d));
  }
  void Trim(uint64_t o, uint64_t l, bool fua, IoCallback d) override {
    trims++;
    inner_->Trim(o, l, fua, std::move(d));
  }
  void WriteZeroes(uint64_t o, uint64_t l, bool fua, bool no_hole, IoCallback d) override {
    zeroes++;
    if (no_hole) zeroes_no_hole++;
    inner_->WriteZeroes(o, l, fua, no_hole, std::move(d));
  }

  std::atomic<int> opens{0}, closes{0}, reads{0}, writes{0}, flushes{0}, trims{0}, zeroes{0},
      zeroes_no_hole{0};

 private:
  std::shared_ptr<Export> inner_;
};

// An io_context running on its own thread, plus a FileExport on `path` opened on it.
class IoThread {
 public:
  IoThread() : guard_(io_.get_executor()), thread_([this] { io_.run(); }) {}
  ~IoThread() { Stop(); }
  void Stop() {
    if (!thread_.joinable()) return;
    guard_.reset();
    io_.stop();
    thread_.join();
  }
  asio::io_context& io() { return io_; }

  // Creates a file of `size` random bytes and a CountingExport over it (built on the io
  // thread, as BackingDevice wants).
  std::shared_ptr<CountingExport> MakeExport(const std::string& path, size_t size,
                                             FileExportOptions options = {}) {
    auto data = RandomBytes(size, 7);
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data.data()), size);
    std::promise<std::shared_ptr<CountingExport>> made;
    asio::post(io_, [&] {
      auto dev = storage::BackingDevice::Open(io_, path, {});
      if (!dev.ok()) return made.set_value(nullptr);
      made.set_value(std::make_shared<CountingExport>(
          std::make_shared<FileExport>(std::move(dev).value(), options)));
    });
    return made.get_future().get();
  }

 private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  std::thread thread_;
};

inline bool CanUseFuseAndLoop() {
  return ::geteuid() == 0 && ::access("/dev/fuse", R_OK | W_OK) == 0 &&
         ::access("/dev/loop-control", R_OK | W_OK) == 0;
}

inline std::string MountInfo() {
  std::ifstream in("/proc/self/mountinfo");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace bsr::frontend::testing
