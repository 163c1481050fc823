#include "control/status_format.h"

#include <fmt/format.h>

namespace bsr::control {
namespace {

using replication::ConnectionState;
using replication::ConnState;
using replication::DeviceState;
using replication::Name;
using replication::PeerDeviceState;
using replication::ReplState;
using replication::ResourceState;

// drbdsetup's line builder: the first field on a line drops its leading space and
// gets the line's indent instead.
class Lines {
 public:
  void Begin(int indent) {
    indent_ = indent;
    at_start_ = true;
  }
  template <typename... Args>
  void Add(fmt::format_string<Args...> f, Args&&... args) {
    std::string s = fmt::format(f, std::forward<Args>(args)...);
    if (at_start_) {
      out_.append(indent_, ' ');
      if (!s.empty() && s[0] == ' ') s.erase(0, 1);
      at_start_ = false;
    }
    out_ += s;
  }
  void End() {
    if (!at_start_) out_ += '\n';
    at_start_ = true;
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
  int indent_ = 0;
  bool at_start_ = true;
};

std::string SuspendedText(const ResourceState& s) {
  std::string r;
  auto add = [&](const char* w) { r += r.empty() ? w : fmt::format(",{}", w); };
  if (s.susp_user) add("user");
  if (s.susp_no_data) add("no-data");
  if (s.susp_fencing) add("fencing");
  return r.empty() ? "no" : r;
}

std::string ResyncSuspendedText(const PeerDeviceState& p) {
  std::string r;
  auto add = [&](const char* w) { r += r.empty() ? w : fmt::format(",{}", w); };
  if (p.resync_susp_user) add("user");
  if (p.resync_susp_peer) add("peer");
  if (p.resync_susp_dependency) add("dependency");
  return r.empty() ? "no" : r;
}

bool ResyncSuspended(const PeerDeviceState& p) {
  return p.resync_susp_user || p.resync_susp_peer || p.resync_susp_dependency;
}

// Sectors the running resync (out of sync) or online verify (left) still has to do.
uint64_t SectorsToGo(const PeerDeviceState& p) {
  return replication::IsVerifying(p.repl) ? p.stats.ov_left_sectors : p.stats.out_of_sync_sectors;
}

// A resync or verify with progress details (drbdsetup's sync_details).
bool SyncDetails(const PeerDeviceState& p) {
  return (replication::IsSyncing(p.repl) || replication::IsVerifying(p.repl)) &&
         p.stats.rs_total_sectors > 0;
}

// Percentage of the running resync that is done (drbdsetup's "done:").
double DonePercent(const PeerDeviceState& p, const DeviceState* dev) {
  if (p.stats.rs_total_sectors > 0) {
    uint64_t to_go = std::min(SectorsToGo(p), p.stats.rs_total_sectors);
    return 100.0 * static_cast<double>(p.stats.rs_total_sectors - to_go) /
           static_cast<double>(p.stats.rs_total_sectors);
  }
  if (dev && dev->stats.size_sectors > 0) {
    return 100.0 * (1.0 - static_cast<double>(p.stats.out_of_sync_sectors) /
                              static_cast<double>(dev->stats.size_sectors));
  }
  return 0.0;
}

void DeviceStatus(Lines& l, const DeviceState& d, bool single, StatusOptions o) {
  l.Begin(2);
  if (o.verbose || !(single && d.volume == 0)) {
    l.Add("volume:{}", d.volume);
    if (o.verbose) l.Add(" minor:{}", d.minor);
  }
  l.Add(" disk:{}", Name(d.disk));
  if (o.verbose) l.Add(" open:{}", d.open ? "yes" : "no");
  const auto& st = d.stats;
  if (o.statistics) {
    l.End();
    l.Begin(6);
    if (o.verbose) l.Add(" size:{}", st.size_sectors / 2);
    l.Add(" read:{} written:{}", st.read_sectors / 2, st.written_sectors / 2);
    if (o.verbose) {
      l.Add(" al-writes:{} bm-writes:{} upper-pending:{} lower-pending:{} al-suspended:{}",
            st.al_writes, st.bm_writes, st.upper_pending, st.lower_pending,
            st.al_suspended ? "yes" : "no");
    }
  }
  if (o.verbose || st.upper_blocked || st.lower_blocked) {
    std::string b = st.upper_blocked && st.lower_blocked ? "upper,lower"
                    : st.upper_blocked                   ? "upper"
                    : st.lower_blocked                   ? "lower"
                                                         : "no";
    l.Add(" blocked:{}", b);
  }
  l.End();
}

void PeerDeviceStatus(Lines& l, const PeerDeviceState& p, const DeviceState* dev, bool single,
                      StatusOptions o) {
  l.Begin(4);
  if (o.verbose || !(single && p.volume == 0)) l.Add("volume:{}", p.volume);
  if (o.verbose || p.repl > ReplState::kEstablished) l.Add(" replication:{}", Name(p.repl));
  if (o.verbose || o.statistics || p.repl != ReplState::kOff ||
      p.peer_disk != replication::DiskState::kDUnknown) {
    l.Add(" peer-disk:{}", Name(p.peer_disk));
    if (replication::IsSyncing(p.repl) || SyncDetails(p)) {
      l.Add(" done:{:.2f}", DonePercent(p, dev));
    }
    if (o.verbose || ResyncSuspended(p)) l.Add(" resync-suspended:{}", ResyncSuspendedText(p));
    if (o.statistics) {
      l.End();
      l.Begin(8);
      const auto& st = p.stats;
      l.Add(" received:{} sent:{} out-of-sync:{} pending:{} unacked:{}", st.received_sectors / 2,
            st.sent_sectors / 2, st.out_of_sync_sectors / 2, st.pending, st.unacked);
      if (o.verbose && SyncDetails(p)) {
        // drbdsetup: speed over the last marks in MiB/s, and the seconds to go at it.
        l.Add(" dbdt1:{:.2f}", static_cast<double>(st.rs_rate_kib) / 1024.0);
        if (st.rs_rate_kib > 0) {
          l.Add(" eta:{:.0f}",
                static_cast<double>(SectorsToGo(p)) / 2.0 / static_cast<double>(st.rs_rate_kib));
        } else {
          l.Add(" eta:nan");
        }
      }
    }
  }
  l.End();
}

void ConnectionStatus(Lines& l, const ConnectionState& c, const ResourceState& s, bool single,
                      StatusOptions o) {
  l.Begin(2);
  l.Add("{}", c.name);
  if (o.verbose) l.Add(" node-id:{}", c.peer_node_id);
  bool connected = c.conn == ConnState::kConnected;
  if (o.verbose || !connected) l.Add(" connection:{}", Name(c.conn));
  if (o.verbose || connected) l.Add(" role:{}", Name(c.peer_role));
  if (o.verbose || c.congested) l.Add(" congested:{}", c.congested ? "yes" : "no");
  l.End();
  if (!(o.verbose || o.statistics || connected)) return;
  for (const auto& [vol, pd] : c.peer_devices) {
    auto dev = s.devices.find(vol);
    PeerDeviceStatus(l, pd, dev == s.devices.end() ? nullptr : &dev->second, single, o);
  }
}

std::string ConnIdentity(const ResourceState& s, const ConnectionState& c) {
  return fmt::format("name:{} peer-node-id:{} conn-name:{}", s.name, c.peer_node_id, c.name);
}

std::string ResourceFields(const ResourceState* o, const ResourceState& n) {
  std::string f;
  if (!o || o->role != n.role) f += fmt::format(" role:{}", Name(n.role));
  if (!o || SuspendedText(*o) != SuspendedText(n)) f += " suspended:" + SuspendedText(n);
  return f;
}

std::string DeviceFields(const DeviceState* o, const DeviceState& n) {
  std::string f;
  if (!o || o->disk != n.disk) f += fmt::format(" disk:{}", Name(n.disk));
  if (!o) f += " client:no";
  if (!o || o->open != n.open) f += fmt::format(" open:{}", n.open ? "yes" : "no");
  return f;
}

std::string ConnectionFields(const ConnectionState* o, const ConnectionState& n) {
  std::string f;
  if (!o || o->conn != n.conn) f += fmt::format(" connection:{}", Name(n.conn));
  if (!o || o->peer_role != n.peer_role) f += fmt::format(" role:{}", Name(n.peer_role));
  if (o && o->congested != n.congested)
    f += fmt::format(" congested:{}", n.congested ? "yes" : "no");
  return f;
}

std::string PeerDeviceFields(const PeerDeviceState* o, const PeerDeviceState& n) {
  std::string f;
  if (!o || o->repl != n.repl) f += fmt::format(" replication:{}", Name(n.repl));
  if (!o || o->peer_disk != n.peer_disk) f += fmt::format(" peer-disk:{}", Name(n.peer_disk));
  if (!o) f += " peer-client:no";
  if (!o || ResyncSuspendedText(*o) != ResyncSuspendedText(n)) {
    f += " resync-suspended:" + ResyncSuspendedText(n);
  }
  return f;
}

}  // namespace

std::string FormatStatus(const ResourceState& s, StatusOptions o) {
  Lines l;
  l.Begin(0);
  l.Add("{}", s.name);
  if (o.verbose) l.Add(" node-id:{}", s.node_id);
  l.Add(" role:{}", Name(s.role));
  if (o.verbose || s.suspended()) {
    l.Add(" suspended:{}", SuspendedText(s));
  }
  if (o.statistics && o.verbose) {
    l.End();
    l.Begin(4);
    l.Add(" write-ordering:flush");
  }
  l.End();
  bool single = s.devices.size() == 1;
  for (const auto& [vol, dev] : s.devices) DeviceStatus(l, dev, single, o);
  for (const auto& [id, conn] : s.connections) ConnectionStatus(l, conn, s, single, o);
  std::string out = l.Take();
  out += '\n';
  return out;
}

nlohmann::json StatusJson(const ResourceState& s) {
  nlohmann::json r = {{"name", s.name},
                      {"node-id", s.node_id},
                      {"role", Name(s.role)},
                      {"suspended", s.suspended()},
                      {"write-ordering", "flush"},
                      {"devices", nlohmann::json::array()},
                      {"connections", nlohmann::json::array()}};
  for (const auto& [vol, d] : s.devices) {
    r["devices"].push_back({{"volume", vol},
                            {"minor", d.minor},
                            {"disk-state", Name(d.disk)},
                            {"client", false},
                            {"open", d.open},
                            {"size", d.stats.size_sectors / 2},
                            {"read", d.stats.read_sectors / 2},
                            {"written", d.stats.written_sectors / 2},
                            {"al-writes", d.stats.al_writes},
                            {"bm-writes", d.stats.bm_writes},
                            {"upper-pending", d.stats.upper_pending},
                            {"lower-pending", d.stats.lower_pending}});
  }
  for (const auto& [id, c] : s.connections) {
    nlohmann::json cj = {{"peer-node-id", id},
                         {"name", c.name},
                         {"connection-state", Name(c.conn)},
                         {"congested", c.congested},
                         {"peer-role", Name(c.peer_role)},
                         {"peer_devices", nlohmann::json::array()}};
    for (const auto& [vol, p] : c.peer_devices) {
      auto dev = s.devices.find(vol);
      bool sync = replication::IsSyncing(p.repl);
      nlohmann::json pj = {
          {"volume", vol},
          {"replication-state", Name(p.repl)},
          {"peer-disk-state", Name(p.peer_disk)},
          {"peer-client", false},
          {"resync-suspended", ResyncSuspendedText(p)},
          {"received", p.stats.received_sectors / 2},
          {"sent", p.stats.sent_sectors / 2},
          {"out-of-sync", p.stats.out_of_sync_sectors / 2},
          {"pending", p.stats.pending},
          {"unacked", p.stats.unacked},
          {"has-sync-details", sync},
          {"percent-in-sync", DonePercent(p, dev == s.devices.end() ? nullptr : &dev->second)}};
      if (SyncDetails(p)) {
        // drbdsetup's sync details (rs-*, ov-*, want, db1/dt1, estimated seconds).
        const auto& st = p.stats;
        uint64_t to_go = SectorsToGo(p);
        pj["has-sync-details"] = true;
        pj["rs-total"] = st.rs_total_sectors;
        if (replication::IsVerifying(p.repl)) {
          pj["ov-left"] = st.ov_left_sectors;
        } else {
          pj["rs-same-csum"] = st.rs_same_csum_sectors;
        }
        pj["want"] = static_cast<double>(st.rs_want_kib) / 1024.0;
        pj["db1/dt1 [MiB/s]"] = static_cast<double>(st.rs_rate_kib) / 1024.0;
        pj["estimated-seconds-to-finish"] =
            st.rs_rate_kib ? static_cast<double>(to_go) / 2.0 / static_cast<double>(st.rs_rate_kib)
                           : 987654321.0;
        pj["percent-resync-done"] =
            100.0 *
            static_cast<double>(st.rs_total_sectors - std::min(to_go, st.rs_total_sectors)) /
            static_cast<double>(st.rs_total_sectors);
      }
      cj["peer_devices"].push_back(std::move(pj));
    }
    r["connections"].push_back(std::move(cj));
  }
  return r;
}

std::vector<std::string> Events2Exists(const ResourceState& s) {
  std::vector<std::string> out;
  out.push_back(fmt::format("exists resource name:{}{}", s.name, ResourceFields(nullptr, s)));
  for (const auto& [vol, d] : s.devices) {
    out.push_back(fmt::format("exists device name:{} volume:{} minor:{}{}", s.name, vol, d.minor,
                              DeviceFields(nullptr, d)));
  }
  for (const auto& [id, c] : s.connections) {
    out.push_back(
        fmt::format("exists connection {}{}", ConnIdentity(s, c), ConnectionFields(nullptr, c)));
    for (const auto& [vol, p] : c.peer_devices) {
      out.push_back(fmt::format("exists peer-device {} volume:{}{}", ConnIdentity(s, c), vol,
                                PeerDeviceFields(nullptr, p)));
    }
  }
  return out;
}

std::vector<std::string> Events2Diff(const ResourceState& o, const ResourceState& n) {
  std::vector<std::string> out;
  if (std::string f = ResourceFields(&o, n); !f.empty()) {
    out.push_back(fmt::format("change resource name:{}{}", n.name, f));
  }
  for (const auto& [vol, d] : n.devices) {
    auto it = o.devices.find(vol);
    const DeviceState* od = it == o.devices.end() ? nullptr : &it->second;
    std::string f = DeviceFields(od, d);
    if (!od || !f.empty()) {
      out.push_back(fmt::format("{} device name:{} volume:{} minor:{}{}", od ? "change" : "create",
                                n.name, vol, d.minor, f));
    }
  }
  for (const auto& [id, c] : n.connections) {
    auto it = o.connections.find(id);
    const ConnectionState* oc = it == o.connections.end() ? nullptr : &it->second;
    std::string f = ConnectionFields(oc, c);
    if (!oc || !f.empty()) {
      out.push_back(
          fmt::format("{} connection {}{}", oc ? "change" : "create", ConnIdentity(n, c), f));
    }
    for (const auto& [vol, p] : c.peer_devices) {
      const PeerDeviceState* op = nullptr;
      if (oc) {
        auto pit = oc->peer_devices.find(vol);
        if (pit != oc->peer_devices.end()) op = &pit->second;
      }
      std::string pf = PeerDeviceFields(op, p);
      if (!op || !pf.empty()) {
        out.push_back(fmt::format("{} peer-device {} volume:{}{}", op ? "change" : "create",
                                  ConnIdentity(n, c), vol, pf));
      }
    }
    if (oc) {
      for (const auto& [vol, p] : oc->peer_devices) {
        if (!c.peer_devices.count(vol)) {
          out.push_back(fmt::format("destroy peer-device {} volume:{}", ConnIdentity(n, *oc), vol));
        }
      }
    }
  }
  for (const auto& [id, c] : o.connections) {
    if (n.connections.count(id)) continue;
    for (const auto& [vol, p] : c.peer_devices) {
      out.push_back(fmt::format("destroy peer-device {} volume:{}", ConnIdentity(o, c), vol));
    }
    out.push_back(fmt::format("destroy connection {}", ConnIdentity(o, c)));
  }
  for (const auto& [vol, d] : o.devices) {
    if (!n.devices.count(vol)) {
      out.push_back(fmt::format("destroy device name:{} volume:{} minor:{}", o.name, vol, d.minor));
    }
  }
  return out;
}

}  // namespace bsr::control
