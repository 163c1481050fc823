#include "config/adm_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

#include "config/adm_plan_internal.h"

namespace bsr::config {

namespace internal {

std::vector<Peer> Peers(const Target& t) {
  std::vector<Peer> out;
  for (const Connection* c : t.res->ConnectionsOf(t.local_index)) {
    out.push_back({c, &t.res->hosts[c->PeerOf(t.local_index)]});
  }
  return out;
}

std::vector<const Volume*> Volumes(const Target& t) {
  std::vector<const Volume*> out;
  for (const auto& v : t.local->volumes) {
    if (t.volume < 0 || v.number == t.volume) out.push_back(&v);
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> SetupOptions(const OptionMap& m, const Target& t) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& e : m.entries()) {
    std::string value = e.value;
    if (e.name == "resync-after" && t.cfg) {
      // bsrsetup wants the minor of the volume to wait for: "res/vol" -> minor.
      auto slash = value.find('/');
      int vol = 0;
      if (slash != std::string::npos) {
        std::from_chars(value.data() + slash + 1, value.data() + value.size(), vol);
      }
      const Resource* other = t.cfg->FindResource(value.substr(0, slash));
      const Host* h =
          other && !t.local->names.empty() ? other->FindHost(t.local->names[0]) : nullptr;
      const Volume* v = h ? h->FindVolume(vol) : nullptr;
      if (v) value = std::to_string(v->minor);
    }
    if (e.name == "after-sb-0pri" && value.rfind("discard-node-", 0) == 0 && t.local) {
      // discard-node-NAME: NAME's data is discarded; on NAME that is the local data,
      // everywhere else the peer's (the handshake checks that the two sides mirror).
      std::string node = value.substr(std::string_view("discard-node-").size());
      const auto& names = t.local->names;
      bool here = std::find(names.begin(), names.end(), node) != names.end();
      value = here ? "discard-local" : "discard-remote";
    }
    out.emplace_back(e.name, value);
  }
  return out;
}

std::string OptionArg(OptSection section, const std::string& name, const std::string& value) {
  const OptionDef* def = FindOption(section, name);
  if (def && def->type == OptType::kFlag) return "--" + name;
  return fmt::format("--{}={}", name, value);
}

void AppendOptions(std::vector<std::string>& argv, const OptionMap& m, const Target& t) {
  for (const auto& [name, value] : SetupOptions(m, t))
    argv.push_back(OptionArg(m.section(), name, value));
}

std::vector<std::string> MetaArgs(const Volume& v, bool force) {
  std::vector<std::string> a = {"bsrmeta"};
  if (force) a.push_back("--force");
  a.push_back(std::to_string(v.minor));
  a.push_back(kMetaFormat);
  a.push_back(v.meta.MetaDevArg(v.disk));
  a.push_back(v.meta.MetaIndexArg());
  return a;
}

PlanStep Setup(std::initializer_list<std::string> words) {
  return PlanStep{std::vector<std::string>(words), false};
}

PlanStep Attach(const Target& t, const Volume& v) {
  PlanStep s{{"bsrsetup", "attach", std::to_string(v.minor), v.disk, v.meta.MetaDevArg(v.disk),
              v.meta.AttachIndexArg()},
             false};
  AppendOptions(s.argv, v.disk_options, t);
  return s;
}

PlanStep ApplyAl(const Volume& v) {
  PlanStep s{MetaArgs(v, false), false};
  s.argv.push_back("apply-al");
  return s;
}

PeerDeviceOptions PeerDeviceOptionsFor(const Peer& p, const Volume& v) {
  PeerDeviceOptions opts;
  auto it = p.conn->peer_devices.find(v.number);
  if (it != p.conn->peer_devices.end()) opts = it->second;
  // A diskless peer needs no bitmap slot (drbdadm does the same).
  const Volume* pv = p.host->FindVolume(v.number);
  if (pv && pv->diskless && !opts.Has("bitmap")) opts.Set("bitmap", "no");
  return opts;
}

// The config-only `adjust` (no running daemon to compare with) plans like `up`,
// except that peer-device options are set with --set-defaults, as drbdadm does.
void PlanUp(const Target& t, bool set_defaults, std::vector<PlanStep>& out) {
  const Resource& r = *t.res;
  PlanStep nr = Setup({"bsrsetup", "new-resource", r.name, std::to_string(t.local->node_id)});
  AppendOptions(nr.argv, r.options, t);
  out.push_back(nr);
  auto vols = Volumes(t);
  for (const Volume* v : vols) {
    PlanStep nm = Setup(
        {"bsrsetup", "new-minor", r.name, std::to_string(v->minor), std::to_string(v->number)});
    if (v->diskless) nm.argv.push_back("--diskless");
    out.push_back(nm);
  }
  auto peers = Peers(t);
  for (const auto& p : peers) {
    PlanStep np = Setup({"bsrsetup", "new-peer", r.name, std::to_string(p.host->node_id),
                         "--_name=" + p.host->Name()});
    AppendOptions(np.argv, p.conn->net, t);
    out.push_back(np);
  }
  for (const auto& p : peers) {
    for (const auto& path : p.conn->paths) {
      bool local_is_a = path.host_a == t.local_index;
      const Address& mine = local_is_a ? path.addr_a : path.addr_b;
      const Address& theirs = local_is_a ? path.addr_b : path.addr_a;
      out.push_back(Setup({"bsrsetup", "new-path", r.name, std::to_string(p.host->node_id),
                           mine.ToSetupArg(), theirs.ToSetupArg()}));
    }
  }
  for (const auto& p : peers) {
    for (const Volume* v : vols) {
      PeerDeviceOptions opts = PeerDeviceOptionsFor(p, *v);
      if (opts.empty()) continue;
      PlanStep pd = Setup({"bsrsetup", "peer-device-options", r.name,
                           std::to_string(p.host->node_id), std::to_string(v->number)});
      if (set_defaults) pd.argv.push_back("--set-defaults");
      AppendOptions(pd.argv, opts, t);
      out.push_back(pd);
    }
  }
  for (const Volume* v : vols) {
    if (v->diskless) continue;
    out.push_back(ApplyAl(*v));
    out.push_back(Attach(t, *v));
  }
  for (const auto& p : peers)
    out.push_back(Setup({"bsrsetup", "connect", r.name, std::to_string(p.host->node_id)}));
}

Result<std::vector<Target>> ResolveTargets(const Config& cfg, const std::string& node,
                                           const std::string& target) {
  std::vector<Target> out;
  auto add = [&](const Resource& r, int vol) -> Status {
    BSR_ASSIGN_OR_RETURN(const Host* h, LocalHost(r, node));
    Target t{&cfg, &r, h, static_cast<int>(h - r.hosts.data()), vol};
    if (vol >= 0 && !h->FindVolume(vol)) {
      return Error(Errc::kNotFound, "resource '{}' has no volume {} on '{}'", r.name, vol, node);
    }
    out.push_back(t);
    return Status::Ok();
  };
  if (target == "all") {
    for (const auto& r : cfg.resources) {
      if (LocalHost(r, node).ok()) BSR_RETURN_IF_ERROR(add(r, -1));
    }
    return out;
  }
  std::string name = target;
  int vol = -1;
  if (auto slash = target.find('/'); slash != std::string::npos) {
    name = target.substr(0, slash);
    std::string v = target.substr(slash + 1);
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), vol);
    if (v.empty() || ec != std::errc() || p != v.data() + v.size() || vol < 0) {
      return Error(Errc::kInvalidArgument, "'{}': expected RESOURCE or RESOURCE/VOLUME", target);
    }
  }
  const Resource* r = cfg.FindResource(name);
  if (!r) return Error(Errc::kNotFound, "'{}' not defined in your config", name);
  BSR_RETURN_IF_ERROR(add(*r, vol));
  return out;
}

}  // namespace internal

