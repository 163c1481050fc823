// Lossless JSON form of ResourceState for the control socket (status, events2).
#include <fmt/format.h>

#include "control/status_format.h"

namespace bsr::control {
namespace {

using nlohmann::json;
using namespace replication;  // NOLINT: local to this file

template <typename E, typename Parse>
Result<E> EnumField(const json& j, const char* key, Parse parse) {
  if (!j.contains(key) || !j[key].is_string()) {
    return Error(Errc::kProtocol, "state JSON: missing string field '{}'", key);
  }
  auto v = parse(j[key].get<std::string>());
  if (!v) return Error(Errc::kProtocol, "state JSON: bad value for '{}'", key);
  return *v;
}

template <typename T>
T Num(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<T>() : T{};
}

bool Bool(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

}  // namespace

json ToJson(const ResourceState& s) {
  json r = {{"name", s.name},
            {"node_id", s.node_id},
            {"role", Name(s.role)},
            {"susp_user", s.susp_user},
            {"susp_no_data", s.susp_no_data},
            {"susp_fencing", s.susp_fencing},
            {"devices", json::array()},
            {"connections", json::array()}};
  for (const auto& [vol, d] : s.devices) {
    const auto& st = d.stats;
    r["devices"].push_back({{"volume", d.volume},
                            {"minor", d.minor},
                            {"disk", Name(d.disk)},
                            {"open", d.open},
                            {"open_writable", d.open_writable},
                            {"size_sectors", st.size_sectors},
                            {"read_sectors", st.read_sectors},
                            {"written_sectors", st.written_sectors},
                            {"al_writes", st.al_writes},
                            {"bm_writes", st.bm_writes},
                            {"upper_pending", st.upper_pending},
                            {"lower_pending", st.lower_pending},
                            {"al_suspended", st.al_suspended},
                            {"upper_blocked", st.upper_blocked},
                            {"lower_blocked", st.lower_blocked}});
  }
  for (const auto& [id, c] : s.connections) {
    json cj = {{"peer_node_id", c.peer_node_id}, {"name", c.name},
               {"conn", Name(c.conn)},           {"peer_role", Name(c.peer_role)},
               {"congested", c.congested},       {"peer_devices", json::array()}};
    for (const auto& [vol, p] : c.peer_devices) {
      const auto& st = p.stats;
      cj["peer_devices"].push_back({{"volume", p.volume},
                                    {"repl", Name(p.repl)},
                                    {"peer_disk", Name(p.peer_disk)},
                                    {"resync_susp_user", p.resync_susp_user},
                                    {"resync_susp_peer", p.resync_susp_peer},
                                    {"resync_susp_dependency", p.resync_susp_dependency},
                                    {"received_sectors", st.received_sectors},
                                    {"sent_sectors", st.sent_sectors},
                                    {"out_of_sync_sectors", st.out_of_sync_sectors},
                                    {"pending", st.pending},
                                    {"unacked", st.unacked},
                                    {"rs_total_sectors", st.rs_total_sectors},
                                    {"rs_done_sectors", st.rs_done_sectors},
                                    {"rs_rate_kib", st.rs_rate_kib},
                                    {"ov_left_sectors", st.ov_left_sectors},
                                    {"rs_same_csum_sectors", st.rs_same_csum_sectors},
                                    {"rs_want_kib", st.rs_want_kib}});
    }
    r["connections"].push_back(std::move(cj));
  }
  return r;
}

Result<ResourceState> FromJson(const json& j) {
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) {
    return Error(Errc::kProtocol, "state JSON: not a resource object");
  }
  ResourceState s;
  s.name = j["name"].get<std::string>();
  s.node_id = Num<int>(j, "node_id");
  BSR_ASSIGN_OR_RETURN(s.role, EnumField<Role>(j, "role", ParseRole));
  s.susp_user = Bool(j, "susp_user");
  s.susp_no_data = Bool(j, "susp_no_data");
  s.susp_fencing = Bool(j, "susp_fencing");
  if (j.contains("devices") && j["devices"].is_array()) {
    for (const auto& dj : j["devices"]) {
      DeviceState d;
      d.volume = Num<int>(dj, "volume");
      d.minor = Num<int>(dj, "minor");
      BSR_ASSIGN_OR_RETURN(d.disk, EnumField<DiskState>(dj, "disk", ParseDiskState));
      d.open = Bool(dj, "open");
      d.open_writable = Bool(dj, "open_writable");
      auto& st = d.stats;
      st.size_sectors = Num<uint64_t>(dj, "size_sectors");
      st.read_sectors = Num<uint64_t>(dj, "read_sectors");
      st.written_sectors = Num<uint64_t>(dj, "written_sectors");
      st.al_writes = Num<uint64_t>(dj, "al_writes");
      st.bm_writes = Num<uint64_t>(dj, "bm_writes");
      st.upper_pending = Num<uint32_t>(dj, "upper_pending");
      st.lower_pending = Num<uint32_t>(dj, "lower_pending");
      st.al_suspended = Bool(dj, "al_suspended");
      st.upper_blocked = Bool(dj, "upper_blocked");
      st.lower_blocked = Bool(dj, "lower_blocked");
      s.devices[d.volume] = d;
    }
  }
  if (j.contains("connections") && j["connections"].is_array()) {
    for (const auto& cj : j["connections"]) {
      ConnectionState c;
      c.peer_node_id = Num<int>(cj, "peer_node_id");
      if (cj.contains("name") && cj["name"].is_string()) c.name = cj["name"].get<std::string>();
      BSR_ASSIGN_OR_RETURN(c.conn, EnumField<ConnState>(cj, "conn", ParseConnState));
      BSR_ASSIGN_OR_RETURN(c.peer_role, EnumField<Role>(cj, "peer_role", ParseRole));
      c.congested = Bool(cj, "congested");
      if (cj.contains("peer_devices") && cj["peer_devices"].is_array()) {
        for (const auto& pj : cj["peer_devices"]) {
          PeerDeviceState p;
          p.volume = Num<int>(pj, "volume");
          BSR_ASSIGN_OR_RETURN(p.repl, EnumField<ReplState>(pj, "repl", ParseReplState));
          BSR_ASSIGN_OR_RETURN(p.peer_disk, EnumField<DiskState>(pj, "peer_disk", ParseDiskState));
          p.resync_susp_user = Bool(pj, "resync_susp_user");
          p.resync_susp_peer = Bool(pj, "resync_susp_peer");
          p.resync_susp_dependency = Bool(pj, "resync_susp_dependency");
          auto& st = p.stats;
          st.received_sectors = Num<uint64_t>(pj, "received_sectors");
          st.sent_sectors = Num<uint64_t>(pj, "sent_sectors");
          st.out_of_sync_sectors = Num<uint64_t>(pj, "out_of_sync_sectors");
          st.pending = Num<uint32_t>(pj, "pending");
          st.unacked = Num<uint32_t>(pj, "unacked");
          st.rs_total_sectors = Num<uint64_t>(pj, "rs_total_sectors");
          st.rs_done_sectors = Num<uint64_t>(pj, "rs_done_sectors");
          st.rs_rate_kib = Num<uint64_t>(pj, "rs_rate_kib");
          st.ov_left_sectors = Num<uint64_t>(pj, "ov_left_sectors");
          st.rs_same_csum_sectors = Num<uint64_t>(pj, "rs_same_csum_sectors");
          st.rs_want_kib = Num<uint64_t>(pj, "rs_want_kib");
          c.peer_devices[p.volume] = p;
        }
      }
      s.connections[c.peer_node_id] = std::move(c);
    }
  }
  return s;
}

}  // namespace bsr::control
