#include "frontend/kernel_device.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fs.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "common/temp_dir.h"
#include "frontend/kernel_device_test_util.h"
#include "storage/aligned_buffer.h"

namespace bsr::frontend {
namespace {

namespace fs = std::filesystem;
using testing::CanUseFuseAndLoop;
using testing::CountingExport;
using testing::IoThread;
using testing::RandomBytes;
using testing::ReadRange;

constexpr size_t kSize = 16 << 20;

bool AnyLoopUnder(const fs::path& dir) {
  for (int index : ListLoopDevices()) {
    auto backing = LoopBackingFile(index);
    if (backing && backing->rfind(dir.string(), 0) == 0) return true;
  }
  return false;
}

class KernelDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CanUseFuseAndLoop()) GTEST_SKIP() << "needs root, /dev/fuse and loop devices";
    backing_ = (dir_ / "backing.img").string();
    fs::create_directories(dir_ / "state");
    fs::create_directories(dir_ / "dev");
    options_.minor = 7;
    options_.resource = "r0";
    options_.volume = 1;
    options_.state_dir = dir_ / "state";
    options_.dev_dir = dir_ / "dev";
    options_.release_wait = std::chrono::milliseconds(500);
  }
  void TearDown() override {
    if (dev_) {
      Status s = dev_->Teardown();
      EXPECT_TRUE(s.ok()) << s.ToString();
      dev_.reset();
    }
    io_.Stop();
    exp_.reset();
    if (CanUseFuseAndLoop()) {
      EXPECT_FALSE(AnyLoopUnder(dir_.path())) << "a loop device was left behind";
      EXPECT_EQ(testing::MountInfo().find(dir_.path().string()), std::string::npos);
    }
  }

  void CreateDevice(FileExportOptions export_options = {}) {
    exp_ = io_.MakeExport(backing_, kSize, export_options);
    ASSERT_NE(exp_, nullptr);
    auto dev = KernelDevice::Create(io_.io(), exp_, options_);
    ASSERT_TRUE(dev.ok()) << dev.status().ToString();
    dev_ = std::move(dev).value();
  }

  TempDir dir_;
  std::string backing_;
  KernelDeviceOptions options_;
  IoThread io_;
  std::shared_ptr<CountingExport> exp_;
  std::unique_ptr<KernelDevice> dev_;
};

