#include "config/adm_plan.h"

#include <gtest/gtest.h>

#include "config/config.h"
#include "config/host_env.h"

namespace bsr::config {
namespace {

const char* kConfig = R"(
resource r0 {
  disk { al-extents 3389; resync-rate 10M; }
  net { protocol C; shared-secret "a b"; }
  volume 0 { device /dev/drbd2; disk /dev/sdb1; meta-disk internal; }
  volume 1 { device minor 3; disk /dev/sdb2; meta-disk /dev/sdc; }
  on alice { node-id 0; address 10.1.1.31:7789; }
  on bob { node-id 1; address 10.1.1.32:7789; }
}
resource r1 {
  volume 0 { device minor 7; disk /dev/sdd; meta-disk /dev/sde [1]; }
  on alice { node-id 0; address 10.1.1.31:7790; volume 0 { disk none; } }
  on bob { node-id 1; address 10.1.1.32:7790; }
}
)";

std::vector<std::string> Plan(const std::string& cmd, const std::string& target,
                              const std::string& node = "alice", bool force = false) {
  auto l = LoadString("p.res", kConfig);
  EXPECT_TRUE(l.ok()) << l.status().ToString();
  auto p = PlanCommand(l->config, node, cmd, target, PlanFlags{force});
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  std::vector<std::string> out;
  if (p.ok()) {
    for (const auto& s : *p) out.push_back(FormatStep(s));
  }
  return out;
}

TEST(AdmPlanTest, UpMirrorsDrbdadm) {
  EXPECT_EQ(Plan("up", "r0"),
            (std::vector<std::string>{
                "bsrsetup new-resource r0 0",
                "bsrsetup new-minor r0 2 0",
                "bsrsetup new-minor r0 3 1",
                "bsrsetup new-peer r0 1 --_name=bob --protocol=C --shared-secret=a\\ b",
                "bsrsetup new-path r0 1 ipv4:10.1.1.31:7789 ipv4:10.1.1.32:7789",
                "bsrsetup peer-device-options r0 1 0 --resync-rate=10M",
                "bsrsetup peer-device-options r0 1 1 --resync-rate=10M",
                "bsrmeta 2 bsr1 /dev/sdb1 internal apply-al",
                "bsrsetup attach 2 /dev/sdb1 /dev/sdb1 internal --al-extents=3389",
                "bsrmeta 3 bsr1 /dev/sdc flex-external apply-al",
                "bsrsetup attach 3 /dev/sdb2 /dev/sdc flexible --al-extents=3389",
                "bsrsetup connect r0 1",
            }));
}

TEST(AdmPlanTest, DisklessLocalAndPeer) {
  auto alice = Plan("up", "r1", "alice");
  EXPECT_EQ(alice[1], "bsrsetup new-minor r1 7 0 --diskless");
  for (const auto& s : alice) EXPECT_EQ(s.find("attach"), std::string::npos) << s;
  auto bob = Plan("up", "r1", "bob");
  EXPECT_NE(std::find(bob.begin(), bob.end(), "bsrsetup peer-device-options r1 0 0 --bitmap=no"),
            bob.end());
  EXPECT_NE(std::find(bob.begin(), bob.end(), "bsrsetup attach 7 /dev/sdd /dev/sde 1"), bob.end());
  auto l = LoadString("p.res", kConfig);
  auto p = PlanCommand(l->config, "alice", "create-md", "r1");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("requires a local disk"), std::string::npos);
}

TEST(AdmPlanTest, OtherCommands) {
  EXPECT_EQ(Plan("down", "r0"), (std::vector<std::string>{"bsrsetup down r0"}));
  EXPECT_EQ(Plan("primary", "r0", "alice", true),
            (std::vector<std::string>{"bsrsetup primary r0 --force"}));
  EXPECT_EQ(Plan("disconnect", "r0", "bob", true),
            (std::vector<std::string>{"bsrsetup disconnect r0 0 --force"}));
  EXPECT_EQ(Plan("create-md", "r0/1"),
            (std::vector<std::string>{"bsrmeta 3 bsr1 /dev/sdc flex-external create-md 1"}));
  EXPECT_EQ(Plan("create-md", "r0/0", "alice", true),
            (std::vector<std::string>{"bsrmeta --force 2 bsr1 /dev/sdb1 internal create-md 1"}));
  EXPECT_EQ(Plan("detach", "r0"),
            (std::vector<std::string>{"bsrsetup detach 2", "bsrsetup detach 3"}));
  EXPECT_EQ(Plan("status", "r0"), (std::vector<std::string>{"bsrsetup status r0"}));
  auto gi = Plan("show-gi", "r0/0");
  EXPECT_EQ(gi,
            (std::vector<std::string>{"bsrsetup show-gi r0 1 0",
                                      "bsrmeta 2 bsr1 /dev/sdb1 internal --node-id=1 show-gi"}));
  EXPECT_EQ(Plan("up", "all").size(), 12u + 5u);  // r0, then r1 where alice is diskless
}

