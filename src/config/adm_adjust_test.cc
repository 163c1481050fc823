#include "config/adm_adjust.h"

#include <gtest/gtest.h>

#include "config/adm_handler.h"
#include "config/config.h"

namespace bsr::config {
namespace {

const char* kConfig = R"(
common { handlers { split-brain "echo common-sb"; fence-peer "/usr/lib/bsr/fence.sh"; } }
resource r0 {
  handlers { split-brain "mail -s sb root"; }
  options { auto-promote no; }
  disk { al-extents 3389; resync-rate 10M; }
  net { protocol C; ping-timeout 10; }
  volume 0 { device minor 2; disk /dev/sdb1; meta-disk internal; }
  on alice { node-id 0; address 10.1.1.31:7789; }
  on bob { node-id 1; address 10.1.1.32:7789; }
}
)";

// What `up r0` on alice leaves running, as `bsrsetup show --json` reports it.
const char* kRunning = R"([{
  "name": "r0", "node_id": 0, "options": {"auto-promote": "no"},
  "volumes": [{"volume": 0, "minor": 2, "attached": true, "disk": "/dev/sdb1",
               "meta_disk": "/dev/sdb1", "meta_index": "internal",
               "disk_options": {"al-extents": "3389"}}],
  "connections": [{"peer_node_id": 1, "name": "bob", "cstate": "Connected",
                   "net": {"protocol": "C", "ping-timeout": "10"},
                   "paths": [{"local": "ipv4:10.1.1.31:7789", "remote": "ipv4:10.1.1.32:7789"}],
                   "peer_devices": [{"volume": 0, "options": {"resync-rate": "10M"}}]}]
}])";

std::vector<std::string> Adjust(const std::string& config, const std::string& running,
                                const std::string& target = "r0") {
  auto l = LoadString("a.res", config);
  EXPECT_TRUE(l.ok()) << l.status().ToString();
  auto run = ParseRunning(running);
  EXPECT_TRUE(run.ok()) << run.status().ToString();
  std::vector<std::string> out;
  if (!l.ok() || !run.ok()) return out;
  auto p = PlanAdjust(l->config, "alice", target, *run);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  if (p.ok()) {
    for (const auto& s : *p) out.push_back(FormatStep(s));
  }
  return out;
}

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  auto pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  if (pos != std::string::npos) s.replace(pos, from.size(), to);
  return s;
}

TEST(AdmAdjustTest, NothingChangedIsEmpty) {
  EXPECT_EQ(Adjust(kConfig, kRunning), std::vector<std::string>{});
}

TEST(AdmAdjustTest, NotRunningIsUp) {
  auto p = Adjust(kConfig, "[]");
  ASSERT_FALSE(p.empty());
  EXPECT_EQ(p.front(), "bsrsetup new-resource r0 0 --auto-promote=no");
  EXPECT_EQ(p.back(), "bsrsetup connect r0 1");
  for (const auto& s : p) EXPECT_EQ(s.find("--set-defaults"), std::string::npos) << s;
}

TEST(AdmAdjustTest, EqualValuesInOtherUnitsAreNoChange) {
  std::string run = Replace(kRunning, R"("resync-rate": "10M")", R"("resync-rate": "10240")");
  run = Replace(run, R"("auto-promote": "no")", R"("auto-promote": "off")");
  EXPECT_EQ(Adjust(kConfig, run), std::vector<std::string>{});
}

TEST(AdmAdjustTest, ChangedOptionsOnly) {
  std::string cfg = Replace(kConfig, "ping-timeout 10;", "ping-timeout 20; max-buffers 8000;");
  cfg = Replace(cfg, "al-extents 3389; resync-rate 10M;", "al-extents 1000; resync-rate 20M;");
  cfg = Replace(cfg, "auto-promote no;", "auto-promote yes;");
  EXPECT_EQ(Adjust(cfg, kRunning),
            (std::vector<std::string>{
                "bsrsetup resource-options r0 --auto-promote=yes",
                "bsrsetup net-options r0 1 --ping-timeout=20 --max-buffers=8000",
                "bsrsetup peer-device-options r0 1 0 --resync-rate=20M",
                "bsrsetup disk-options 2 --al-extents=1000",
            }));
}

TEST(AdmAdjustTest, RemovedOptionGoesBackToDefault) {
  std::string cfg = Replace(kConfig, "net { protocol C; ping-timeout 10; }", "net { protocol C; }");
  EXPECT_EQ(Adjust(cfg, kRunning),
            (std::vector<std::string>{"bsrsetup net-options r0 1 --ping-timeout=5"}));
}

