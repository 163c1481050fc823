// One `resource` section -> Resource: hosts and their volumes, connections (explicit,
// mesh or implied), inheritance common -> resource -> connection/volume/on, node-id
// assignment and the per-resource checks.
#include <arpa/inet.h>

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "config/builder_util.h"
#include "config/config.h"

namespace bsr::config::internal {

namespace {

constexpr int kMaxNodeId = 16;  // seed 001: node-id ranges from 0 to 16
constexpr int kMaxVolume = 65535;

// Orders addresses by family, binary IP, then port.
bool AddressLess(const Address& a, const Address& b) {
  auto key = [](const Address& x) {
    unsigned char buf[16] = {};
    inet_pton(x.family == "ipv6" ? AF_INET6 : AF_INET, x.ip.c_str(), buf);
    return std::make_tuple(x.family, std::string(reinterpret_cast<char*>(buf), 16), x.port);
  };
  return key(a) < key(b);
}

struct HostSpec {
  Statement* st = nullptr;
  Host host;
  std::map<int, VolSpec> volumes;  // host-level volumes (incl. implicit volume 0)
  DiskOptions disk_opts;           // host-level `disk {}`
  PeerDeviceOptions pd_opts;
  bool node_id_set = false;
  bool address_given = false;  // even if it did not parse
};

struct Endpoint {
  int host = -1;
  std::optional<Address> addr;
  std::optional<int> port;
  SourceLoc loc;
};

void ReadVolumeSection(Statement& st, std::map<int, VolSpec>& vols, Diagnostics& d) {
  if (st.words.size() != 2) {
    d.Add(st.loc, "expected 'volume NUMBER { ... }'");
    return;
  }
  auto n = ReadInt(st.words[1], 0, kMaxVolume, "volume number", d);
  if (!n) return;
  if (vols.count(*n)) {
    d.Add(st.words[1].loc,
          fmt::format("volume {} defined twice (first at line {})", *n, vols[*n].loc.line));
    return;
  }
  VolSpec v;
  v.number = *n;
  v.loc = st.loc;
  for (auto& item : st.body) {
    if (!ReadVolumeItem(item, v, d)) {
      UnknownKeyword(item.words[0], "volume", {"device", "disk", "meta-disk"}, d);
    }
  }
  vols[*n] = std::move(v);
}

// Endpoint statement: host NAME [address [AF] IP:PORT] [port N] [via proxy ...]
Endpoint ReadEndpoint(Statement& st, const Resource& res, Diagnostics& d) {
  Endpoint e;
  e.loc = st.loc;
  auto& w = st.words;
  if (st.is_section || w.size() < 2) {
    d.Add(st.loc, "expected 'host NAME [address [AF] IP:PORT] [port PORT];'");
    return e;
  }
  e.host = res.HostIndex(w[1].text);
  if (e.host < 0) {
    std::vector<std::string_view> names;
    for (const auto& h : res.hosts) {
      for (const auto& n : h.names) names.push_back(n);
    }
    std::string hint = DidYouMean(w[1].text, names);
    d.Add(w[1].loc,
          fmt::format("connection names unknown host '{}' (no 'on {}' section in resource "
                      "'{}'){}",
                      w[1].text, w[1].text, res.name,
                      hint.empty() ? "" : fmt::format("; did you mean '{}'?", hint)));
  }
  size_t i = 2;
  while (i < w.size()) {
    if (w[i].text == "address") {
      size_t start = ++i;
      e.addr = ReadAddress(st, i, d);
      if (!e.addr) return e;
      // Canonical words: address AF IP:PORT
      w.erase(w.begin() + static_cast<long>(start), w.begin() + static_cast<long>(i));
      std::string ipport = e.addr->ToConfig().substr(e.addr->family.size() + 1);
      w.insert(w.begin() + static_cast<long>(start),
               {Word{e.addr->family, false, st.loc}, Word{ipport, false, st.loc}});
      i = start + 2;
    } else if (w[i].text == "port" && i + 1 < w.size()) {
      e.port = ReadInt(w[i + 1], 1, 65535, "port", d);
      i += 2;
    } else if (w[i].text == "via") {
      break;  // proxy endpoints are accepted and not used by bsradm
    } else {
      UnknownKeyword(w[i], "host", {"address", "port", "via"}, d);
      return e;
    }
  }
  return e;
}

std::optional<Address> EndpointAddress(const Endpoint& e, const Resource& res, Diagnostics& d) {
  if (e.host < 0) return std::nullopt;
  std::optional<Address> a = e.addr;
  if (!a) a = res.hosts[e.host].address;
  if (!a) {
    d.Add(e.loc, fmt::format("host '{}' has no address: give 'address' in its 'on' section or here",
                             res.hosts[e.host].Name()));
    return std::nullopt;
  }
  if (e.port) a->port = *e.port;
  return a;
}

void ReadHost(Statement& st, HostSpec& hs, Diagnostics& d) {
  hs.st = &st;
  Host& h = hs.host;
  h.loc = st.loc;
  if (st.keyword() == "floating") {
    h.floating = true;
    size_t i = 1;
    auto a = ReadAddress(st, i, d);
    if (a) {
      h.address = a;
      st.words.resize(1);
      std::string ipport = a->ToConfig().substr(a->family.size() + 1);
      st.words.push_back(Word{a->family, false, st.loc});
      st.words.push_back(Word{ipport, false, st.loc});
    }
  } else {
    if (st.words.size() < 2) d.Add(st.loc, "'on' needs at least one host name: on NAME { ... }");
    for (size_t i = 1; i < st.words.size(); ++i) h.names.push_back(st.words[i].text);
  }
  VolSpec implicit;
  implicit.number = 0;
  bool has_implicit = false;
  for (auto& item : st.body) {
    const std::string& kw = item.keyword();
    if (!item.is_section && kw == "node-id") {
      if (item.words.size() != 2) {
        d.Add(item.loc, "expected 'node-id N;'");
        continue;
      }
      hs.node_id_set = true;  // a bad value is reported once, not again as missing
      if (auto n = ReadInt(item.words[1], 0, kMaxNodeId, "node-id", d)) h.node_id = *n;
    } else if (!item.is_section && kw == "address") {
      hs.address_given = true;
      size_t i = 1;
      auto a = ReadAddress(item, i, d);
      if (a) {
        if (i != item.words.size()) d.Add(item.words[i].loc, "unexpected word after the address");
        h.address = a;
        item.words.resize(1);
        std::string ipport = a->ToConfig().substr(a->family.size() + 1);
        item.words.push_back(Word{a->family, false, item.loc});
        item.words.push_back(Word{ipport, false, item.loc});
      }
    } else if (item.is_section && kw == "volume") {
      ReadVolumeSection(item, hs.volumes, d);
    } else if (item.is_section && kw == "disk") {
      ReadOptions(item, OptSection::kDisk, hs.disk_opts, &hs.pd_opts, d);
    } else if (!item.is_section && ReadVolumeItem(item, implicit, d)) {
      if (!has_implicit) implicit.loc = item.loc;
      has_implicit = true;
    } else if (kw == "proxy") {
      // DRBD Proxy endpoints; bsr relays through DRX instead (seed 000).
    } else {
      UnknownKeyword(item.words[0], st.keyword(),
                     {"node-id", "address", "volume", "device", "disk", "meta-disk", "proxy"}, d);
    }
  }
  if (has_implicit) {
    if (hs.volumes.count(0)) {
      d.Add(implicit.loc, "volume 0 is given both implicitly and in a 'volume 0' section");
    } else {
      hs.volumes[0] = implicit;
    }
  }
}

// Peer-device options describe a (connection, volume) pair; an `on` section is one
// end only, so they are refused there rather than silently dropped.
void RefuseHostPeerDeviceOptions(const HostSpec& hs, Diagnostics& d) {
  std::vector<const OptionMap*> maps = {&hs.pd_opts};
  for (const auto& [n, v] : hs.volumes) maps.push_back(&v.pd_opts);
  for (const OptionMap* m : maps) {
    for (const auto& e : m->entries()) {
      d.Add(
          e.loc,
          fmt::format("'{}' is a peer-device option: write it in the disk section of the resource, "
                      "a volume or a connection, not inside 'on {}'",
                      e.name, hs.host.Name()));
    }
  }
}

void ResolveVolumes(HostSpec& hs, const std::map<int, VolSpec>& res_vols, const VolSpec& res_base,
                    Diagnostics& d) {
  std::set<int> numbers;
  for (const auto& [n, _] : res_vols) numbers.insert(n);
  for (const auto& [n, _] : hs.volumes) numbers.insert(n);
  for (int n : numbers) {
    VolSpec acc = res_base;
    acc.number = n;
    auto rv = res_vols.find(n);
    if (rv != res_vols.end()) acc = Overlay(acc, rv->second);
    VolSpec host_level;
    host_level.disk_opts = hs.disk_opts;
    host_level.pd_opts = hs.pd_opts;
    acc = Overlay(acc, host_level);
    auto hv = hs.volumes.find(n);
    if (hv != hs.volumes.end()) acc = Overlay(acc, hv->second);
    acc.number = n;
    if (acc.loc.line == 0) acc.loc = hs.host.loc;
    std::string where = fmt::format("volume {} on '{}'", n, hs.host.Name());
    if (!acc.has_device) d.Add(acc.loc, fmt::format("{}: 'device' missing", where));
    if (!acc.has_disk && acc.has_meta) {
      d.Add(acc.meta_loc, fmt::format("{}: 'meta-disk' without 'disk'", where));
    } else if (!acc.has_disk) {
      d.Add(acc.loc,
            fmt::format("{}: 'disk' missing (write 'disk none;' for a diskless node)", where));
    } else if (!acc.diskless && !acc.has_meta) {
      d.Add(acc.disk_loc,
            fmt::format("{}: 'meta-disk' missing (internal, DEVICE or DEVICE [INDEX])", where));
    }
    Volume v;
    v.number = n;
    v.minor = acc.minor;
    v.device = acc.device;
    v.diskless = acc.diskless;
    v.disk = acc.disk;
    if (!acc.diskless) v.meta = acc.meta;
    v.disk_options = acc.disk_opts;
    v.loc = acc.loc;
    hs.host.volumes.push_back(std::move(v));
  }
}

}  // namespace

Resource BuildResource(Statement& st, const CommonSpec& common, Diagnostics& d) {
  Resource res;
  res.loc = st.loc;
  if (st.words.size() != 2) {
    d.Add(st.loc, "expected 'resource NAME { ... }'");
  } else {
    res.name = st.words[1].text;
  }
  NetOptions net;
  VolSpec base;  // resource-level disk options and implicit volume parameters
  std::map<int, VolSpec> res_vols;
  VolSpec implicit;
  bool has_implicit = false;
  std::vector<HostSpec> hosts;
  std::vector<Statement*> conns;
  std::vector<Statement*> meshes;
  static const std::vector<std::string_view> kKnown = {
      "options", "net",       "disk",     "startup",          "handlers",
      "volume",  "on",        "floating", "connection",       "connection-mesh",
      "device",  "meta-disk", "proxy",    "stacked-on-top-of"};
  for (auto& item : st.body) {
    const std::string& kw = item.keyword();
    if (item.is_section && kw == "options") {
      ReadOptions(item, OptSection::kResource, res.options, nullptr, d);
    } else if (item.is_section && kw == "net") {
      ReadOptions(item, OptSection::kNet, net, nullptr, d);
    } else if (item.is_section && kw == "disk") {
      ReadOptions(item, OptSection::kDisk, base.disk_opts, &base.pd_opts, d);
    } else if (item.is_section && kw == "startup") {
      ReadOptions(item, OptSection::kStartup, res.startup, nullptr, d);
    } else if (item.is_section && kw == "handlers") {
      ReadOptions(item, OptSection::kHandlers, res.handlers, nullptr, d);
    } else if (item.is_section && kw == "volume") {
      ReadVolumeSection(item, res_vols, d);
    } else if (item.is_section && (kw == "on" || kw == "floating")) {
      hosts.emplace_back();
      ReadHost(item, hosts.back(), d);
    } else if (item.is_section && kw == "connection") {
      conns.push_back(&item);
    } else if (item.is_section && kw == "connection-mesh") {
      meshes.push_back(&item);
    } else if (kw == "stacked-on-top-of") {
      d.Add(item.loc,
            "stacking is not supported; use 1:N replication (more 'on' sections with a "
            "'connection-mesh') instead");
    } else if (kw == "proxy") {
      // DRBD Proxy settings are accepted and not used (bsr relays through DRX).
    } else if (!item.is_section && ReadVolumeItem(item, implicit, d)) {
      if (!has_implicit) implicit.loc = item.loc;
      has_implicit = true;
    } else {
      UnknownKeyword(item.words[0], "resource", kKnown, d);
    }
  }
  if (has_implicit) res_vols.emplace(0, implicit);
  base.disk_opts.InheritFrom(common.disk);
  base.pd_opts.InheritFrom(common.pd);
  net.InheritFrom(common.net);
  res.options.InheritFrom(common.options);
  res.startup.InheritFrom(common.startup);
  res.handlers.InheritFrom(common.handlers);

  // Node ids: two hosts without any get 0 and 1 in address order (as drbdadm does).
  bool any_id =
      std::any_of(hosts.begin(), hosts.end(), [](const HostSpec& h) { return h.node_id_set; });
  if (!any_id && hosts.size() == 2 && !hosts[0].host.floating && !hosts[1].host.floating) {
    bool first_lower = true;
    const auto& a0 = hosts[0].host.address;
    const auto& a1 = hosts[1].host.address;
    if (a0 && a1) first_lower = AddressLess(*a0, *a1) || !AddressLess(*a1, *a0);
    for (int i = 0; i < 2; ++i) {
      int id = (i == 0) == first_lower ? 0 : 1;
      hosts[i].host.node_id = id;
      Statement nid;
      nid.loc = hosts[i].st->loc;
      nid.words = {Word{"node-id", false, nid.loc}, Word{std::to_string(id), false, nid.loc}};
      hosts[i].st->body.insert(hosts[i].st->body.begin(), std::move(nid));
    }
  } else {
    std::map<int, std::string> ids;
    for (auto& h : hosts) {
      if (!h.node_id_set) {
        d.Add(h.host.loc,
              fmt::format("'{}' in resource '{}': 'node-id' missing", h.host.Name(), res.name));
        continue;
      }
      auto [it, fresh] = ids.emplace(h.host.node_id, h.host.Name());
      if (!fresh) {
        d.Add(h.host.loc, fmt::format("node-id {} of '{}' is already used by '{}'", h.host.node_id,
                                      h.host.Name(), it->second));
      }
    }
  }
  std::vector<bool> address_given;
  for (auto& h : hosts) {
    address_given.push_back(h.address_given);
    RefuseHostPeerDeviceOptions(h, d);
    ResolveVolumes(h, res_vols, base, d);
    res.hosts.push_back(std::move(h.host));
  }
  // Two hosts of one resource must not share an address.
  for (size_t i = 0; i < res.hosts.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      const auto& a = res.hosts[i].address;
      const auto& b = res.hosts[j].address;
      if (a && b && a->ip == b->ip && a->port == b->port) {
        d.Add(res.hosts[i].loc,
              fmt::format("address {}:{} of '{}' is the same as that of '{}'", a->ip, a->port,
                          res.hosts[i].Name(), res.hosts[j].Name()));
      }
    }
  }