namespace {

using namespace internal;  // NOLINT: this file implements them

const std::vector<std::string>& PlannedCommands() {
  static const std::vector<std::string> v = {"up",
                                             "down",
                                             "adjust",
                                             "attach",
                                             "detach",
                                             "connect",
                                             "disconnect",
                                             "primary",
                                             "secondary",
                                             "create-md",
                                             "dump-md",
                                             "apply-al",
                                             "wipe-md",
                                             "show-gi",
                                             "get-gi",
                                             "invalidate",
                                             "invalidate-remote",
                                             "pause-sync",
                                             "resume-sync",
                                             "outdate",
                                             "status",
                                             "verify",
                                             "resize",
                                             "suspend-io",
                                             "resume-io",
                                             "new-current-uuid",
                                             "role",
                                             "cstate",
                                             "dstate"};
  return v;
}

Status PlanOne(const Target& t, const std::string& cmd, const PlanFlags& flags,
               std::vector<PlanStep>& out) {
  const Resource& r = *t.res;
  auto vols = Volumes(t);
  auto peers = Peers(t);
  auto disk_vols = [&]() {
    std::vector<const Volume*> dv;
    for (const Volume* v : vols) {
      if (!v->diskless) dv.push_back(v);
    }
    return dv;
  };
  static const std::vector<std::string> kNeedDisk = {"attach",     "detach",  "show-gi",  "get-gi",
                                                     "create-md",  "dump-md", "apply-al", "wipe-md",
                                                     "invalidate", "outdate", "resize"};
  if (std::find(kNeedDisk.begin(), kNeedDisk.end(), cmd) != kNeedDisk.end() &&
      disk_vols().empty()) {
    return Error(Errc::kInvalidArgument,
                 "{}: the {} command requires a local disk, but the configuration gives none",
                 r.name, cmd);
  }
  if (cmd == "up" || cmd == "adjust") {
    PlanUp(t, cmd == "adjust", out);
  } else if (cmd == "down") {
    out.push_back(Setup({"bsrsetup", "down", r.name}));
  } else if (cmd == "attach") {
    for (const Volume* v : disk_vols()) {
      out.push_back(ApplyAl(*v));
      out.push_back(Attach(t, *v));
    }
  } else if (cmd == "detach") {
    for (const Volume* v : disk_vols()) {
      PlanStep s = Setup({"bsrsetup", "detach", std::to_string(v->minor)});
      if (flags.force) s.argv.push_back("--force");
      out.push_back(s);
    }
  } else if (cmd == "connect" || cmd == "disconnect") {
    for (const auto& p : peers) {
      PlanStep s = Setup({"bsrsetup", cmd, r.name, std::to_string(p.host->node_id)});
      if (cmd == "disconnect" && flags.force) s.argv.push_back("--force");
      out.push_back(s);
    }
  } else if (cmd == "primary" || (cmd == "secondary" && flags.force)) {
    PlanStep s = Setup({"bsrsetup", cmd, r.name});
    if (flags.force) s.argv.push_back("--force");
    out.push_back(s);
  } else if (cmd == "secondary" || cmd == "status" || cmd == "role" || cmd == "cstate" ||
             cmd == "dstate") {
    out.push_back(Setup({"bsrsetup", cmd, r.name}));
  } else if (cmd == "create-md" || cmd == "dump-md" || cmd == "apply-al" || cmd == "wipe-md") {
    auto dv = disk_vols();
    for (const Volume* v : dv) {
      // Bitmap slots: one per peer that has a disk for this volume (at least one).
      int max_peers = 0;
      for (const auto& p : peers) {
        const Volume* pv = p.host->FindVolume(v->number);
        if (!pv || !pv->diskless) ++max_peers;
      }
      max_peers = std::max(max_peers, 1);
      PlanStep s{MetaArgs(*v, flags.force && cmd == "create-md"), false};
      s.argv.push_back(cmd);
      if (cmd == "create-md") s.argv.push_back(std::to_string(max_peers));
      out.push_back(s);
    }
  } else if (cmd == "show-gi" || cmd == "get-gi") {
    for (const Volume* v : disk_vols()) {
      for (const auto& p : peers) {
        std::string peer = std::to_string(p.host->node_id);
        out.push_back(Setup({"bsrsetup", cmd, r.name, peer, std::to_string(v->number)}));
        PlanStep m{MetaArgs(*v, false), true};
        m.argv.push_back("--node-id=" + peer);
        m.argv.push_back(cmd);
        out.push_back(m);
      }
    }
  } else if (cmd == "invalidate" || cmd == "outdate") {
    for (const Volume* v : disk_vols()) {
      out.push_back(Setup({"bsrsetup", cmd, std::to_string(v->minor)}));
      PlanStep m{MetaArgs(*v, false), true};
      m.argv.push_back(cmd);
      out.push_back(m);
    }
  } else if (cmd == "invalidate-remote" || cmd == "pause-sync" || cmd == "resume-sync" ||
             cmd == "verify") {
    for (const Volume* v : vols) {
      for (const auto& p : peers) {
        out.push_back(Setup(
            {"bsrsetup", cmd, r.name, std::to_string(p.host->node_id), std::to_string(v->number)}));
      }
    }
  } else if (cmd == "resize") {
    for (const Volume* v : vols) {
      out.push_back(Setup({"bsrsetup", "resize", std::to_string(v->minor)}));
      out.push_back(Setup({"bsrsetup", "check-resize", std::to_string(v->minor)}));
    }
  } else if (cmd == "new-current-uuid" && t.volume < 0) {
    // As drbdadm: a new data generation is always about one volume.
    return Error(Errc::kInvalidArgument,
                 "new-current-uuid requires a specific volume id, but none is specified (try "
                 "'new-current-uuid {}/<vnr>')",
                 r.name);
  } else if (cmd == "suspend-io" || cmd == "resume-io" || cmd == "new-current-uuid") {
    for (const Volume* v : vols) out.push_back(Setup({"bsrsetup", cmd, std::to_string(v->minor)}));
  } else {
    return Error(Errc::kInvalidArgument, "unknown command '{}'", cmd);
  }
  return Status::Ok();
}

}  // namespace

