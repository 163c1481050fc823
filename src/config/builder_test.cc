#include <gtest/gtest.h>

#include "config/config.h"

namespace bsr::config {
namespace {

Config Load(const std::string& text) {
  auto r = LoadString("t.res", text);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? r->config : Config{};
}

std::string LoadError(const std::string& text) {
  auto r = LoadString("t.res", text);
  EXPECT_FALSE(r.ok());
  return r.ok() ? "" : r.status().message();
}

const char* kTwoHosts = R"(
  on alice { node-id 0; address 10.1.1.1:7000; }
  on bob { node-id 1; address 10.1.1.2:7000; }
)";

TEST(BuilderTest, InheritanceCommonResourceVolumeConnection) {
  Config c = Load(std::string(R"(
common { disk { al-extents 1000; resync-rate 5M; } net { protocol A; ping-int 20; } options { auto-promote no; } }
resource r0 {
  disk { al-extents 2000; }
  net { ping-int 30; }
  volume 0 { device minor 1; disk /dev/a; meta-disk internal; disk { al-extents 3000; } }
  volume 1 { device minor 2; disk /dev/b; meta-disk internal; }
)") + kTwoHosts + R"(
  connection { host alice; host bob; net { protocol B; } volume 1 { disk { resync-rate 7M; } } }
}
)");
  ASSERT_EQ(c.resources.size(), 1u);
  const Resource& r = c.resources[0];
  const Host& alice = r.hosts[0];
  ASSERT_EQ(alice.volumes.size(), 2u);
  EXPECT_EQ(alice.volumes[0].disk_options.al_extents(), 3000);  // volume beats resource
  EXPECT_EQ(alice.volumes[1].disk_options.al_extents(), 2000);  // resource beats common
  EXPECT_FALSE(r.options.auto_promote());                       // common
  ASSERT_EQ(r.connections.size(), 1u);
  const Connection& conn = r.connections[0];
  EXPECT_EQ(conn.net.protocol(), 'B');
  EXPECT_EQ(conn.net.ping_int_seconds(), 30);
  EXPECT_EQ(conn.peer_devices.at(0).resync_rate_kib(), 5 * 1024);
  EXPECT_EQ(conn.peer_devices.at(1).resync_rate_kib(), 7 * 1024);
  EXPECT_EQ(conn.peer_devices.at(1).c_max_rate_kib(), 102400);  // seed default
}

TEST(BuilderTest, ImpliedConnectionAndAutoNodeIds) {
  Config c = Load(R"(
resource r { device /dev/drbd3; disk /dev/x; meta-disk internal;
  on b { address 10.0.0.2:7000; }
  on a { address 10.0.0.1:7000; } })");
  const Resource& r = c.resources[0];
  EXPECT_EQ(r.hosts[0].node_id, 1);  // higher address
  EXPECT_EQ(r.hosts[1].node_id, 0);
  ASSERT_EQ(r.connections.size(), 1u);
  EXPECT_EQ(r.hosts[0].volumes[0].minor, 3);
  EXPECT_EQ(r.hosts[0].volumes[0].meta.kind, MetaDisk::Kind::kInternal);
}

TEST(BuilderTest, MeshMakesEveryPair) {
  Config c = Load(R"(
resource m { volume 0 { device minor 1; disk /dev/x; meta-disk /dev/m [2]; }
  on a { node-id 0; address 10.0.0.1:7000; } on b { node-id 1; address ipv6 [fd00::2]:7000; }
  on c { node-id 2; address 10.0.0.3:7000; } on d { node-id 3; address 10.0.0.4:7000; }
  connection-mesh { hosts a b c d; net { protocol A; } } })");
  const Resource& r = c.resources[0];
  EXPECT_EQ(r.connections.size(), 6u);
  ASSERT_EQ(r.ConnectionsOf(2).size(), 3u);  // c meets a, b and d
  for (const Connection* conn : r.ConnectionsOf(2)) EXPECT_NE(conn->PeerOf(2), 2);
  EXPECT_EQ(r.connections[0].PeerOf(0), 1);
  EXPECT_EQ(r.connections[0].PeerOf(3), -1);
  EXPECT_EQ(r.connections[0].net.protocol(), 'A');
  EXPECT_EQ(r.hosts[1].address->family, "ipv6");
  EXPECT_EQ(r.hosts[1].address->ToSetupArg(), "ipv6:[fd00::2]:7000");
  EXPECT_EQ(r.hosts[0].volumes[0].meta.kind, MetaDisk::Kind::kIndexed);
  EXPECT_EQ(r.hosts[0].volumes[0].meta.index, 2);
}

TEST(BuilderTest, Drbd83Forms) {
  Config c = Load(R"(
resource r0 { protocol B; syncer { rate 50M; al-extents 257; verify-alg sha1; }
  disk { on-io-error pass_on; no-disk-flushes; }
  on s { device /dev/drbd2; disk /dev/sdc1; address 192.168.1.106:7789; meta-disk internal; }
  on t { device /dev/bsr2; disk /dev/sdc1; address 192.168.1.104:7789; flexible-meta-disk /dev/sdd; } })");
  const Resource& r = c.resources[0];
  EXPECT_EQ(r.connections[0].net.protocol(), 'B');
  EXPECT_EQ(r.connections[0].net.verify_alg(), "sha1");
  EXPECT_EQ(r.connections[0].peer_devices.at(0).resync_rate_kib(), 51200);
  EXPECT_EQ(r.hosts[0].volumes[0].disk_options.al_extents(), 257);
  EXPECT_EQ(r.hosts[0].volumes[0].disk_options.on_io_error(), "passthrough");
  EXPECT_FALSE(r.hosts[0].volumes[0].disk_options.disk_flushes());
  EXPECT_EQ(r.hosts[1].volumes[0].minor, 2);
  EXPECT_EQ(r.hosts[1].volumes[0].meta.kind, MetaDisk::Kind::kFlexible);
}

TEST(BuilderTest, WindowsForms) {
  Config c = Load(R"(
resource r0 { on alice { volume 0 { device e minor 2; disk e; meta-disk f; } address 10.1.1.31:7789; node-id 0; }
  on bob { volume 0 { device e minor 2; disk e; meta-disk f; } address 10.1.1.32:7789; node-id 1; } })");
  const Volume& v = c.resources[0].hosts[0].volumes[0];
  EXPECT_EQ(v.device, "e");
  EXPECT_EQ(v.minor, 2);
  EXPECT_EQ(v.disk, "e");
  EXPECT_EQ(v.meta.device, "f");
}

TEST(BuilderTest, ValidationReportsEveryProblemWithLocation) {
  std::string e = LoadError(R"(resource r0 {
  disk { al-extents 3; c-max-rate 1X; }
  net { protokol C; }
  volume 0 { device minor 1; disk /dev/a; meta-disk internal; }
  on alice { node-id 0; address 10.1.1.1:7000; }
  on bob { node-id 0; address 10.1.1.1:7000; }
})");
  EXPECT_NE(e.find("t.res:2:21: al-extents: value 3 out of range 7..65536"), std::string::npos)
      << e;
  EXPECT_NE(e.find("t.res:2:35: c-max-rate:"), std::string::npos) << e;
  EXPECT_NE(
      e.find("t.res:3:9: unknown keyword 'protokol' in net section (did you mean 'protocol'?)"),
      std::string::npos)
      << e;
  EXPECT_NE(e.find("t.res:6:3: node-id 0 of 'bob' is already used by 'alice'"), std::string::npos)
      << e;
  EXPECT_NE(e.find("is the same as that of 'alice'"), std::string::npos) << e;
}

TEST(BuilderTest, StackingIsRefused) {
  std::string e = LoadError("resource r { stacked-on-top-of low { address 1.1.1.1:1; } }");
  EXPECT_NE(e.find("stacking is not supported; use 1:N"), std::string::npos) << e;
}

TEST(BuilderTest, DiskNoneOverridesInheritance) {
  Config c = Load(std::string(R"(resource r0 {
  volume 0 { device minor 1; disk /dev/a; meta-disk internal; }
  on alice { node-id 0; address 10.1.1.1:7000; volume 0 { disk none; } }
  on bob { node-id 1; address 10.1.1.2:7000; } })"));
  EXPECT_TRUE(c.resources[0].hosts[0].volumes[0].diskless);
  EXPECT_EQ(c.resources[0].hosts[0].volumes[0].meta.kind, MetaDisk::Kind::kNone);
  EXPECT_FALSE(c.resources[0].hosts[1].volumes[0].diskless);
}

TEST(BuilderTest, FloatingHosts) {
  Config c = Load(R"(resource f { device minor 4; disk /dev/x; meta-disk internal;
  floating 10.9.0.1:7000 { node-id 0; } floating ipv4 10.9.0.2:7000 { node-id 1; } })");
  const Resource& r = c.resources[0];
  ASSERT_EQ(r.hosts.size(), 2u);
  EXPECT_TRUE(r.hosts[0].floating);
  EXPECT_TRUE(r.hosts[0].Matches("10.9.0.1"));
  EXPECT_EQ(r.connections.size(), 1u);
}

}  // namespace
}  // namespace bsr::config
