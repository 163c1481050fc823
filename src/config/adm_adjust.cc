#include "config/adm_adjust.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "config/adm_plan_internal.h"

namespace bsr::config {
namespace {

using nlohmann::json;
using namespace internal;  // NOLINT: the shared planner parts

using SetupOpts = std::vector<std::pair<std::string, std::string>>;

Result<std::string> Str(const json& j, const char* key, std::string_view where) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) {
    return Error(Errc::kProtocol, "show --json: {} has no string field '{}'", where, key);
  }
  return it->get<std::string>();
}

Result<int> Int(const json& j, const char* key, std::string_view where) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) {
    return Error(Errc::kProtocol, "show --json: {} has no integer field '{}'", where, key);
  }
  return it->get<int>();
}

Result<OptionValues> Opts(const json& j, const char* key, std::string_view where) {
  OptionValues out;
  auto it = j.find(key);
  if (it == j.end()) return out;
  if (!it->is_object()) {
    return Error(Errc::kProtocol, "show --json: {} field '{}' is not an object", where, key);
  }
  for (const auto& [k, v] : it->items()) {
    if (!v.is_string()) {
      return Error(Errc::kProtocol, "show --json: {} option '{}' is not a string", where, k);
    }
    out[k] = v.get<std::string>();
  }
  return out;
}

const json* Array(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_array() ? &*it : nullptr;
}

Result<RunningPeer> ParsePeer(const json& c, const std::string& res) {
  RunningPeer p;
  std::string where = fmt::format("a connection of resource {}", res);
  BSR_ASSIGN_OR_RETURN(p.node_id, Int(c, "peer_node_id", where));
  where = fmt::format("connection {}:{}", res, p.node_id);
  if (c.contains("name")) {
    BSR_ASSIGN_OR_RETURN(p.name, Str(c, "name", where));
  }
  if (c.contains("cstate")) {
    BSR_ASSIGN_OR_RETURN(p.cstate, Str(c, "cstate", where));
  }
  BSR_ASSIGN_OR_RETURN(p.net, Opts(c, "net", where));
  if (const json* paths = Array(c, "paths")) {
    for (const auto& pj : *paths) {
      if (!pj.is_object()) return Error(Errc::kProtocol, "show --json: {}: bad path", where);
      RunningPath path;
      BSR_ASSIGN_OR_RETURN(path.local, Str(pj, "local", where));
      BSR_ASSIGN_OR_RETURN(path.remote, Str(pj, "remote", where));
      p.paths.push_back(std::move(path));
    }
  }
  if (const json* pds = Array(c, "peer_devices")) {
    for (const auto& pd : *pds) {
      if (!pd.is_object()) return Error(Errc::kProtocol, "show --json: {}: bad peer device", where);
      BSR_ASSIGN_OR_RETURN(int vol, Int(pd, "volume", where));
      BSR_ASSIGN_OR_RETURN(p.peer_devices[vol], Opts(pd, "options", where));
    }
  }
  return p;
}