bool IsPlannedCommand(const std::string& command) {
  const auto& v = PlannedCommands();
  return std::find(v.begin(), v.end(), command) != v.end();
}

bool IsShCommand(const std::string& command) {
  for (const char* c : {"sh-resources", "sh-resource", "sh-dev", "sh-ll-dev", "sh-md-dev",
                        "sh-md-idx", "sh-minor", "sh-ip", "sh-nop"}) {
    if (command == c) return true;
  }
  return false;
}

Result<const Host*> LocalHost(const Resource& res, const std::string& node) {
  for (const auto& h : res.hosts) {
    if (h.Matches(node)) return &h;
  }
  return Error(Errc::kNotFound, "'{}' not defined in your config (for this host '{}')", res.name,
               node);
}

Result<std::vector<PlanStep>> PlanCommand(const Config& cfg, const std::string& node,
                                          const std::string& command, const std::string& target,
                                          const PlanFlags& flags) {
  if (!IsPlannedCommand(command))
    return Error(Errc::kInvalidArgument, "unknown command '{}'", command);
  BSR_ASSIGN_OR_RETURN(auto targets, ResolveTargets(cfg, node, target));
  std::vector<PlanStep> out;
  for (const auto& t : targets) BSR_RETURN_IF_ERROR(PlanOne(t, command, flags, out));
  ApplyPassthrough(command, flags.passthrough, out);
  return out;
}

