#include "frontend/kernel_device_cleanup.h"

#include <gtest/gtest.h>

namespace bsr::frontend {
namespace {

TEST(MountInfoTest, ParsesFuseAndEscapedMountPoints) {
  std::string text =
      "22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
      "611 22 0:77 / /tmp/s\\040x/kdev/bsr3 rw,nosuid,nodev,noatime shared:300 - fuse.bsr bsr3 "
      "rw,user_id=0,group_id=0,default_permissions,allow_other\n"
      "garbage line\n"
      "612 22 0:78 / /mnt rw master:2 unbindable - tmpfs tmpfs rw\n";
  auto mounts = ParseMountInfo(text);
  ASSERT_EQ(mounts.size(), 3u);
  EXPECT_EQ(mounts[0].mount_point, "/");
  EXPECT_EQ(mounts[0].fs_type, "ext4");
  EXPECT_EQ(mounts[0].major, 253u);
  EXPECT_EQ(mounts[1].mount_point, "/tmp/s x/kdev/bsr3");
  EXPECT_EQ(mounts[1].fs_type, "fuse.bsr");
  EXPECT_EQ(mounts[1].source, "bsr3");
  EXPECT_EQ(mounts[1].minor, 77u);
  EXPECT_EQ(mounts[2].mount_point, "/mnt");
  EXPECT_EQ(mounts[2].fs_type, "tmpfs");
}

TEST(MountInfoTest, MalformedInputNeverCrashes) {
  EXPECT_TRUE(ParseMountInfo("").empty());
  EXPECT_TRUE(ParseMountInfo("1 2 3 4 5 6 - a\n").empty());
  EXPECT_TRUE(ParseMountInfo("- - - - - - - - -\n").empty());
  EXPECT_TRUE(ParseMountInfo("1 2 x:y / /a rw - t s o\n").empty());
  EXPECT_EQ(ParseMountInfo("\n\n1 2 0:1 / /a rw - t s o").size(), 1u);
}

TEST(MountInfoTest, Unescape) {
  EXPECT_EQ(UnescapeMountField("a\\040b\\011c\\134d"), "a b\tc\\d");
  EXPECT_EQ(UnescapeMountField("tail\\04"), "tail\\04");
  EXPECT_EQ(UnescapeMountField("\\999"), "\\999");
  EXPECT_EQ(UnescapeMountField(""), "");
}

TEST(PathIsUnderTest, Containment) {
  EXPECT_TRUE(PathIsUnder("/var/lib/bsr/kdev/bsr1/disk", "/var/lib/bsr"));
  EXPECT_TRUE(PathIsUnder("/var/lib/bsr", "/var/lib/bsr/"));
  EXPECT_TRUE(PathIsUnder("/var/lib/bsr/kdev/bsr1/disk (deleted)", "/var/lib/bsr"));
  EXPECT_TRUE(PathIsUnder("/var/lib/bsr/a/../b", "/var/lib/bsr"));
  EXPECT_FALSE(PathIsUnder("/var/lib/bsr2/disk", "/var/lib/bsr"));
  EXPECT_FALSE(PathIsUnder("/var/lib/bsr/../other", "/var/lib/bsr"));
  EXPECT_FALSE(PathIsUnder("relative/path", "/var"));
  EXPECT_FALSE(PathIsUnder("/var", ""));
}

TEST(DeviceNameTest, OnlyBsrDigits) {
  EXPECT_TRUE(IsBsrDeviceName("bsr0"));
  EXPECT_TRUE(IsBsrDeviceName("bsr12"));
  EXPECT_FALSE(IsBsrDeviceName("bsr"));
  EXPECT_FALSE(IsBsrDeviceName("bsr1.new"));
  EXPECT_FALSE(IsBsrDeviceName("bsrd"));
  EXPECT_FALSE(IsBsrDeviceName("loop0"));
}

}  // namespace
}  // namespace bsr::frontend