TEST(AdmPlanTest, FallbackStepsAreMarked) {
  auto l = LoadString("p.res", kConfig);
  auto p = PlanCommand(l->config, "alice", "invalidate", "r0/0");
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->size(), 2u);
  EXPECT_FALSE((*p)[0].only_if_previous_failed);
  EXPECT_TRUE((*p)[1].only_if_previous_failed);
}

TEST(AdmPlanTest, ErrorsForUnknownThings) {
  auto l = LoadString("p.res", kConfig);
  EXPECT_FALSE(PlanCommand(l->config, "alice", "up", "nope").ok());
  EXPECT_FALSE(PlanCommand(l->config, "carol", "up", "r0").ok());
  EXPECT_FALSE(PlanCommand(l->config, "alice", "up", "r0/9").ok());
  EXPECT_FALSE(PlanCommand(l->config, "alice", "explode", "r0").ok());
}

TEST(AdmPlanTest, ShQueries) {
  auto l = LoadString("p.res", kConfig);
  const Config& c = l->config;
  EXPECT_EQ(*ShQuery(c, "alice", "sh-resources", ""), "r0 r1");
  EXPECT_EQ(*ShQuery(c, "alice", "sh-dev", "r0"), "/dev/drbd2\n/dev/bsr3");
  EXPECT_EQ(*ShQuery(c, "alice", "sh-minor", "r0"), "2\n3");
  EXPECT_EQ(*ShQuery(c, "alice", "sh-ll-dev", "r1"), "none");
  EXPECT_EQ(*ShQuery(c, "bob", "sh-md-dev", "r1"), "/dev/sde");
  EXPECT_EQ(*ShQuery(c, "bob", "sh-md-idx", "r1"), "1");
  EXPECT_EQ(*ShQuery(c, "alice", "sh-md-idx", "r0"), "internal\nflexible");
  EXPECT_EQ(*ShQuery(c, "bob", "sh-ip", "r1"), "10.1.1.32");
}

TEST(HostEnvTest, IpVerification) {
  auto l = LoadString("p.res", kConfig);
  const Config& c = l->config;
  EXPECT_TRUE(VerifyLocalAddresses(c, {"r0"}, "alice", {"127.0.0.1", "10.1.1.31"}).ok());
  Status s = VerifyLocalAddresses(c, {"r0", "r1"}, "alice", {"127.0.0.1"});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("p.res:7:3: in resource r0, on alice: IP 10.1.1.31 not found"),
            std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("in resource r1"), std::string::npos);
  auto mine = HostAddresses();
  EXPECT_NE(std::find(mine.begin(), mine.end(), "127.0.0.1"), mine.end());
  EXPECT_FALSE(HostNodeName().empty());
}

std::vector<std::string> PlanWith(const std::string& cmd, const std::string& target,
                                  std::vector<std::string> passthrough, bool force = false) {
  auto l = LoadString("p.res", kConfig);
  EXPECT_TRUE(l.ok()) << l.status().ToString();
  auto p = PlanCommand(l->config, "alice", cmd, target, PlanFlags{force, passthrough});
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  std::vector<std::string> out;
  if (p.ok()) {
    for (const auto& s : *p) out.push_back(FormatStep(s));
  }
  return out;
}