bool IsPassthroughOption(const std::string& command, const std::string& option) {
  if (option.rfind("--", 0) != 0) return false;
  std::string name = option.substr(2, option.find('=') - 2);
  bool has_value = option.find('=') != std::string::npos;
  if (command == "attach") {
    const OptionDef* def = FindOption(OptSection::kDisk, name);
    return def && has_value != (def->type == OptType::kFlag);
  }
  struct Allowed {
    const char* command;
    const char* name;
    bool value;
  };
  static const Allowed kAllowed[] = {
      {"connect", "discard-my-data", false},
      {"connect", "tentative", false},
      {"adjust", "discard-my-data", false},
      {"adjust", "tentative", false},
      {"verify", "start", true},
      {"verify", "stop", true},
      {"invalidate", "reset-bitmap", true},
      {"invalidate", "sync-from-peer-node-id", true},
      {"invalidate-remote", "reset-bitmap", true},
      {"new-current-uuid", "clear-bitmap", false},
      {"resize", "size", true},
      {"resize", "assume-peer-has-space", false},
      {"resize", "assume-clean", false},
      {"resize", "al-stripes", true},
      {"resize", "al-stripe-size-kB", true},
  };
  for (const auto& a : kAllowed) {
    if (command == a.command && name == a.name && has_value == a.value) return true;
  }
  return false;
}