  std::set<int> all_vols;
  for (const auto& h : res.hosts) {
    for (const auto& v : h.volumes) all_vols.insert(v.number);
  }
  std::set<std::pair<int, int>> pairs;
  auto add_conn = [&](Connection c, const NetOptions& own_net, const NetOptions* mesh_net,
                      const PeerDeviceOptions& conn_pd, const std::map<int, VolSpec>& conn_vols) {
    auto key = std::minmax(c.host_a, c.host_b);
    if (c.host_a == c.host_b) {
      d.Add(c.loc, fmt::format("connection from '{}' to itself", res.hosts[c.host_a].Name()));
      return;
    }
    if (!pairs.insert(key).second) {
      d.Add(c.loc, fmt::format("second connection between '{}' and '{}'",
                               res.hosts[c.host_a].Name(), res.hosts[c.host_b].Name()));
      return;
    }
    c.net = own_net;
    if (mesh_net) c.net.InheritFrom(*mesh_net);
    c.net.InheritFrom(net);
    for (int n : all_vols) {
      PeerDeviceOptions pd;
      auto cv = conn_vols.find(n);
      if (cv != conn_vols.end()) pd = cv->second.pd_opts;
      pd.InheritFrom(conn_pd);
      auto rv = res_vols.find(n);
      if (rv != res_vols.end()) pd.InheritFrom(rv->second.pd_opts);
      pd.InheritFrom(base.pd_opts);
      c.peer_devices[n] = std::move(pd);
    }
    res.connections.push_back(std::move(c));
  };