TEST(AdmAdjustTest, StandAlonePeerIsConnected) {
  std::string run = Replace(kRunning, R"("Connected")", R"("StandAlone")");
  EXPECT_EQ(Adjust(kConfig, run), (std::vector<std::string>{"bsrsetup connect r0 1"}));
}

TEST(AdmAdjustTest, DetachedDiskIsAttached) {
  std::string run = Replace(kRunning, R"("attached": true)", R"("attached": false)");
  EXPECT_EQ(Adjust(kConfig, run),
            (std::vector<std::string>{
                "bsrmeta 2 bsr1 /dev/sdb1 internal apply-al",
                "bsrsetup attach 2 /dev/sdb1 /dev/sdb1 internal --al-extents=3389",
            }));
}

TEST(AdmAdjustTest, NewDiskIsDetachedThenAttached) {
  std::string cfg = Replace(kConfig, "disk /dev/sdb1;", "disk /dev/sdc1;");
  EXPECT_EQ(Adjust(cfg, kRunning),
            (std::vector<std::string>{
                "bsrsetup detach 2",
                "bsrmeta 2 bsr1 /dev/sdc1 internal apply-al",
                "bsrsetup attach 2 /dev/sdc1 /dev/sdc1 internal --al-extents=3389",
            }));
}

TEST(AdmAdjustTest, VolumesAddedAndRemoved) {
  std::string cfg = Replace(kConfig, "volume 0 { device minor 2;",
                            "volume 1 { device minor 3; disk /dev/sdb2; meta-disk internal; }\n"
                            "  volume 0 { device minor 2;");
  EXPECT_EQ(Adjust(cfg, kRunning),
            (std::vector<std::string>{
                "bsrsetup new-minor r0 3 1",
                "bsrsetup peer-device-options r0 1 1 --resync-rate=10M",
                "bsrmeta 3 bsr1 /dev/sdb2 internal apply-al",
                "bsrsetup attach 3 /dev/sdb2 /dev/sdb2 internal --al-extents=3389",
            }));
  // Back to one volume: the running volume 1 goes.
  auto l = LoadString("a.res", cfg);
  ASSERT_TRUE(l.ok());
  std::string two = Replace(kRunning, R"("volumes": [)",
                            R"("volumes": [{"volume": 1, "minor": 3, "attached": true,
                                "disk": "/dev/sdb2", "meta_disk": "/dev/sdb2",
                                "meta_index": "internal", "disk_options": {"al-extents": "3389"}},)");
  EXPECT_EQ(Adjust(kConfig, two),
            (std::vector<std::string>{"bsrsetup detach 3", "bsrsetup del-minor 3"}));
  // r0/0 leaves volume 1 alone.
  EXPECT_EQ(Adjust(kConfig, two, "r0/0"), std::vector<std::string>{});
}

TEST(AdmAdjustTest, PeersAndPathsAddedAndRemoved) {
  std::string cfg = Replace(kConfig, "on bob { node-id 1; address 10.1.1.32:7789; }",
                            "on bob { node-id 1; address 10.1.1.32:7790; }\n"
                            "  on carol { node-id 2; address 10.1.1.33:7789; }\n"
                            "  connection-mesh { hosts alice bob carol; }");
  EXPECT_EQ(Adjust(cfg, kRunning),
            (std::vector<std::string>{
                "bsrsetup del-path r0 1 ipv4:10.1.1.31:7789 ipv4:10.1.1.32:7789",
                "bsrsetup new-path r0 1 ipv4:10.1.1.31:7789 ipv4:10.1.1.32:7790",
                "bsrsetup new-peer r0 2 --_name=carol --protocol=C --ping-timeout=10",
                "bsrsetup new-path r0 2 ipv4:10.1.1.31:7789 ipv4:10.1.1.33:7789",
                "bsrsetup peer-device-options r0 2 0 --resync-rate=10M",
                "bsrsetup connect r0 2",
            }));
  std::string solo = R"(resource r0 {
    options { auto-promote no; }
    disk { al-extents 3389; }
    on alice { node-id 0; address 10.1.1.31:7789; volume 0 { device minor 2; disk /dev/sdb1; meta-disk internal; } }
  })";
  EXPECT_EQ(Adjust(solo, kRunning), (std::vector<std::string>{"bsrsetup del-peer r0 1"}));
}

TEST(AdmAdjustTest, NodeIdChangeIsRefused) {
  auto l = LoadString("a.res", Replace(kConfig, "node-id 0;", "node-id 3;"));
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  auto run = ParseRunning(kRunning);
  ASSERT_TRUE(run.ok());
  auto p = PlanAdjust(l->config, "alice", "r0", *run);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("node-id"), std::string::npos) << p.status().message();
}