Result<RunningResource> ParseResource(const json& r) {
  RunningResource out;
  if (!r.is_object()) return Error(Errc::kProtocol, "show --json: a resource is not an object");
  BSR_ASSIGN_OR_RETURN(out.name, Str(r, "name", "a resource"));
  std::string where = "resource " + out.name;
  BSR_ASSIGN_OR_RETURN(out.node_id, Int(r, "node_id", where));
  BSR_ASSIGN_OR_RETURN(out.options, Opts(r, "options", where));
  if (const json* vols = Array(r, "volumes")) {
    for (const auto& vj : *vols) {
      if (!vj.is_object()) return Error(Errc::kProtocol, "show --json: {}: bad volume", where);
      RunningVolume v;
      BSR_ASSIGN_OR_RETURN(v.volume, Int(vj, "volume", where));
      BSR_ASSIGN_OR_RETURN(v.minor, Int(vj, "minor", where));
      auto att = vj.find("attached");
      v.attached = att != vj.end() && att->is_boolean() && att->get<bool>();
      if (v.attached) {
        std::string vw = fmt::format("{} volume {}", where, v.volume);
        BSR_ASSIGN_OR_RETURN(v.disk, Str(vj, "disk", vw));
        BSR_ASSIGN_OR_RETURN(v.meta_disk, Str(vj, "meta_disk", vw));
        BSR_ASSIGN_OR_RETURN(v.meta_index, Str(vj, "meta_index", vw));
        BSR_ASSIGN_OR_RETURN(v.disk_options, Opts(vj, "disk_options", vw));
      }
      out.volumes.push_back(std::move(v));
    }
  }
  if (const json* conns = Array(r, "connections")) {
    for (const auto& c : *conns) {
      if (!c.is_object()) return Error(Errc::kProtocol, "show --json: {}: bad connection", where);
      BSR_ASSIGN_OR_RETURN(auto p, ParsePeer(c, out.name));
      out.peers.push_back(std::move(p));
    }
  }
  return out;
}

// Options to send so that `running` becomes `desired`: every desired option whose
// value differs, and every running option the configuration no longer sets, back to
// its default (bsrd keeps options it is not told about).
std::vector<std::string> DiffOptions(OptSection section, const SetupOpts& desired,
                                     const OptionValues& running) {
  std::vector<std::string> args;
  for (const auto& [name, value] : desired) {
    auto it = running.find(name);
    if (!SameOptionValue(section, name, &value, it == running.end() ? nullptr : &it->second)) {
      args.push_back(OptionArg(section, name, value));
    }
  }
  for (const auto& [name, value] : running) {
    bool wanted = false;
    for (const auto& d : desired) wanted |= d.first == name;
    if (wanted || name.empty() || name[0] == '_') continue;
    const OptionDef* def = FindOption(section, name);
    // Options of another section (attach takes peer-device options too) and flags,
    // which have no value to go back to, are left alone.
    if (!def || def->type == OptType::kFlag) continue;
    if (SameOptionValue(section, name, nullptr, &value)) continue;
    args.push_back(fmt::format("--{}={}", name, def->def));
  }
  return args;
}

PlanStep WithArgs(PlanStep s, const std::vector<std::string>& args) {
  s.argv.insert(s.argv.end(), args.begin(), args.end());
  return s;
}

std::vector<RunningPath> DesiredPaths(const Target& t, const Peer& p) {
  std::vector<RunningPath> out;
  for (const auto& path : p.conn->paths) {
    bool local_is_a = path.host_a == t.local_index;
    const Address& mine = local_is_a ? path.addr_a : path.addr_b;
    const Address& theirs = local_is_a ? path.addr_b : path.addr_a;
    out.push_back({mine.ToSetupArg(), theirs.ToSetupArg()});
  }
  return out;
}

bool Contains(const std::vector<RunningPath>& v, const RunningPath& p) {
  for (const auto& x : v) {
    if (x == p) return true;
  }
  return false;
}