  for (Statement* cs : conns) {
    Connection c;
    c.loc = cs->loc;
    if (cs->words.size() > 2) d.Add(cs->words[2].loc, "expected 'connection [NAME] { ... }'");
    if (cs->words.size() == 2) c.name = cs->words[1].text;
    NetOptions own;
    PeerDeviceOptions pd;
    DiskOptions unused;
    std::map<int, VolSpec> vols;
    std::vector<Endpoint> eps;
    bool bad = false;
    for (auto& item : cs->body) {
      const std::string& kw = item.keyword();
      if (!item.is_section && kw == "host") {
        eps.push_back(ReadEndpoint(item, res, d));
      } else if (item.is_section && kw == "path") {
        std::vector<Endpoint> pe;
        for (auto& h : item.body) {
          if (h.keyword() != "host") {
            UnknownKeyword(h.words[0], "path", {"host"}, d);
            continue;
          }
          pe.push_back(ReadEndpoint(h, res, d));
        }
        if (pe.size() != 2) {
          d.Add(item.loc, fmt::format("a path needs exactly two 'host' lines, got {}", pe.size()));
          bad = true;
          continue;
        }
        if (pe[0].host < 0 || pe[1].host < 0) {
          bad = true;
          continue;
        }
        if (c.host_a < 0) {
          c.host_a = pe[0].host;
          c.host_b = pe[1].host;
        }
        auto a = EndpointAddress(pe[0], res, d);
        auto b = EndpointAddress(pe[1], res, d);
        if (!a || !b) {
          bad = true;
          continue;
        }
        Path p{pe[0].host, pe[1].host, *a, *b};
        if (std::minmax(p.host_a, p.host_b) != std::minmax(c.host_a, c.host_b)) {
          d.Add(item.loc, "all paths of a connection must join the same two hosts");
          bad = true;
          continue;
        }
        c.paths.push_back(p);
      } else if (item.is_section && kw == "net") {
        ReadOptions(item, OptSection::kNet, own, nullptr, d);
      } else if (item.is_section && kw == "disk") {
        ReadOptions(item, OptSection::kPeerDevice, pd, nullptr, d);
      } else if (item.is_section && kw == "volume") {
        if (item.words.size() != 2) {
          d.Add(item.loc, "expected 'volume NUMBER { disk { ... } }'");
          continue;
        }
        auto n = ReadInt(item.words[1], 0, kMaxVolume, "volume number", d);
        if (!n) continue;
        VolSpec v;
        v.number = *n;
        for (auto& sub : item.body) {
          if (sub.is_section && sub.keyword() == "disk") {
            ReadOptions(sub, OptSection::kPeerDevice, v.pd_opts, nullptr, d);
          } else {
            UnknownKeyword(sub.words[0], "connection volume", {"disk"}, d);
          }
        }
        vols[*n] = std::move(v);
      } else {
        UnknownKeyword(item.words[0], "connection", {"host", "path", "net", "disk", "volume"}, d);
      }
    }
    if (bad) continue;
    if (c.paths.empty()) {
      if (eps.size() != 2) {
        d.Add(cs->loc,
              fmt::format("a connection needs exactly two 'host' lines or 'path' sections, "
                          "got {} host lines",
                          eps.size()));
        continue;
      }
      if (eps[0].host < 0 || eps[1].host < 0) continue;
      c.host_a = eps[0].host;
      c.host_b = eps[1].host;
      auto a = EndpointAddress(eps[0], res, d);
      auto b = EndpointAddress(eps[1], res, d);
      if (!a || !b) continue;
      c.paths.push_back(Path{c.host_a, c.host_b, *a, *b});
    }
    add_conn(std::move(c), own, nullptr, pd, vols);
  }
  for (Statement* ms : meshes) {
    std::vector<int> members;
    NetOptions mesh_net;
    PeerDeviceOptions pd;
    bool seen_hosts = false;
    for (auto& item : ms->body) {
      const std::string& kw = item.keyword();
      if (!item.is_section && kw == "hosts") {
        seen_hosts = true;
        for (size_t i = 1; i < item.words.size(); ++i) {
          int h = res.HostIndex(item.words[i].text);
          if (h < 0) {
            d.Add(item.words[i].loc,
                  fmt::format("connection-mesh names unknown host '{}'", item.words[i].text));
          } else {
            members.push_back(h);
          }
        }
      } else if (item.is_section && kw == "net") {
        ReadOptions(item, OptSection::kNet, mesh_net, nullptr, d);
      } else if (item.is_section && kw == "disk") {
        ReadOptions(item, OptSection::kPeerDevice, pd, nullptr, d);
      } else {
        UnknownKeyword(item.words[0], "connection-mesh", {"hosts", "net", "disk"}, d);
      }
    }
    if (!seen_hosts) d.Add(ms->loc, "connection-mesh without a 'hosts' line");
    for (size_t i = 0; i < members.size(); ++i) {
      for (size_t j = i + 1; j < members.size(); ++j) {
        Connection c;
        c.loc = ms->loc;
        c.host_a = members[i];
        c.host_b = members[j];
        const Host& a = res.hosts[c.host_a];
        const Host& b = res.hosts[c.host_b];
        if (!a.address || !b.address) {
          d.Add((a.address ? b : a).loc,
                fmt::format("host '{}' has no address (needed by the connection-mesh)",
                            (a.address ? b : a).Name()));
          continue;
        }
        c.paths.push_back(Path{c.host_a, c.host_b, *a.address, *b.address});
        add_conn(std::move(c), NetOptions(), &mesh_net, pd, {});
      }
    }
  }
  if (conns.empty() && meshes.empty()) {
    if (res.hosts.size() == 2) {
      Connection c;
      c.loc = st.loc;
      c.host_a = 0;
      c.host_b = 1;
      bool ok = true;
      for (int i = 0; i < 2; ++i) {
        const Host* h = &res.hosts[i];
        if (!h->address) {
          ok = false;
          if (address_given[i]) continue;  // already reported as malformed
          d.Add(h->loc,
                fmt::format("'{}' in resource '{}': 'address' missing", h->Name(), res.name));
        }
      }
      if (ok) {
        c.paths.push_back(Path{0, 1, *res.hosts[0].address, *res.hosts[1].address});
        add_conn(std::move(c), NetOptions(), nullptr, PeerDeviceOptions(), {});
      }
    } else if (res.hosts.size() > 2) {
      d.Add(st.loc,
            fmt::format("resource '{}' has {} 'on' sections: use explicit 'connection' sections "
                        "or a 'connection-mesh'",
                        res.name, res.hosts.size()));
    }
  }
  // An explicit timeout must stay below connect-int and ping-int (seed 001).
  for (const auto& c : res.connections) {
    if (!c.net.Has("timeout")) continue;
    int64_t t = c.net.timeout_tenths();
    if (t >= c.net.ping_int_seconds() * 10 || t >= c.net.connect_int_seconds() * 10) {
      SourceLoc loc = c.loc;
      for (const auto& e : c.net.entries()) {
        if (e.name == "timeout") loc = e.loc;
      }
      d.Add(loc,
            fmt::format(
                "timeout {} (1/10 s) must be lower than ping-int ({} s) and connect-int ({} s)", t,
                c.net.ping_int_seconds(), c.net.connect_int_seconds()));
      break;
    }
  }
  return res;
}

}  // namespace bsr::config::internal
