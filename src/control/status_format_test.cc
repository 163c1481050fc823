#include "control/status_format.h"

#include <gtest/gtest.h>

namespace bsr::control {
namespace {

using namespace replication;  // NOLINT: test brevity

ResourceState Seed002() {
  ResourceState s;
  s.name = "r0";
  s.node_id = 1;
  s.role = Role::kSecondary;
  DeviceState d;
  d.volume = 0;
  d.minor = 0;
  d.disk = DiskState::kInconsistent;
  d.stats.size_sectors = 2 * 1024 * 1024;
  s.devices[0] = d;
  ConnectionState c;
  c.peer_node_id = 0;
  c.name = "node0";
  c.conn = ConnState::kConnected;
  c.peer_role = Role::kSecondary;
  PeerDeviceState p;
  p.repl = ReplState::kEstablished;
  p.peer_disk = DiskState::kInconsistent;
  c.peer_devices[0] = p;
  s.connections[0] = c;
  return s;
}

TEST(StatusFormat, Seed002Layout) {
  EXPECT_EQ(FormatStatus(Seed002()),
            "r0 role:Secondary\n"
            "  disk:Inconsistent\n"
            "  node0 role:Secondary\n"
            "    peer-disk:Inconsistent\n"
            "\n");
}

TEST(StatusFormat, SyncingShowsReplicationAndDone) {
  ResourceState s = Seed002();
  s.role = Role::kPrimary;
  s.devices[0].disk = DiskState::kUpToDate;
  auto& p = s.connections[0].peer_devices[0];
  p.repl = ReplState::kSyncSource;
  p.stats.rs_total_sectors = 10000;
  p.stats.out_of_sync_sectors = 8766;
  EXPECT_EQ(FormatStatus(s),
            "r0 role:Primary\n"
            "  disk:UpToDate\n"
            "  node0 role:Secondary\n"
            "    replication:SyncSource peer-disk:Inconsistent done:12.34\n"
            "\n");
}

TEST(StatusFormat, UnconnectedPeerShowsConnectionOnly) {
  ResourceState s = Seed002();
  auto& c = s.connections[0];
  c.conn = ConnState::kConnecting;
  c.peer_role = Role::kUnknown;
  c.peer_devices[0].repl = ReplState::kOff;
  c.peer_devices[0].peer_disk = DiskState::kDUnknown;
  EXPECT_EQ(FormatStatus(s),
            "r0 role:Secondary\n"
            "  disk:Inconsistent\n"
            "  node0 connection:Connecting\n"
            "\n");
}

TEST(StatusFormat, SeveralVolumesNameThem) {
  ResourceState s = Seed002();
  DeviceState d1 = s.devices[0];
  d1.volume = 1;
  d1.minor = 1;
  s.devices[1] = d1;
  PeerDeviceState p1 = s.connections[0].peer_devices[0];
  p1.volume = 1;
  s.connections[0].peer_devices[1] = p1;
  EXPECT_EQ(FormatStatus(s),
            "r0 role:Secondary\n"
            "  volume:0 disk:Inconsistent\n"
            "  volume:1 disk:Inconsistent\n"
            "  node0 role:Secondary\n"
            "    volume:0 peer-disk:Inconsistent\n"
            "    volume:1 peer-disk:Inconsistent\n"
            "\n");
}

TEST(StatusFormat, StatisticsAddCounters) {
  ResourceState s = Seed002();
  s.devices[0].stats.read_sectors = 2048;
  s.devices[0].stats.written_sectors = 4096;
  auto& st = s.connections[0].peer_devices[0].stats;
  st.sent_sectors = 4096;
  st.out_of_sync_sectors = 8;
  st.pending = 3;
  st.unacked = 1;
  EXPECT_EQ(FormatStatus(s, {.verbose = false, .statistics = true}),
            "r0 role:Secondary\n"
            "  disk:Inconsistent\n"
            "      read:1024 written:2048\n"
            "  node0 role:Secondary\n"
            "    peer-disk:Inconsistent\n"
            "        received:0 sent:2048 out-of-sync:4 pending:3 unacked:1\n"
            "\n");
}

TEST(StatusFormat, VerboseShowsEverything) {
  std::string out = FormatStatus(Seed002(), {.verbose = true, .statistics = false});
  EXPECT_NE(out.find("r0 node-id:1 role:Secondary suspended:no"), std::string::npos) << out;
  EXPECT_NE(out.find("  volume:0 minor:0 disk:Inconsistent"), std::string::npos) << out;
  EXPECT_NE(out.find("node0 node-id:0 connection:Connected role:Secondary congested:no"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("replication:Established peer-disk:Inconsistent resync-suspended:no"),
            std::string::npos)
      << out;
}

TEST(Events2, ExistsListsEveryObject) {
  auto lines = Events2Exists(Seed002());
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], "exists resource name:r0 role:Secondary suspended:no");
  EXPECT_EQ(lines[1], "exists device name:r0 volume:0 minor:0 disk:Inconsistent client:no open:no");
  EXPECT_EQ(lines[2],
            "exists connection name:r0 peer-node-id:0 conn-name:node0 connection:Connected "
            "role:Secondary");
  EXPECT_EQ(lines[3],
            "exists peer-device name:r0 peer-node-id:0 conn-name:node0 volume:0 "
            "replication:Established peer-disk:Inconsistent peer-client:no resync-suspended:no");
}

TEST(Events2, DiffShowsOnlyChanges) {
  ResourceState a = Seed002();
  ResourceState b = a;
  EXPECT_TRUE(Events2Diff(a, b).empty());
  b.role = Role::kPrimary;
  b.devices[0].disk = DiskState::kUpToDate;
  b.devices[0].stats.written_sectors = 99;  // statistics are not events
  auto lines = Events2Diff(a, b);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "change resource name:r0 role:Primary");
  EXPECT_EQ(lines[1], "change device name:r0 volume:0 minor:0 disk:UpToDate");

  ResourceState c = b;
  c.connections.clear();
  lines = Events2Diff(b, c);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "destroy peer-device name:r0 peer-node-id:0 conn-name:node0 volume:0");
  EXPECT_EQ(lines[1], "destroy connection name:r0 peer-node-id:0 conn-name:node0");
  lines = Events2Diff(c, b);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].rfind("create connection ", 0), 0u);
}

TEST(StateJson, RoundTripIsLossless) {
  ResourceState s = Seed002();
  s.susp_user = true;
  s.devices[0].stats.al_writes = 7;
  s.connections[0].peer_devices[0].stats.rs_rate_kib = 1234;
  auto back = FromJson(ToJson(s));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(ToJson(*back), ToJson(s));
  EXPECT_EQ(FormatStatus(*back, {true, true}), FormatStatus(s, {true, true}));
}

TEST(StateJson, RejectsMalformed) {
  EXPECT_FALSE(FromJson(nlohmann::json::array()).ok());
  auto j = ToJson(Seed002());
  j["role"] = "Boss";
  EXPECT_FALSE(FromJson(j).ok());
  j = ToJson(Seed002());
  j["devices"][0].erase("disk");
  EXPECT_FALSE(FromJson(j).ok());
}

TEST(StatusJson, HasDrbdsetupKeys) {
  auto j = StatusJson(Seed002());
  EXPECT_EQ(j["name"], "r0");
  EXPECT_EQ(j["devices"][0]["disk-state"], "Inconsistent");
  EXPECT_EQ(j["connections"][0]["peer_devices"][0]["peer-disk-state"], "Inconsistent");
}

}  // namespace
}  // namespace bsr::control