Status PlanAdjustOne(const Target& t, const RunningResource& run, std::vector<PlanStep>& out) {
  const Resource& r = *t.res;
  const std::string& res = r.name;
  if (run.node_id != t.local->node_id) {
    return Error(Errc::kInvalidArgument,
                 "{}: running with node-id {} but the configuration gives node-id {}; a node-id "
                 "cannot change on a running resource (bsradm down {} first)",
                 res, run.node_id, t.local->node_id, res);
  }
  auto in_scope = [&](int vol) { return t.volume < 0 || vol == t.volume; };

  // 1. Resource options.
  auto ro = DiffOptions(OptSection::kResource, SetupOptions(r.options, t), run.options);
  if (!ro.empty()) out.push_back(WithArgs(Setup({"bsrsetup", "resource-options", res}), ro));

  // 2. Connections the configuration no longer has.
  auto peers = Peers(t);
  auto cfg_peer = [&](int id) -> const Peer* {
    for (const auto& p : peers) {
      if (p.host->node_id == id) return &p;
    }
    return nullptr;
  };
  auto run_peer = [&](int id) -> const RunningPeer* {
    for (const auto& p : run.peers) {
      if (p.node_id == id) return &p;
    }
    return nullptr;
  };
  for (const auto& rp : run.peers) {
    if (!cfg_peer(rp.node_id))
      out.push_back(Setup({"bsrsetup", "del-peer", res, std::to_string(rp.node_id)}));
  }

  // 3. Volumes gone (or moved to another minor): detach, del-minor. New ones: new-minor.
  auto vols = Volumes(t);
  auto run_vol = [&](const Volume& v) -> const RunningVolume* {
    for (const auto& rv : run.volumes) {
      if (rv.volume == v.number && rv.minor == v.minor) return &rv;
    }
    return nullptr;
  };
  for (const auto& rv : run.volumes) {
    if (!in_scope(rv.volume)) continue;
    bool keep = false;
    for (const Volume* v : vols) keep |= v->number == rv.volume && v->minor == rv.minor;
    if (keep) continue;
    if (rv.attached) out.push_back(Setup({"bsrsetup", "detach", std::to_string(rv.minor)}));
    out.push_back(Setup({"bsrsetup", "del-minor", std::to_string(rv.minor)}));
  }
  for (const Volume* v : vols) {
    if (run_vol(*v)) continue;
    PlanStep nm =
        Setup({"bsrsetup", "new-minor", res, std::to_string(v->minor), std::to_string(v->number)});
    if (v->diskless) nm.argv.push_back("--diskless");
    out.push_back(nm);
  }

  // 4. Connections: new ones with their paths; paths and net options of kept ones.
  for (const auto& p : peers) {
    std::string id = std::to_string(p.host->node_id);
    const RunningPeer* rp = run_peer(p.host->node_id);
    auto want = DesiredPaths(t, p);
    if (!rp) {
      PlanStep np = Setup({"bsrsetup", "new-peer", res, id, "--_name=" + p.host->Name()});
      AppendOptions(np.argv, p.conn->net, t);
      out.push_back(np);
      for (const auto& path : want)
        out.push_back(Setup({"bsrsetup", "new-path", res, id, path.local, path.remote}));
      continue;
    }
    for (const auto& path : rp->paths) {
      if (!Contains(want, path))
        out.push_back(Setup({"bsrsetup", "del-path", res, id, path.local, path.remote}));
    }
    for (const auto& path : want) {
      if (!Contains(rp->paths, path))
        out.push_back(Setup({"bsrsetup", "new-path", res, id, path.local, path.remote}));
    }
    auto net = DiffOptions(OptSection::kNet, SetupOptions(p.conn->net, t), rp->net);
    if (!net.empty()) out.push_back(WithArgs(Setup({"bsrsetup", "net-options", res, id}), net));
  }

  // 5. Peer-device options.
  for (const auto& p : peers) {
    const RunningPeer* rp = run_peer(p.host->node_id);
    for (const Volume* v : vols) {
      SetupOpts want = SetupOptions(PeerDeviceOptionsFor(p, *v), t);
      std::vector<std::string> args;
      const OptionValues* have = nullptr;
      if (rp && run_vol(*v)) {
        auto it = rp->peer_devices.find(v->number);
        static const OptionValues kNone;
        have = it == rp->peer_devices.end() ? &kNone : &it->second;
      }
      if (have) {
        args = DiffOptions(OptSection::kPeerDevice, want, *have);
      } else {
        for (const auto& [name, value] : want)
          args.push_back(OptionArg(OptSection::kPeerDevice, name, value));
      }
      if (args.empty()) continue;
      out.push_back(WithArgs(Setup({"bsrsetup", "peer-device-options", res,
                                    std::to_string(p.host->node_id), std::to_string(v->number)}),
                             args));
    }
  }

  // 6. Disks: detach what goes away or changes, then attach, or change disk options.
  std::vector<const Volume*> to_attach;
  for (const Volume* v : vols) {
    const RunningVolume* rv = run_vol(*v);
    bool attached = rv && rv->attached;
    bool same_disk = attached && rv->disk == v->disk &&
                     rv->meta_disk == v->meta.MetaDevArg(v->disk) &&
                     rv->meta_index == v->meta.AttachIndexArg();
    if (attached && (v->diskless || !same_disk)) {
      out.push_back(Setup({"bsrsetup", "detach", std::to_string(v->minor)}));
    }
    if (v->diskless) continue;
    if (!same_disk) {
      to_attach.push_back(v);
      continue;
    }
    auto disk = DiffOptions(OptSection::kDisk, SetupOptions(v->disk_options, t), rv->disk_options);
    if (!disk.empty()) {
      out.push_back(WithArgs(Setup({"bsrsetup", "disk-options", std::to_string(v->minor)}), disk));
    }
  }
  for (const Volume* v : to_attach) {
    out.push_back(ApplyAl(*v));
    out.push_back(Attach(t, *v));
  }

  // 7. Connect new connections and those left StandAlone.
  for (const auto& p : peers) {
    const RunningPeer* rp = run_peer(p.host->node_id);
    if (!rp || rp->cstate == "StandAlone")
      out.push_back(Setup({"bsrsetup", "connect", res, std::to_string(p.host->node_id)}));
  }
  return Status::Ok();
}

}  // namespace