TEST(AdmAdjustTest, MalformedShowJsonIsAnError) {
  for (const char* bad : {"", "{", "{}", "[1]", R"([{"name": "r0"}])",
                          R"([{"name": "r0", "node_id": 0, "options": {"a": 1}}])",
                          R"([{"name": "r0", "node_id": 0, "volumes": [{"volume": 0}]}])",
                          R"([{"name": "r0", "node_id": 0, "connections": [{"paths": []}]}])"}) {
    EXPECT_FALSE(ParseRunning(bad).ok()) << bad;
  }
}

TEST(AdmAdjustTest, SameOptionValue) {
  std::string a = "yes", b = "on", c = "10M", d = "10240", e = "no";
  EXPECT_TRUE(SameOptionValue(OptSection::kResource, "auto-promote", &a, &b));
  EXPECT_TRUE(SameOptionValue(OptSection::kResource, "auto-promote", &a, nullptr));
  EXPECT_FALSE(SameOptionValue(OptSection::kResource, "auto-promote", &e, nullptr));
  EXPECT_TRUE(SameOptionValue(OptSection::kPeerDevice, "resync-rate", &c, &d));
  EXPECT_FALSE(SameOptionValue(OptSection::kPeerDevice, "resync-rate", &c, nullptr));
}

TEST(AdmHandlerTest, ResourceOverridesCommon) {
  auto l = LoadString("a.res", kConfig);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(*HandlerCommand(l->config, "r0", "split-brain"), "mail -s sb root");
  EXPECT_EQ(*HandlerCommand(l->config, "r0", "fence-peer"), "/usr/lib/bsr/fence.sh");
  EXPECT_EQ(*HandlerCommand(l->config, "r0/0", "fence-peer"), "/usr/lib/bsr/fence.sh");
  EXPECT_EQ(*HandlerCommand(l->config, "r0", "local-io-error"), "");
  EXPECT_FALSE(HandlerCommand(l->config, "r9", "split-brain").ok());
  EXPECT_FALSE(HandlerCommand(l->config, "r0", "no-such-handler").ok());
  EXPECT_TRUE(IsHandlerName("before-resync-target"));
  EXPECT_FALSE(IsHandlerName("adjust"));
}

TEST(AdmHandlerTest, EnvironmentFromTheConfig) {
  auto l = LoadString("a.res", kConfig);
  ASSERT_TRUE(l.ok());
  std::map<std::string, std::string> have = {{"BSR_PEER_NODE_ID", "1"}, {"BSR_RESOURCE", "r0"}};
  auto getenv = [&](const char* k) -> const char* {
    auto it = have.find(k);
    return it == have.end() ? nullptr : it->second.c_str();
  };
  auto env = HandlerEnvironment(l->config, "r0/0", "alice", "/etc/bsr.conf", getenv);
  EXPECT_EQ(env.count("BSR_RESOURCE"), 0u);  // bsrd's value stays
  EXPECT_EQ(env["BSR_CONF"], "/etc/bsr.conf");
  EXPECT_EQ(env["BSR_PEERS"], "bob");
  EXPECT_EQ(env["BSR_NODE_ID_0"], "alice");
  EXPECT_EQ(env["BSR_NODE_ID_1"], "bob");
  EXPECT_EQ(env["BSR_MY_NODE_ID"], "0");
  EXPECT_EQ(env["BSR_MINOR_0"], "2");
  EXPECT_EQ(env["BSR_BACKING_DEV_0"], "/dev/sdb1");
  EXPECT_EQ(env["BSR_VOLUME"], "0");
  EXPECT_EQ(env["BSR_MINOR"], "2");
  EXPECT_EQ(env["BSR_BACKING_DEV"], "/dev/sdb1");
  EXPECT_EQ(env["BSR_PEER"], "bob");
  EXPECT_EQ(env["BSR_PEER_ADDRESS"], "10.1.1.32");
  EXPECT_EQ(env["BSR_PEER_AF"], "ipv4");
  EXPECT_EQ(env["BSR_MY_ADDRESS"], "10.1.1.31");
  EXPECT_EQ(env["BSR_MY_AF"], "ipv4");
  // Not the local node: only what is about the resource.
  auto other = HandlerEnvironment(l->config, "r0", "nobody", "", getenv);
  EXPECT_EQ(other.count("BSR_MINOR_0"), 0u);
  EXPECT_EQ(other["BSR_PEERS"], "alice bob");
  EXPECT_TRUE(HandlerEnvironment(l->config, "r9", "alice", "", getenv).empty());
}

}  // namespace
}  // namespace bsr::config