TEST_F(KernelDeviceTest, LinksPointAtADirectIoLoopDevice) {
  CreateDevice();
  EXPECT_EQ(fs::read_symlink(dir_ / "dev" / "bsr7"), fs::path(dev_->loop_path()));
  EXPECT_EQ(fs::read_symlink(dir_ / "dev/bsr/by-res/r0/1"), fs::path(dev_->loop_path()));
  EXPECT_TRUE(dev_->direct_io());
  EXPECT_EQ(exp_->opens.load(), 1);
  auto backing = LoopBackingFile(dev_->loop_index());
  ASSERT_TRUE(backing.has_value());
  EXPECT_EQ(*backing, dev_->image_path().string());
  int fd = ::open((dir_ / "dev/bsr7").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  uint64_t bytes = 0;
  ASSERT_EQ(::ioctl(fd, BLKGETSIZE64, &bytes), 0);
  EXPECT_EQ(bytes, kSize);
  ::close(fd);
}

TEST_F(KernelDeviceTest, DirectWritesAndFlushesReachTheExport) {
  CreateDevice();
  int fd = ::open((dir_ / "dev/bsr7").c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  storage::AlignedBuffer buffer(1 << 20);
  auto data = RandomBytes(buffer.size(), 11);
  std::memcpy(buffer.data(), data.data(), data.size());
  ASSERT_EQ(::pwrite(fd, buffer.data(), buffer.size(), 3 << 20), 1 << 20);
  EXPECT_EQ(ReadRange(backing_, 3 << 20, data.size()), data);
  // A flush of the block device becomes fsync on the image, then Export::Flush.
  int flushes = exp_->flushes.load();
  ASSERT_EQ(::fsync(fd), 0);
  EXPECT_GT(exp_->flushes.load(), flushes);
  std::memset(buffer.data(), 0, buffer.size());
  ASSERT_EQ(::pread(fd, buffer.data(), buffer.size(), 3 << 20), 1 << 20);
  EXPECT_EQ(std::memcmp(buffer.data(), data.data(), data.size()), 0);
  // Discard and zeroout arrive as fallocate and come out zeroed in the backing file.
  uint64_t range[2] = {3 << 20, 256 << 10};
  ASSERT_EQ(::ioctl(fd, BLKDISCARD, range), 0) << std::strerror(errno);
  EXPECT_EQ(ReadRange(backing_, 3 << 20, 256 << 10), std::vector<uint8_t>(256 << 10, 0));
  range[0] = (3 << 20) + (512 << 10);
  ASSERT_EQ(::ioctl(fd, BLKZEROOUT, range), 0) << std::strerror(errno);
  EXPECT_EQ(ReadRange(backing_, range[0], 256 << 10), std::vector<uint8_t>(256 << 10, 0));
  EXPECT_GE(exp_->zeroes.load(), 2);
  ::close(fd);
}

TEST_F(KernelDeviceTest, TeardownRefusedWhileClaimedThenSucceeds) {
  CreateDevice();
  std::string loop = dev_->loop_path();
  // An exclusive open is what a mounted filesystem holds.
  int fd = ::open(loop.c_str(), O_RDONLY | O_EXCL | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  Status s = dev_->Teardown();
  EXPECT_EQ(s.code(), Errc::kBusy) << s.ToString();
  EXPECT_NE(s.message().find("in use"), std::string::npos) << s.message();
  EXPECT_TRUE(dev_->active());
  EXPECT_TRUE(fs::is_symlink(dir_ / "dev/bsr7"));
  EXPECT_TRUE(fs::is_symlink(dir_ / "dev/bsr/by-res/r0/1"));
  EXPECT_TRUE(LoopBackingFile(dev_->loop_index()).has_value());
  char byte;
  EXPECT_EQ(::pread(fd, &byte, 1, 0), 1);  // still serving
  ::close(fd);

  int index = dev_->loop_index();
  ASSERT_TRUE(dev_->Teardown().ok());
  EXPECT_FALSE(dev_->active());
  EXPECT_FALSE(fs::exists(fs::symlink_status(dir_ / "dev/bsr7")));
  EXPECT_FALSE(fs::exists(dir_ / "dev/bsr"));
  EXPECT_FALSE(LoopBackingFile(index).has_value());
  EXPECT_EQ(exp_->closes.load(), 1);
  EXPECT_FALSE(fs::exists(dir_ / "state/kdev/bsr7"));
}

TEST_F(KernelDeviceTest, TeardownRefusedWhileHeldOpenKeepsTheDevice) {
  CreateDevice();
  int fd = ::open((dir_ / "dev/bsr7").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  Status s = dev_->Teardown();
  EXPECT_EQ(s.code(), Errc::kBusy) << s.ToString();
  EXPECT_NE(s.message().find("held open"), std::string::npos) << s.message();
  ::close(fd);
  // The refused clear was taken back: the last close did not detach the device.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_TRUE(LoopBackingFile(dev_->loop_index()).has_value());
  EXPECT_TRUE(fs::is_symlink(dir_ / "dev/bsr7"));
  fd = ::open((dir_ / "dev/bsr7").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  auto data = RandomBytes(4096, 5);
  EXPECT_EQ(::pwrite(fd, data.data(), data.size(), 0), 4096);
  EXPECT_EQ(::fsync(fd), 0);
  ::close(fd);
  EXPECT_EQ(ReadRange(backing_, 0, 4096), data);
}

TEST_F(KernelDeviceTest, SecondaryRefusalLeavesNothingBehind) {
  FileExportOptions export_options;
  export_options.refuse_open = "volume is Secondary";
  exp_ = io_.MakeExport(backing_, kSize, export_options);
  ASSERT_NE(exp_, nullptr);
  auto dev = KernelDevice::Create(io_.io(), exp_, options_);
  ASSERT_FALSE(dev.ok());
  EXPECT_NE(dev.status().message().find("volume is Secondary"), std::string::npos);
  EXPECT_FALSE(fs::exists(fs::symlink_status(dir_ / "dev/bsr7")));
  EXPECT_FALSE(AnyLoopUnder(dir_.path()));
}

TEST_F(KernelDeviceTest, ExistingNodeIsNotReplaced) {
  std::ofstream(dir_ / "dev" / "bsr7") << "not a link";
  exp_ = io_.MakeExport(backing_, kSize);
  ASSERT_NE(exp_, nullptr);
  auto dev = KernelDevice::Create(io_.io(), exp_, options_);
  ASSERT_FALSE(dev.ok());
  EXPECT_EQ(dev.status().code(), Errc::kExists) << dev.status().ToString();
  EXPECT_TRUE(fs::is_regular_file(dir_ / "dev" / "bsr7"));
  EXPECT_FALSE(AnyLoopUnder(dir_.path()));
  EXPECT_EQ(exp_->closes.load(), exp_->opens.load());
}

TEST_F(KernelDeviceTest, AsyncCreateAndTeardownFromTheIoThread) {
  exp_ = io_.MakeExport(backing_, kSize);
  ASSERT_NE(exp_, nullptr);
  std::promise<Status> created;
  asio::post(io_.io(), [&] {
    KernelDevice::CreateAsync(io_.io(), exp_, options_,
                              [&](Result<std::unique_ptr<KernelDevice>> result) {
                                EXPECT_TRUE(io_.io().get_executor().running_in_this_thread());
                                if (result.ok()) dev_ = std::move(result).value();
                                created.set_value(result.status());
                              });
  });
  Status s = created.get_future().get();
  ASSERT_TRUE(s.ok()) << s.ToString();
  // Blocking calls on the io thread are refused instead of deadlocking.
  std::promise<Status> on_io;
  asio::post(io_.io(), [&] { on_io.set_value(dev_->Teardown()); });
  EXPECT_EQ(on_io.get_future().get().code(), Errc::kInternal);
  std::promise<Status> torn;
  asio::post(io_.io(), [&] { dev_->TeardownAsync([&](Status t) { torn.set_value(t); }); });
  s = torn.get_future().get();
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_FALSE(dev_->active());
}

// A child process sets up the device and is killed with SIGKILL; the cleanup must
// remove its loop device, its FUSE mount and its links.
TEST_F(KernelDeviceTest, CleanupAfterKilledOwner) {
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  {
    auto data = RandomBytes(kSize, 9);
    std::ofstream(backing_, std::ios::binary)
        .write(reinterpret_cast<const char*>(data.data()), kSize);
  }
  io_.Stop();  // the child must be forked without other threads
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    IoThread io;
    auto exp = io.MakeExport(backing_, kSize);
    auto dev = exp ? KernelDevice::Create(io.io(), exp, options_)
                   : Result<std::unique_ptr<KernelDevice>>(Status(Errc::kIo, "export"));
    char c = dev.ok() ? 'y' : 'n';
    if (::write(ready[1], &c, 1) != 1) ::_exit(2);
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);
  EXPECT_EQ(c, 'y');
  EXPECT_TRUE(fs::is_symlink(dir_ / "dev/bsr7"));
  EXPECT_TRUE(AnyLoopUnder(dir_.path()));
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_TRUE(AnyLoopUnder(dir_.path()));  // nothing cleans up after a SIGKILL by itself

  // A new device on the same minor is refused until the cleanup ran.
  {
    IoThread io;
    auto exp = io.MakeExport((dir_ / "other.img").string(), 1 << 20);
    ASSERT_NE(exp, nullptr);
    auto again = KernelDevice::Create(io.io(), exp, options_);
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.status().code(), Errc::kExists) << again.status().ToString();
    EXPECT_NE(again.status().message().find("cleanup"), std::string::npos);
    EXPECT_EQ(exp->opens.load(), exp->closes.load());
    io.Stop();
  }
  EXPECT_TRUE(AnyLoopUnder(dir_.path()));

  // Another link in the dev dir that is not ours stays.
  fs::create_symlink("/dev/null", dir_ / "dev" / "other");
  auto report = CleanupStaleKernelDevices(dir_ / "state", dir_ / "dev");
  EXPECT_TRUE(report.problems.empty()) << report.problems.front();
  EXPECT_GE(report.actions.size(), 4u);
  EXPECT_FALSE(AnyLoopUnder(dir_.path()));
  EXPECT_EQ(testing::MountInfo().find(dir_.path().string()), std::string::npos);
  EXPECT_FALSE(fs::exists(fs::symlink_status(dir_ / "dev/bsr7")));
  EXPECT_FALSE(fs::exists(dir_ / "dev/bsr"));
  EXPECT_TRUE(fs::is_symlink(dir_ / "dev" / "other"));
  // Nothing left to do the second time.
  report = CleanupStaleKernelDevices(dir_ / "state", dir_ / "dev");
  EXPECT_TRUE(report.actions.empty());
  EXPECT_TRUE(report.problems.empty());
}

}  // namespace
}  // namespace bsr::frontend
