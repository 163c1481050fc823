#include "frontend/fuse_image.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "common/temp_dir.h"
#include "frontend/kernel_device_test_util.h"

namespace bsr::frontend {
namespace {

using testing::CanUseFuseAndLoop;
using testing::CountingExport;
using testing::IoThread;
using testing::RandomBytes;
using testing::ReadRange;

constexpr size_t kSize = 8 << 20;

class FuseImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CanUseFuseAndLoop()) GTEST_SKIP() << "needs root and /dev/fuse";
    backing_ = (dir_ / "backing.img").string();
    exp_ = io_.MakeExport(backing_, kSize);
    ASSERT_NE(exp_, nullptr);
    std::filesystem::create_directories(dir_ / "mnt");
    FuseImageOptions options;
    options.mount_dir = dir_ / "mnt";
    options.fs_name = "bsrtest";
    ExportInfo info = exp_->Info();  // FileExport's Info() reads only plain fields
    auto image = FuseImage::Mount(io_.io(), exp_, info, options);
    ASSERT_TRUE(image.ok()) << image.status().ToString();
    image_ = std::move(image).value();
  }
  void TearDown() override {
    image_.reset();
    io_.Stop();
    exp_.reset();
  }

  int OpenImage(int flags = O_RDWR) {
    return ::open(image_->image_path().c_str(), flags | O_CLOEXEC);
  }

  TempDir dir_;
  std::string backing_;
  IoThread io_;
  std::shared_ptr<CountingExport> exp_;
  std::unique_ptr<FuseImage> image_;
};

TEST_F(FuseImageTest, ShowsOneFileOfTheExportSize) {
  struct stat st;
  ASSERT_EQ(::stat(image_->image_path().c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(static_cast<size_t>(st.st_size), kSize);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(image_->mount_dir())) {
    names.push_back(e.path().filename().string());
  }
  EXPECT_EQ(names, std::vector<std::string>{"disk"});
  EXPECT_NE(testing::MountInfo().find("fuse.bsr bsrtest"), std::string::npos);
  EXPECT_NE(::access((image_->mount_dir() / "other").c_str(), F_OK), 0);
  EXPECT_EQ(errno, ENOENT);
}

TEST_F(FuseImageTest, WritesAndReadsReachTheExport) {
  int fd = OpenImage();
  ASSERT_GE(fd, 0);
  auto data = RandomBytes(300 * 1024 + 17, 3);  // unaligned length, several requests
  ASSERT_EQ(::pwrite(fd, data.data(), data.size(), 12345), static_cast<ssize_t>(data.size()));
  EXPECT_EQ(ReadRange(backing_, 12345, data.size()), data);
  std::vector<uint8_t> back(data.size());
  ASSERT_EQ(::pread(fd, back.data(), back.size(), 12345), static_cast<ssize_t>(back.size()));
  EXPECT_EQ(back, data);
  // Reads at the end are short, past it empty.
  std::vector<uint8_t> tail(8192);
  EXPECT_EQ(::pread(fd, tail.data(), tail.size(), kSize - 100), 100);
  EXPECT_EQ(::pread(fd, tail.data(), tail.size(), kSize), 0);
  EXPECT_GT(exp_->writes.load(), 0);
  EXPECT_GT(exp_->reads.load(), 0);
  ::close(fd);
}

TEST_F(FuseImageTest, FsyncReachesExportFlush) {
  int fd = OpenImage();
  ASSERT_GE(fd, 0);
  auto data = RandomBytes(4096, 4);
  ASSERT_EQ(::pwrite(fd, data.data(), data.size(), 0), 4096);
  int before = exp_->flushes.load();
  ASSERT_EQ(::fsync(fd), 0);
  EXPECT_EQ(exp_->flushes.load(), before + 1);
  ASSERT_EQ(::fdatasync(fd), 0);
  EXPECT_EQ(exp_->flushes.load(), before + 2);
  EXPECT_EQ(image_->stats().fsyncs.load(), 2u);
  ::close(fd);
}

TEST_F(FuseImageTest, PunchHoleAndZeroRangeBecomeWriteZeroes) {
  int fd = OpenImage();
  ASSERT_GE(fd, 0);
  std::vector<uint8_t> zero(64 * 1024, 0);
  ASSERT_EQ(::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 65536, 65536), 0);
  EXPECT_EQ(ReadRange(backing_, 65536, zero.size()), zero);
  EXPECT_EQ(exp_->zeroes.load(), 1);
  EXPECT_EQ(exp_->zeroes_no_hole.load(), 0);
  ASSERT_EQ(::fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 4 * 65536, 65536), 0);
  EXPECT_EQ(ReadRange(backing_, 4 * 65536, zero.size()), zero);
  EXPECT_EQ(exp_->zeroes_no_hole.load(), 1);
  // Punching past the end is clipped; growing the file is refused.
  ASSERT_EQ(::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, kSize - 4096, 65536), 0);
  EXPECT_EQ(ReadRange(backing_, kSize - 4096, 4096), std::vector<uint8_t>(4096, 0));
  EXPECT_NE(::fallocate(fd, 0, kSize - 4096, 65536), 0);
  EXPECT_EQ(errno, EFBIG);
  EXPECT_NE(::fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, 65536), 0);
  ::close(fd);
}

TEST_F(FuseImageTest, RefusesResizeAndWritesPastTheEnd) {
  int fd = OpenImage();
  ASSERT_GE(fd, 0);
  EXPECT_NE(::ftruncate(fd, 4096), 0);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(::ftruncate(fd, kSize), 0);  // the same size is harmless
  char byte = 1;
  EXPECT_NE(::pwrite(fd, &byte, 1, kSize), 1);
  EXPECT_EQ(errno, ENOSPC);
  ::close(fd);
  fd = OpenImage(O_RDWR | O_TRUNC);  // O_TRUNC would wipe the device
  EXPECT_LT(fd, 0);
  EXPECT_EQ(errno, EPERM);
  if (fd >= 0) ::close(fd);
  struct stat st;
  ASSERT_EQ(::stat(image_->image_path().c_str(), &st), 0);
  EXPECT_EQ(static_cast<size_t>(st.st_size), kSize);
}

TEST_F(FuseImageTest, UnmountRemovesTheMount) {
  std::string mount_dir = image_->mount_dir().string();
  image_->Unmount();
  EXPECT_EQ(testing::MountInfo().find(mount_dir), std::string::npos);
  EXPECT_TRUE(std::filesystem::is_empty(mount_dir));
  image_->Unmount();  // idempotent
}

TEST(FuseImageErrorsTest, MountOnMissingDirFails) {
  if (!CanUseFuseAndLoop()) GTEST_SKIP() << "needs root and /dev/fuse";
  TempDir dir;
  IoThread io;
  auto exp = io.MakeExport((dir / "b.img").string(), 1 << 20);
  ASSERT_NE(exp, nullptr);
  FuseImageOptions options;
  options.mount_dir = dir / "missing";
  auto image = FuseImage::Mount(io.io(), exp, exp->Info(), options);
  EXPECT_FALSE(image.ok());
  options.mount_dir = dir.path();
  options.file_name = "a/b";
  image = FuseImage::Mount(io.io(), exp, exp->Info(), options);
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), Errc::kInvalidArgument);
  io.Stop();
}

}  // namespace
}  // namespace bsr::frontend