TEST(AdmPlanTest, PassthroughOptionsAsDrbdadm) {
  EXPECT_EQ(PlanWith("connect", "r0", {"--discard-my-data", "--tentative"}),
            std::vector<std::string>{"bsrsetup connect r0 1 --discard-my-data --tentative"});
  EXPECT_EQ(PlanWith("verify", "r0/0", {"--start=100"}),
            std::vector<std::string>{"bsrsetup verify r0 1 0 --start=100"});
  auto inv = PlanWith("invalidate", "r0/0", {"--reset-bitmap=no"});
  ASSERT_EQ(inv.size(), 2u);
  EXPECT_EQ(inv[0], "bsrsetup invalidate 2 --reset-bitmap=no");
  EXPECT_EQ(inv[1], "bsrmeta 2 bsr1 /dev/sdb1 internal invalidate");  // not on bsrmeta
  // A configured value of the same option is replaced, not repeated.
  auto att = PlanWith("attach", "r0/0", {"--al-extents=100"});
  EXPECT_EQ(att.back(), "bsrsetup attach 2 /dev/sdb1 /dev/sdb1 internal --al-extents=100");
  EXPECT_EQ(PlanWith("resize", "r0/0", {"--size=10G"}),
            (std::vector<std::string>{"bsrsetup resize 2 --size=10G", "bsrsetup check-resize 2"}));
  EXPECT_EQ(PlanWith("new-current-uuid", "r0/1", {"--clear-bitmap"}),
            std::vector<std::string>{"bsrsetup new-current-uuid 3 --clear-bitmap"});
  auto adj = PlanWith("adjust", "r0", {"--discard-my-data"});
  EXPECT_EQ(adj.back(), "bsrsetup connect r0 1 --discard-my-data");
  EXPECT_EQ(PlanWith("detach", "r0/0", {}, true),
            std::vector<std::string>{"bsrsetup detach 2 --force"});
  EXPECT_EQ(PlanWith("secondary", "r0", {}, true),
            std::vector<std::string>{"bsrsetup secondary r0 --force"});

  EXPECT_TRUE(IsPassthroughOption("connect", "--discard-my-data"));
  EXPECT_FALSE(IsPassthroughOption("connect", "--discard-my-data=yes"));
  EXPECT_FALSE(IsPassthroughOption("connect", "--foo"));
  EXPECT_FALSE(IsPassthroughOption("up", "--discard-my-data"));
  EXPECT_FALSE(IsPassthroughOption("attach", "--resync-rate=1M"));  // as drbdadm
  EXPECT_TRUE(IsPassthroughOption("attach", "--al-extents=100"));
  EXPECT_FALSE(IsPassthroughOption("verify", "--start"));
}

TEST(AdmPlanTest, NewCurrentUuidNeedsAVolume) {
  auto l = LoadString("p.res", kConfig);
  ASSERT_TRUE(l.ok());
  auto p = PlanCommand(l->config, "alice", "new-current-uuid", "r0");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("requires a specific volume"), std::string::npos);
}

// after-sb-0pri discard-node-NAME (seed 001): discard-local on NAME, discard-remote on
// the other node, so the two sides mirror as the handshake requires.
TEST(AdmPlanTest, DiscardNodeNameBecomesLocalOrRemote) {
  const char* cfg = R"(
resource r0 {
  net { after-sb-0pri discard-node-bob; }
  volume 0 { device minor 2; disk /dev/sdb1; meta-disk internal; }
  on alice { node-id 0; address 10.1.1.31:7789; }
  on bob { node-id 1; address 10.1.1.32:7789; }
}
)";
  auto l = LoadString("d.res", cfg);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  for (auto [node, want] : {std::pair{"alice", "--after-sb-0pri=discard-remote"},
                            std::pair{"bob", "--after-sb-0pri=discard-local"}}) {
    auto p = PlanCommand(l->config, node, "up", "r0", PlanFlags{});
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    std::string new_peer;
    for (const auto& s : *p) {
      std::string f = FormatStep(s);
      if (f.rfind("bsrsetup new-peer", 0) == 0) new_peer = f;
    }
    EXPECT_NE(new_peer.find(want), std::string::npos) << node << ": " << new_peer;
  }
  // Only after-sb-0pri has it, and a name is needed.
  for (const char* bad :
       {"net { after-sb-1pri discard-node-bob; }", "net { after-sb-0pri discard-node-; }"}) {
    std::string text = std::string("resource r0 {\n  ") + bad +
                       "\n  volume 0 { device minor 2; disk /dev/sdb1; meta-disk internal; }\n"
                       "  on alice { node-id 0; address 10.1.1.31:7789; }\n"
                       "  on bob { node-id 1; address 10.1.1.32:7789; }\n}\n";
    auto b = LoadString("b.res", text);
    ASSERT_FALSE(b.ok()) << bad;
    EXPECT_NE(b.status().message().find("b.res:2:"), std::string::npos) << b.status().message();
  }
}

}  // namespace
}  // namespace bsr::config
