#include "control/commands.h"

#include <fmt/format.h>

namespace bsr::control {
namespace {

using config::OptSection;

// Options every command of a section accepts that are not config options.
bool IsPrivateOption(std::string_view name) {
  return !name.empty() && name[0] == '_';
}

const config::OptionDef* FindAny(std::optional<OptSection> section, std::string_view name) {
  if (!section) return nullptr;
  if (auto* d = config::FindOption(*section, name)) return d;
  // drbdsetup's attach/disk-options take the peer-device options too.
  if (*section == OptSection::kDisk) return config::FindOption(OptSection::kPeerDevice, name);
  return nullptr;
}

}  // namespace

const std::vector<CommandSpec>& Commands() {
  static const std::vector<CommandSpec> kCommands = {
      {"new-resource", {"resource", "node_id"}, {}, OptSection::kResource, {}, "create a resource"},
      {"resource-options", {"resource"}, {}, OptSection::kResource, {}, "change resource options"},
      {"del-resource", {"resource"}, {}, {}, {}, "delete a resource without volumes"},
      {"new-minor", {"resource", "minor", "volume"}, {}, {}, {"diskless"}, "create a volume"},
      {"del-minor", {"minor"}, {}, {}, {}, "delete a volume without a disk"},
      {"attach",
       {"minor", "lower_dev", "meta_data_dev", "meta_data_index"},
       {},
       OptSection::kDisk,
       {},
       "attach a backing disk"},
      {"disk-options", {"minor"}, {}, OptSection::kDisk, {}, "change disk options"},
      {"detach", {"minor"}, {}, {}, {"force", "diskless"}, "detach the backing disk"},
      {"new-peer", {"resource", "peer_node_id"}, {}, OptSection::kNet, {}, "create a connection"},
      {"net-options",
       {"resource", "peer_node_id"},
       {},
       OptSection::kNet,
       {},
       "change connection options"},
      {"peer-device-options",
       {"resource", "peer_node_id", "volume"},
       {},
       OptSection::kPeerDevice,
       {},
       "change peer-device options"},
      {"del-peer", {"resource", "peer_node_id"}, {}, {}, {"force"}, "delete a connection"},
      {"new-path",
       {"resource", "peer_node_id", "local_addr", "remote_addr"},
       {},
       {},
       {},
       "add a network path to a connection"},
      {"del-path",
       {"resource", "peer_node_id", "local_addr", "remote_addr"},
       {},
       {},
       {},
       "remove a network path"},
      {"connect",
       {"resource", "peer_node_id"},
       {},
       {},
       {"tentative", "discard-my-data"},
       "connect to a peer"},
      {"disconnect", {"resource", "peer_node_id"}, {}, {}, {"force"}, "disconnect a peer"},
      {"invalidate",
       {"minor"},
       {},
       {},
       {"sync-from-peer-node-id"},
       "full resync of the local disk from an UpToDate peer"},
      {"invalidate-remote",
       {"resource", "peer_node_id", "volume"},
       {},
       {},
       {},
       "full resync of a peer's disk from this node"},
      {"pause-sync",
       {"resource", "peer_node_id", "volume"},
       {},
       {},
       {},
       "pause the resync with a peer (PausedSyncS/T)"},
      {"resume-sync", {"resource", "peer_node_id", "volume"}, {}, {}, {}, "resume a paused resync"},
      {"verify",
       {"resource", "peer_node_id", "volume"},
       {},
       {},
       {"start", "stop"},
       "online verify with the peer (--start=SECTOR --stop=SECTOR)"},
      {"primary", {"resource"}, {}, {}, {"force", "overwrite-data-of-peer"}, "promote"},
      {"secondary", {"resource"}, {}, {}, {"force"}, "demote"},
      {"down", {"resource"}, {}, {}, {}, "demote, disconnect, detach and delete a resource"},
      {"status",
       {},
       {"resource"},
       {},
       {"verbose", "statistics", "json", "color"},
       "show the state of resources"},
      {"show", {}, {"resource"}, {}, {"show-defaults", "json"}, "show the configuration"},
      {"outdate", {"minor"}, {}, {}, {}, "mark an UpToDate disk Outdated"},
      {"suspend-io", {"minor"}, {}, {}, {}, "hold application I/O of the resource"},
      {"resume-io", {"minor"}, {}, {}, {}, "resume suspended I/O"},
      {"new-current-uuid",
       {"minor"},
       {},
       {},
       {"clear-bitmap"},
       "start a new data generation (--clear-bitmap: skip the initial sync)"},
      {"get-gi",
       {"resource", "peer_node_id", "volume"},
       {},
       {},
       {},
       "print the data generation identifiers"},
      {"show-gi",
       {"resource", "peer_node_id", "volume"},
       {},
       {},
       {},
       "print the data generation identifiers, explained"},
      {"events2",
       {},
       {"resource"},
       {},
       {"now", "statistics", "timestamps", "full", "color"},
       "stream state changes"},
  };
  return kCommands;
}

const CommandSpec* FindCommand(std::string_view name) {
  for (const auto& c : Commands()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

Status ValidateRequest(const Request& r) {
  const CommandSpec* spec = FindCommand(r.cmd);
  if (!spec && (r.cmd == "resize" || r.cmd == "check-resize")) {
    // bsradm plans these as drbdadm does (its dry run matches drbdadm's), so say plainly
    // why they fail instead of calling a drbdsetup command unknown.
    return Error(Errc::kUnsupported,
                 "'{}': online resize is not built in bsr yet; the volume keeps the size it "
                 "was attached with",
                 r.cmd);
  }
  if (!spec) {
    std::vector<std::string_view> names;
    for (const auto& c : Commands()) names.push_back(c.name);
    std::string hint = config::DidYouMean(r.cmd, names);
    return Error(Errc::kInvalidArgument, "unknown command '{}'{}", r.cmd,
                 hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint));
  }
  size_t min = spec->args.size(), max = min + spec->optional.size();
  if (r.args.size() < min || r.args.size() > max) {
    std::string usage;
    for (auto a : spec->args) usage += fmt::format(" {{{}}}", a);
    for (auto a : spec->optional) usage += fmt::format(" [{}]", a);
    return Error(Errc::kInvalidArgument, "{}: expected {} argument(s), got {}; usage: {}{}", r.cmd,
                 min == max ? fmt::format("{}", min) : fmt::format("{}..{}", min, max),
                 r.args.size(), r.cmd, usage);
  }
  for (const auto& [name, value] : r.opts) {
    if (IsPrivateOption(name)) continue;
    bool is_flag = false;
    for (auto f : spec->flags) is_flag |= f == name;
    if (is_flag) continue;
    const config::OptionDef* def = FindAny(spec->section, name);
    if (!def) {
      std::vector<std::string_view> names(spec->flags.begin(), spec->flags.end());
      if (spec->section) {
        for (const auto& d : config::AllOptions()) {
          if (d.section == *spec->section) names.push_back(d.name);
        }
      }
      std::string hint = config::DidYouMean(name, names);
      return Error(Errc::kInvalidArgument, "{}: unknown option --{}{}", r.cmd, name,
                   hint.empty() ? "" : fmt::format(" (did you mean --{}?)", hint));
    }
    Status s = config::ValidateValue(*def, value);
    if (!s.ok())
      return Error(Errc::kInvalidArgument, "{}: --{}={}: {}", r.cmd, name, value, s.message());
  }
  return Status::Ok();
}

Result<Request> ParseCommandLine(const std::vector<std::string>& argv) {
  if (argv.empty()) return Error(Errc::kInvalidArgument, "no command given\n{}", Usage());
  Request r;
  r.cmd = argv[0];
  const CommandSpec* spec = FindCommand(r.cmd);
  for (size_t i = 1; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a.size() > 2 && a.rfind("--", 0) == 0) {
      std::string name = a.substr(2), value;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name.resize(eq);
      } else {
        const config::OptionDef* def = spec ? FindAny(spec->section, name) : nullptr;
        bool takes_value =
            def && def->type != config::OptType::kFlag && def->type != config::OptType::kBool;
        if (takes_value) {
          if (i + 1 >= argv.size()) {
            return Error(Errc::kInvalidArgument, "option --{} needs a value", name);
          }
          value = argv[++i];
        } else if (def && def->type == config::OptType::kBool) {
          value = "yes";
        }
      }
      r.opts[name] = value;
    } else if (a == "-v") {
      r.opts["verbose"] = "";
    } else if (a == "-s") {
      r.opts["statistics"] = "";
    } else {
      r.args.push_back(a);
    }
  }
  BSR_RETURN_IF_ERROR(ValidateRequest(r));
  return r;
}

std::string Usage() {
  std::string u =
      "usage: bsrsetup [--socket PATH] [--run-dir DIR] COMMAND ARGS... [--OPTION=VALUE...]\n"
      "commands:\n";
  for (const auto& c : Commands()) {
    std::string args;
    for (auto a : c.args) args += fmt::format(" {{{}}}", a);
    for (auto a : c.optional) args += fmt::format(" [{}]", a);
    u += fmt::format("  {:<22}{:<48} {}\n", c.name, args, c.help);
  }
  return u;
}

}  // namespace bsr::control