Result<std::vector<RunningResource>> ParseRunning(std::string_view json_text) {
  json j = json::parse(json_text, nullptr, false);
  if (j.is_discarded()) return Error(Errc::kProtocol, "show --json: the reply is not JSON");
  if (!j.is_array()) return Error(Errc::kProtocol, "show --json: expected an array of resources");
  std::vector<RunningResource> out;
  for (const auto& r : j) {
    BSR_ASSIGN_OR_RETURN(auto res, ParseResource(r));
    out.push_back(std::move(res));
  }
  return out;
}

bool SameOptionValue(OptSection section, const std::string& name, const std::string* a,
                     const std::string* b) {
  const OptionDef* def = FindOption(section, name);
  if (!def) return (a ? *a : "") == (b ? *b : "");
  if (def->type == OptType::kFlag) return (a != nullptr) == (b != nullptr);
  std::string av = a ? *a : std::string(def->def);
  std::string bv = b ? *b : std::string(def->def);
  switch (def->type) {
    case OptType::kBool: {
      // A bare boolean keyword means yes.
      auto x = ParseBool(av.empty() && a ? "yes" : av);
      auto y = ParseBool(bv.empty() && b ? "yes" : bv);
      if (x.ok() && y.ok()) return *x == *y;
      break;
    }
    case OptType::kNumber:
    case OptType::kNumberOrSymbol: {
      auto x = ParseNumber(*def, av);
      auto y = ParseNumber(*def, bv);
      if (x.ok() && y.ok()) return *x == *y;
      break;
    }
    default: break;
  }
  return av == bv;
}

Result<std::vector<PlanStep>> PlanAdjust(const Config& cfg, const std::string& node,
                                         const std::string& target,
                                         const std::vector<RunningResource>& running,
                                         const PlanFlags& flags) {
  BSR_ASSIGN_OR_RETURN(auto targets, ResolveTargets(cfg, node, target));
  std::vector<PlanStep> out;
  for (const auto& t : targets) {
    const RunningResource* run = nullptr;
    for (const auto& r : running) {
      if (r.name == t.res->name) run = &r;
    }
    if (!run) {
      PlanUp(t, false, out);
      continue;
    }
    BSR_RETURN_IF_ERROR(PlanAdjustOne(t, *run, out));
  }
  ApplyPassthrough("adjust", flags.passthrough, out);
  return out;
}

}  // namespace bsr::config
