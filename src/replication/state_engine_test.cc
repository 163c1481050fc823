#include "replication/state_engine.h"

#include <gtest/gtest.h>

#include <vector>

namespace bsr::replication {
namespace {

ResourceState TwoNode(DiskState local, DiskState peer, Role peer_role = Role::kSecondary) {
  ResourceState s;
  s.name = "r0";
  s.node_id = 0;
  DeviceState dev;
  dev.volume = 0;
  dev.minor = 2;
  dev.disk = local;
  s.devices[0] = dev;
  ConnectionState c;
  c.peer_node_id = 1;
  c.name = "bob";
  c.conn = ConnState::kConnected;
  c.peer_role = peer_role;
  PeerDeviceState pd;
  pd.repl = ReplState::kEstablished;
  pd.peer_disk = peer;
  c.peer_devices[0] = pd;
  s.connections[1] = c;
  return s;
}

TEST(StateEngine, PromoteUpToDateSucceedsAndNotifies) {
  StateEngine e(TwoNode(DiskState::kUpToDate, DiskState::kUpToDate));
  std::vector<std::pair<Role, Role>> seen;
  e.Subscribe(
      [&](const ResourceState& o, const ResourceState& n) { seen.emplace_back(o.role, n.role); });
  ASSERT_TRUE(e.Change("primary", [](ResourceState& s) { s.role = Role::kPrimary; }).ok());
  EXPECT_EQ(e.state().role, Role::kPrimary);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], std::make_pair(Role::kSecondary, Role::kPrimary));
}

TEST(StateEngine, PromoteInconsistentRefusedStateUnchanged) {
  StateEngine e(TwoNode(DiskState::kInconsistent, DiskState::kInconsistent));
  int notified = 0;
  e.Subscribe([&](const ResourceState&, const ResourceState&) { ++notified; });
  Status s = e.Change("primary", [](ResourceState& st) { st.role = Role::kPrimary; });
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Errc::kState);
  EXPECT_NE(s.message().find("primary r0: State change failed: Need access to UpToDate data"),
            std::string::npos)
      << s.message();
  EXPECT_EQ(e.state().role, Role::kSecondary);
  EXPECT_EQ(notified, 0);
}

TEST(StateEngine, ForcedPromotionMakesDiskUpToDate) {
  StateEngine e(TwoNode(DiskState::kInconsistent, DiskState::kInconsistent));
  ASSERT_TRUE(e.Change("primary --force", [](ResourceState& s) {
                 s.role = Role::kPrimary;
                 s.devices[0].disk = DiskState::kUpToDate;
               }).ok());
  EXPECT_EQ(e.state().devices.at(0).disk, DiskState::kUpToDate);
}

TEST(StateEngine, PromoteWithUpToDatePeerAllowed) {
  StateEngine e(TwoNode(DiskState::kInconsistent, DiskState::kUpToDate));
  EXPECT_TRUE(e.Change("primary", [](ResourceState& s) { s.role = Role::kPrimary; }).ok());
}

TEST(StateEngine, SecondPrimaryRefused) {
  StateEngine e(TwoNode(DiskState::kUpToDate, DiskState::kUpToDate, Role::kPrimary));
  Status s = e.Change("primary", [](ResourceState& st) { st.role = Role::kPrimary; });
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("peer bob (node-id 1) is Primary"), std::string::npos);
  EXPECT_EQ(e.state().role, Role::kSecondary);
}

TEST(StateEngine, DetachOnPrimaryRefused) {
  StateEngine e(TwoNode(DiskState::kUpToDate, DiskState::kUpToDate));
  ASSERT_TRUE(e.Change("primary", [](ResourceState& s) { s.role = Role::kPrimary; }).ok());
  Status s =
      e.Change("detach", [](ResourceState& st) { st.devices[0].disk = DiskState::kDetaching; });
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("detach is not allowed on a Primary"), std::string::npos);
  EXPECT_EQ(e.state().devices.at(0).disk, DiskState::kUpToDate);
  // An I/O error policy (internal) may still take the disk away.
  EXPECT_TRUE(e.Change(
                   "io-error", [](ResourceState& st) { st.devices[0].disk = DiskState::kFailed; },
                   ChangeFlags{.internal = true})
                  .ok());
}

TEST(StateEngine, DemoteWhileOpenRefused) {
  StateEngine e(TwoNode(DiskState::kUpToDate, DiskState::kUpToDate));
  ASSERT_TRUE(e.Change("primary", [](ResourceState& s) {
                 s.role = Role::kPrimary;
                 s.devices[0].open = s.devices[0].open_writable = true;
               }).ok());
  Status s = e.Change("secondary", [](ResourceState& st) { st.role = Role::kSecondary; });
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("held open"), std::string::npos);
  EXPECT_EQ(e.state().role, Role::kPrimary);
}

TEST(StateEngine, ReplicationStateNeedsConnection) {
  StateEngine e(TwoNode(DiskState::kUpToDate, DiskState::kUpToDate));
  Status s = e.Change("disconnect", [](ResourceState& st) {
    st.connections[1].conn = ConnState::kConnecting;  // peer device left Established
  });
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(e.Change("disconnect", [](ResourceState& st) {
                 st.connections[1].conn = ConnState::kConnecting;
                 st.connections[1].peer_devices[0].repl = ReplState::kOff;
               }).ok());
}

TEST(StateEngine, SyncTargetNeedsInconsistentDisk) {
  StateEngine e(TwoNode(DiskState::kUpToDate, DiskState::kUpToDate));
  Status s = e.Change("sync", [](ResourceState& st) {
    st.connections[1].peer_devices[0].repl = ReplState::kSyncTarget;
  });
  EXPECT_FALSE(s.ok());
}

TEST(StateEngine, ListenerMayUnsubscribeItself) {
  StateEngine e(TwoNode(DiskState::kUpToDate, DiskState::kUpToDate));
  int id = 0, calls = 0;
  id = e.Subscribe([&](const ResourceState&, const ResourceState&) {
    ++calls;
    e.Unsubscribe(id);
  });
  ASSERT_TRUE(e.Change("a", [](ResourceState& s) { s.susp_user = true; }).ok());
  ASSERT_TRUE(e.Change("b", [](ResourceState& s) { s.susp_user = false; }).ok());
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace bsr::replication