void internal::ApplyPassthrough(const std::string& command, const std::vector<std::string>& words,
                                std::vector<PlanStep>& steps) {
  // adjust passes connect's options to its connect calls.
  std::string verb = command == "adjust" ? "connect" : command;
  for (auto& s : steps) {
    if (s.argv.size() < 2 || s.argv[0] != "bsrsetup" || s.argv[1] != verb) continue;
    for (const auto& w : words) {
      std::string name = w.substr(0, w.find('='));
      std::erase_if(s.argv,
                    [&](const std::string& a) { return a == name || a.rfind(name + "=", 0) == 0; });
      s.argv.push_back(w);
    }
  }
}

Result<std::string> ShQuery(const Config& cfg, const std::string& node, const std::string& command,
                            const std::string& target) {
  if (command == "sh-nop") return std::string();
  if (command == "sh-resources") {
    std::string s;
    for (const auto& r : cfg.resources) {
      if (!LocalHost(r, node).ok()) continue;
      if (!s.empty()) s += ' ';
      s += r.name;
    }
    return s;
  }
  if (!IsShCommand(command)) return Error(Errc::kInvalidArgument, "unknown command '{}'", command);
  BSR_ASSIGN_OR_RETURN(auto targets, ResolveTargets(cfg, node, target));
  std::vector<std::string> lines;
  for (const auto& t : targets) {
    if (command == "sh-resource") {
      lines.push_back(t.res->name);
      continue;
    }
    if (command == "sh-ip") {
      // As drbdadm: this host's address on every path, once per volume.
      for (size_t i = 0; i < Volumes(t).size(); ++i) {
        for (const auto& p : Peers(t)) {
          for (const auto& path : p.conn->paths) {
            lines.push_back(path.host_a == t.local_index ? path.addr_a.ip : path.addr_b.ip);
          }
        }
      }
      if (lines.empty() && t.local->address) lines.push_back(t.local->address->ip);
      continue;
    }
    for (const Volume* v : Volumes(t)) {
      if (command == "sh-dev") {
        lines.push_back(v->device.empty() ? fmt::format("/dev/bsr{}", v->minor) : v->device);
      } else if (command == "sh-minor") {
        lines.push_back(std::to_string(v->minor));
      } else if (command == "sh-ll-dev") {
        lines.push_back(v->diskless ? "none" : v->disk);
      } else if (command == "sh-md-dev") {
        if (!v->diskless) lines.push_back(v->meta.MetaDevArg(v->disk));
      } else if (command == "sh-md-idx") {
        lines.push_back(v->diskless                                 ? "none"
                        : v->meta.kind == MetaDisk::Kind::kFlexible ? "flexible"
                                                                    : v->meta.MetaIndexArg());
      }
    }
  }
  std::string s;
  for (const auto& l : lines) {
    if (!s.empty()) s += '\n';
    s += l;
  }
  return s;
}

std::string FormatStep(const PlanStep& step) {
  std::string out;
  for (const auto& w : step.argv) {
    if (!out.empty()) out += ' ';
    if (w.empty()) {
      out += "''";
      continue;
    }
    for (char c : w) {
      if (std::string_view(" \t\n'\"\\$`[]{}()*?;&|<>!#~").find(c) != std::string_view::npos)
        out += '\\';
      out += c;
    }
  }
  return out;
}

}  // namespace bsr::config
