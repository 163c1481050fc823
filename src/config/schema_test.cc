#include "config/schema.h"

#include <gtest/gtest.h>

#include "config/model.h"

namespace bsr::config {
namespace {

const OptionDef& Def(OptSection s, const char* name) {
  const OptionDef* d = FindOption(s, name);
  EXPECT_NE(d, nullptr) << name;
  return *d;
}

TEST(SchemaTest, UnitsScaleToTheOptionsDefaultUnit) {
  const auto& rate = Def(OptSection::kPeerDevice, "resync-rate");  // KiB/s
  EXPECT_EQ(*ParseNumber(rate, "250"), 250);
  EXPECT_EQ(*ParseNumber(rate, "10M"), 10240);
  EXPECT_EQ(*ParseNumber(rate, "1G"), 1048576);
  const auto& fill = Def(OptSection::kPeerDevice, "c-fill-target");  // sectors
  EXPECT_EQ(*ParseNumber(fill, "1M"), 2048);
  EXPECT_EQ(*ParseNumber(fill, "200s"), 200);
  const auto& snd = Def(OptSection::kNet, "sndbuf-size");  // bytes
  EXPECT_EQ(*ParseNumber(snd, "512K"), 524288);
  const auto& buffers = Def(OptSection::kNet, "max-buffers");  // plain count, suffix multiplies
  EXPECT_EQ(*ParseNumber(buffers, "36K"), 36864);
}

TEST(SchemaTest, TimeOptionsRefuseSuffixes) {
  auto r = ParseNumber(Def(OptSection::kNet, "ping-int"), "5M");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("wrong unit"), std::string::npos);
  EXPECT_FALSE(ParseNumber(Def(OptSection::kNet, "timeout"), "5s").ok());
}

TEST(SchemaTest, RangesFromSeed001) {
  const auto& al = Def(OptSection::kDisk, "al-extents");
  EXPECT_EQ(al.def, "6001");
  EXPECT_TRUE(ParseNumber(al, "7").ok());
  EXPECT_TRUE(ParseNumber(al, "65536").ok());
  EXPECT_FALSE(ParseNumber(al, "6").ok());
  EXPECT_FALSE(ParseNumber(al, "65537").ok());
  const auto& mes = Def(OptSection::kNet, "max-epoch-size");
  EXPECT_FALSE(ParseNumber(mes, "0").ok());
  EXPECT_FALSE(ParseNumber(mes, "20001").ok());
  EXPECT_FALSE(ParseNumber(Def(OptSection::kNet, "sndbuf-size"), "11M").ok());  // max 10 MiB
  EXPECT_FALSE(ParseNumber(al, "12x").ok());
  EXPECT_FALSE(ParseNumber(al, "").ok());
  EXPECT_FALSE(ParseNumber(al, "99999999999999999999999").ok());
}

TEST(SchemaTest, TypedDefaultsOfEmptySections) {
  NetOptions net;
  EXPECT_EQ(net.ping_int_seconds(), 10);
  EXPECT_EQ(net.ping_timeout_tenths(), 5);
  EXPECT_EQ(net.timeout_tenths(), 60);
  EXPECT_EQ(net.connect_int_seconds(), 10);
  EXPECT_EQ(net.max_epoch_size(), 2048);
  EXPECT_EQ(net.protocol(), 'C');
  EXPECT_TRUE(net.use_rle());
  PeerDeviceOptions pd;
  EXPECT_EQ(pd.c_plan_ahead_tenths(), 20);
  EXPECT_EQ(pd.c_max_rate_kib(), 102400);
  EXPECT_EQ(pd.c_min_rate_kib(), 250);
  EXPECT_EQ(pd.c_fill_target_sectors(), 0);
  DiskOptions disk;
  EXPECT_EQ(disk.al_extents(), 6001);
  EXPECT_TRUE(disk.disk_flushes());
  EXPECT_FALSE(disk.disk_barrier());
  EXPECT_EQ(disk.on_io_error(), "passthrough");
  ResourceOptions res;
  EXPECT_TRUE(res.auto_promote());
  EXPECT_EQ(res.peer_ack_window_sectors(), 4096);  // 2 MiB
  EXPECT_EQ(res.peer_ack_delay_ms(), 100);
  disk.Set("on-io-error", "pass_on");
  EXPECT_EQ(disk.on_io_error(), "passthrough");
}

TEST(SchemaTest, DidYouMean) {
  EXPECT_EQ(DidYouMean("al-extent", {"al-extents", "al-updates"}), "al-extents");
  EXPECT_EQ(DidYouMean("zzzzzzzzzz", {"al-extents"}), "");
}

}  // namespace
}  // namespace bsr::config
