#include "control/service.h"

#include <fmt/chrono.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <chrono>

#include "control/commands.h"
#include "control/status_format.h"

namespace bsr::control {
namespace {

using replication::Resource;

Result<int> Int(const std::string& s, std::string_view what) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) {
    return Error(Errc::kInvalidArgument, "{} '{}' is not a number", what, s);
  }
  return v;
}

Reply FromStatus(const Status& s) {
  return s.ok() ? Reply{} : Reply::Fail(s);
}

// Options of the request that belong to a section (not flags, not private ones).
std::map<std::string, std::string> SectionOpts(const Request& r) {
  std::map<std::string, std::string> out;
  const CommandSpec* spec = FindCommand(r.cmd);
  for (const auto& [k, v] : r.opts) {
    if (!k.empty() && k[0] == '_') continue;
    bool flag = false;
    for (auto f : spec->flags) flag |= f == k;
    if (!flag) out[k] = v;
  }
  return out;
}

// get-gi / show-gi RESOURCE PEER_NODE_ID VOLUME on a running volume.
// invalidate-remote RESOURCE PEER_NODE_ID VOLUME (replication/sync_admin.cc).
Reply InvalidateRemoteCmd(replication::Node& node, const Request& r) {
  auto res = node.GetResource(r.args[0]);
  auto id = Int(r.args[1], "peer node-id");
  auto vol = Int(r.args[2], "volume");
  if (!res.ok()) return Reply::Fail(res.status());
  if (!id.ok()) return Reply::Fail(id.status());
  if (!vol.ok()) return Reply::Fail(vol.status());
  return FromStatus((*res)->InvalidateRemote(*id, *vol));
}

Reply GenerationIds(replication::Node& node, const Request& r, bool verbose) {
  auto res = node.GetResource(r.args[0]);
  auto id = Int(r.args[1], "peer node-id");
  auto vol = Int(r.args[2], "volume");
  if (!res.ok()) return Reply::Fail(res.status());
  if (!id.ok()) return Reply::Fail(id.status());
  if (!vol.ok()) return Reply::Fail(vol.status());
  auto text = (*res)->GenerationIds(*id, *vol, verbose);
  if (!text.ok()) return Reply::Fail(text.status());
  Reply rep;
  rep.output = *text;
  return rep;
}

// pause-sync / resume-sync / verify RESOURCE PEER_NODE_ID VOLUME (replication/verify.cc).
Reply SyncCommand(replication::Node& node, const Request& r) {
  auto res = node.GetResource(r.args[0]);
  auto id = Int(r.args[1], "peer node-id");
  auto vol = Int(r.args[2], "volume");
  if (!res.ok()) return Reply::Fail(res.status());
  if (!id.ok()) return Reply::Fail(id.status());
  if (!vol.ok()) return Reply::Fail(vol.status());
  if (r.cmd != "verify") return FromStatus((*res)->PauseSync(*id, *vol, r.cmd == "pause-sync"));
  uint64_t start = 0, stop = 0;
  for (auto [name, out] : {std::pair{"start", &start}, std::pair{"stop", &stop}}) {
    auto it = r.opts.find(name);
    if (it == r.opts.end()) continue;
    const std::string& v = it->second;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), *out);
    if (v.empty() || ec != std::errc() || p != v.data() + v.size()) {
      return Reply::Fail(
          Error(Errc::kInvalidArgument, "verify: --{}={} is not a sector number", name, v));
    }
  }
  return FromStatus((*res)->Verify(*id, *vol, start, stop));
}

std::string Timestamp() {
  auto now = std::chrono::system_clock::now();
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()) %
            std::chrono::seconds(1);
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:06d}+00:00 ", fmt::gmtime(now), us.count());
}

}  // namespace

Service::Service(replication::Node& node) : node_(node) {
  auto bind = [this](Reply (Service::*fn)(const Request&)) -> Handler {
    return [this, fn](const Request& r, Done done) { done((this->*fn)(r)); };
  };
  auto bind_async = [this](void (Service::*fn)(const Request&, Done)) -> Handler {
    return [this, fn](const Request& r, Done done) { (this->*fn)(r, std::move(done)); };
  };
  // Commands on one minor's resource (outdate, suspend-io, ...): resource_admin.cc.
  auto minor_cmd =
      [this](std::function<Status(replication::Resource*, int, const Request&)> fn) -> Handler {
    return [this, fn](const Request& r, Done done) {
      auto minor = Int(r.args[0], "minor");
      if (!minor.ok()) return done(Reply::Fail(minor.status()));
      auto rv = node_.GetMinor(*minor);
      if (!rv.ok()) return done(Reply::Fail(rv.status()));
      done(FromStatus(fn(rv->first, rv->second, r)));
    };
  };
  table_ = {
      {"new-resource", bind(&Service::NewResource)},
      {"resource-options", bind(&Service::ResourceOptions)},
      {"del-resource", bind(&Service::DelResource)},
      {"new-minor", bind(&Service::NewMinor)},
      {"del-minor", bind(&Service::DelMinor)},
      {"attach", bind(&Service::Attach)},
      {"disk-options", bind(&Service::DiskOptions)},
      {"detach", bind(&Service::Detach)},
      {"new-peer", bind(&Service::NewPeer)},
      {"net-options", bind(&Service::NetOptions)},
      {"peer-device-options", bind(&Service::PeerDeviceOptions)},
      {"del-peer", bind(&Service::DelPeer)},
      {"new-path", bind(&Service::NewPath)},
      {"del-path", bind(&Service::DelPath)},
      {"connect", bind(&Service::Connect)},
      {"disconnect", bind(&Service::Disconnect)},
      {"invalidate", minor_cmd([](replication::Resource* r, int vol, const Request& q) -> Status {
         int from = -1;
         if (auto it = q.opts.find("sync-from-peer-node-id"); it != q.opts.end()) {
           BSR_ASSIGN_OR_RETURN(from, Int(it->second, "--sync-from-peer-node-id"));
         }
         return r->Invalidate(vol, from);
       })},
      {"invalidate-remote",
       [this](const Request& r, Done done) { done(InvalidateRemoteCmd(node_, r)); }},
      {"pause-sync", [this](const Request& r, Done done) { done(SyncCommand(node_, r)); }},
      {"resume-sync", [this](const Request& r, Done done) { done(SyncCommand(node_, r)); }},
      {"verify", [this](const Request& r, Done done) { done(SyncCommand(node_, r)); }},
      {"primary", bind_async(&Service::Primary)},
      {"secondary", bind_async(&Service::Secondary)},
      {"down", bind_async(&Service::Down)},
      {"status", bind(&Service::StatusCmd)},
      {"show", bind(&Service::Show)},
      {"outdate", minor_cmd([](replication::Resource* r, int vol, const Request&) {
         return r->Outdate(vol);
       })},
      {"suspend-io",
       minor_cmd([](replication::Resource* r, int, const Request&) { return r->SuspendIo(); })},
      {"resume-io",
       minor_cmd([](replication::Resource* r, int, const Request&) { return r->ResumeIo(); })},
      {"new-current-uuid", minor_cmd([](replication::Resource* r, int vol, const Request& q) {
         return r->NewCurrentUuid(vol, q.HasOpt("clear-bitmap"));
       })},
      {"get-gi", [this](const Request& r, Done done) { done(GenerationIds(node_, r, false)); }},
      {"show-gi", [this](const Request& r, Done done) { done(GenerationIds(node_, r, true)); }},
  };
}

Service::~Service() = default;

void Service::Call(const Request& request, Done done) {
  Status v = ValidateRequest(request);
  if (!v.ok()) return done(Reply::Fail(v));
  auto it = table_.find(request.cmd);
  if (it == table_.end()) {
    return done(
        Reply::Fail(Error(Errc::kUnsupported, "{} is not available on this daemon", request.cmd)));
  }
  it->second(request, [cmd = request.cmd, done = std::move(done)](Reply rep) {
    if (!rep.ok()) spdlog::info("refused {}: {}", cmd, rep.error);
    done(std::move(rep));
  });
}

void Service::Handle(std::shared_ptr<Session> session, Request request) {
  if (request.cmd == "events2") {
    Status v = ValidateRequest(request);
    if (!v.ok()) return session->Finish(Reply::Fail(v));
    return StartEvents(std::move(session), request);
  }
  Call(request, [session](Reply rep) { session->Finish(rep); });
}

void Service::StartEvents(std::shared_ptr<Session> session, const Request& r) {
  std::string only = r.args.empty() || r.args[0] == "all" ? "" : r.args[0];
  bool stamps = r.HasOpt("timestamps");
  auto emit = [session, stamps](const std::string& line) {
    session->Event(stamps ? Timestamp() + line : line);
  };
  for (const auto& [name, res] : node_.resources()) {
    if (!only.empty() && name != only) continue;
    for (const auto& line : Events2Exists(res->state())) emit(line);
  }
  emit("exists -");
  if (r.HasOpt("now")) return session->Finish(Reply{});
  int id = node_.Observe(
      [emit, only](const replication::ResourceState* o, const replication::ResourceState* n) {
        const auto& any = n ? *n : *o;
        if (!only.empty() && any.name != only) return;
        if (!o) {
          for (auto line : Events2Exists(*n)) emit("create" + line.substr(6));
        } else if (!n) {
          replication::ResourceState empty;
          empty.name = o->name;
          for (const auto& line : Events2Diff(*o, empty)) {
            if (line.rfind("destroy", 0) == 0) emit(line);
          }
          emit(fmt::format("destroy resource name:{}", o->name));
        } else {
          for (const auto& line : Events2Diff(*o, *n)) emit(line);
        }
      });
  session->OnClose([this, id] { node_.Unobserve(id); });
}

Reply Service::NewResource(const Request& r) {
  auto id = Int(r.args[1], "node-id");
  if (!id.ok()) return Reply::Fail(id.status());
  return FromStatus(node_.NewResource(r.args[0], *id, SectionOpts(r)).status());
}

Reply Service::ResourceOptions(const Request& r) {
  auto res = node_.GetResource(r.args[0]);
  if (!res.ok()) return Reply::Fail(res.status());
  return FromStatus((*res)->SetOptions(SectionOpts(r)));
}

Reply Service::DelResource(const Request& r) {
  return FromStatus(node_.DelResource(r.args[0]));
}

Reply Service::NewMinor(const Request& r) {
  auto minor = Int(r.args[1], "minor");
  auto vol = Int(r.args[2], "volume");
  if (!minor.ok()) return Reply::Fail(minor.status());
  if (!vol.ok()) return Reply::Fail(vol.status());
  return FromStatus(node_.NewMinor(r.args[0], *minor, *vol));
}

Reply Service::DelMinor(const Request& r) {
  auto minor = Int(r.args[0], "minor");
  if (!minor.ok()) return Reply::Fail(minor.status());
  return FromStatus(node_.DelMinor(*minor));
}

Reply Service::Attach(const Request& r) {
  auto minor = Int(r.args[0], "minor");
  if (!minor.ok()) return Reply::Fail(minor.status());
  auto rv = node_.GetMinor(*minor);
  if (!rv.ok()) return Reply::Fail(rv.status());
  replication::AttachSpec spec{r.args[1], r.args[2], r.args[3], SectionOpts(r)};
  return FromStatus(rv->first->Attach(rv->second, spec));
}

Reply Service::DiskOptions(const Request& r) {
  auto minor = Int(r.args[0], "minor");
  if (!minor.ok()) return Reply::Fail(minor.status());
  auto rv = node_.GetMinor(*minor);
  if (!rv.ok()) return Reply::Fail(rv.status());
  return FromStatus(rv->first->device(rv->second)->SetDiskOptions(SectionOpts(r)));
}

Reply Service::Detach(const Request& r) {
  auto minor = Int(r.args[0], "minor");
  if (!minor.ok()) return Reply::Fail(minor.status());
  auto rv = node_.GetMinor(*minor);
  if (!rv.ok()) return Reply::Fail(rv.status());
  return FromStatus(rv->first->Detach(rv->second));
}

Reply Service::NewPeer(const Request& r) {
  auto res = node_.GetResource(r.args[0]);
  auto id = Int(r.args[1], "peer node-id");
  if (!res.ok()) return Reply::Fail(res.status());
  if (!id.ok()) return Reply::Fail(id.status());
  replication::PeerSpec p;
  p.node_id = *id;
  if (auto it = r.opts.find("_name"); it != r.opts.end()) p.name = it->second;
  p.net_opts = SectionOpts(r);
  return FromStatus((*res)->AddPeer(std::move(p)));
}

Reply Service::NetOptions(const Request& r) {
  auto res = node_.GetResource(r.args[0]);
  auto id = Int(r.args[1], "peer node-id");
  if (!res.ok()) return Reply::Fail(res.status());
  if (!id.ok()) return Reply::Fail(id.status());
  return FromStatus((*res)->SetNetOptions(*id, SectionOpts(r)));
}

Reply Service::PeerDeviceOptions(const Request& r) {
  auto res = node_.GetResource(r.args[0]);
  auto id = Int(r.args[1], "peer node-id");
  auto vol = Int(r.args[2], "volume");
  if (!res.ok()) return Reply::Fail(res.status());
  if (!id.ok()) return Reply::Fail(id.status());
  if (!vol.ok()) return Reply::Fail(vol.status());
  return FromStatus((*res)->SetPeerDeviceOptions(*id, *vol, SectionOpts(r)));
}

Reply Service::DelPeer(const Request& r) {
  auto res = node_.GetResource(r.args[0]);
  auto id = Int(r.args[1], "peer node-id");
  if (!res.ok()) return Reply::Fail(res.status());
  if (!id.ok()) return Reply::Fail(id.status());
  Status s = (*res)->Disconnect(*id, true);
  if (!s.ok()) return Reply::Fail(s);
  return FromStatus((*res)->RemovePeer(*id));
}

Reply Service::NewPath(const Request& r) {
  auto res = node_.GetResource(r.args[0]);
  auto id = Int(r.args[1], "peer node-id");
  if (!res.ok()) return Reply::Fail(res.status());
  if (!id.ok()) return Reply::Fail(id.status());
  return FromStatus((*res)->AddPath(*id, {r.args[2], r.args[3]}));
}

Reply Service::DelPath(const Request& r) {
  auto res = node_.GetResource(r.args[0]);
  auto id = Int(r.args[1], "peer node-id");
  if (!res.ok()) return Reply::Fail(res.status());
  if (!id.ok()) return Reply::Fail(id.status());
  return FromStatus((*res)->RemovePath(*id, {r.args[2], r.args[3]}));
}

Reply Service::Connect(const Request& r) {
  auto res = node_.GetResource(r.args[0]);
  auto id = Int(r.args[1], "peer node-id");
  if (!res.ok()) return Reply::Fail(res.status());
  if (!id.ok()) return Reply::Fail(id.status());
  if (r.HasOpt("discard-my-data")) return FromStatus((*res)->ConnectDiscardMyData(*id));
  return FromStatus((*res)->Connect(*id));
}

Reply Service::Disconnect(const Request& r) {
  auto res = node_.GetResource(r.args[0]);
  auto id = Int(r.args[1], "peer node-id");
  if (!res.ok()) return Reply::Fail(res.status());
  if (!id.ok()) return Reply::Fail(id.status());
  return FromStatus((*res)->Disconnect(*id, r.HasOpt("force")));
}

void Service::Primary(const Request& r, Done done) {
  bool force = r.HasOpt("force") || r.HasOpt("overwrite-data-of-peer");
  node_.Promote(r.args[0], force, [done](Status s) { done(FromStatus(s)); });
}

void Service::Secondary(const Request& r, Done done) {
  node_.Demote(r.args[0], [done](Status s) { done(FromStatus(s)); });
}

void Service::Down(const Request& r, Done done) {
  node_.Down(r.args[0], [done](Status s) { done(FromStatus(s)); });
}

Reply Service::StatusCmd(const Request& r) {
  std::string only = r.args.empty() || r.args[0] == "all" ? "" : r.args[0];
  if (!only.empty() && !node_.FindResource(only)) {
    return Reply::Fail(Error(Errc::kNotFound, "{}: No such resource", only));
  }
  Reply rep;
  rep.data = nlohmann::json::array();
  for (const auto& [name, res] : node_.resources()) {
    if (only.empty() || name == only) rep.data.push_back(ToJson(res->state()));
  }
  return rep;
}

namespace {

// `show --json`: what bsrd runs, in the form `bsradm adjust` diffs against the
// configuration (config/adm_adjust.h parses it).
nlohmann::json ShowJson(const replication::Node& node, const std::string& only) {
  using nlohmann::json;
  json out = json::array();
  for (const auto& [name, res] : node.resources()) {
    if (!only.empty() && name != only) continue;
    json rj = {{"name", name},
               {"node_id", res->node_id()},
               {"options", res->options()},
               {"volumes", json::array()},
               {"connections", json::array()}};
    for (const auto& [vol, dev] : res->devices()) {
      json vj = {{"volume", vol}, {"minor", dev->minor()}, {"attached", dev->attached()}};
      if (dev->attached()) {
        const auto& a = dev->attach_spec();
        vj["disk"] = a.disk;
        vj["meta_disk"] = a.meta_disk;
        vj["meta_index"] = a.meta_index;
        vj["disk_options"] = a.opts;
      }
      rj["volumes"].push_back(std::move(vj));
    }
    for (const auto& [id, p] : res->peers()) {
      auto st = res->state().connections.find(id);
      json cj = {{"peer_node_id", id},
                 {"name", p.name},
                 {"cstate", st == res->state().connections.end()
                                ? std::string("StandAlone")
                                : std::string(replication::Name(st->second.conn))},
                 {"net", p.net_opts},
                 {"paths", json::array()},
                 {"peer_devices", json::array()}};
      for (const auto& path : p.paths) {
        cj["paths"].push_back({{"local", path.local}, {"remote", path.remote}});
      }
      for (const auto& [vol, opts] : p.peer_device_opts) {
        cj["peer_devices"].push_back({{"volume", vol}, {"options", opts}});
      }
      rj["connections"].push_back(std::move(cj));
    }
    out.push_back(std::move(rj));
  }
  return out;
}

}  // namespace

Reply Service::Show(const Request& r) {
  std::string only = r.args.empty() || r.args[0] == "all" ? "" : r.args[0];
  if (!only.empty() && !node_.FindResource(only)) {
    return Reply::Fail(Error(Errc::kNotFound, "{}: No such resource", only));
  }
  if (r.HasOpt("json")) {
    Reply rep;
    rep.output = ShowJson(node_, only).dump(2) + "\n";
    return rep;
  }
  auto opts_block = [](const std::map<std::string, std::string>& opts, int indent,
                       std::string_view title) {
    if (opts.empty()) return std::string();
    std::string pad(indent, ' ');
    std::string out = fmt::format("{}{} {{\n", pad, title);
    for (const auto& [k, v] : opts) {
      out += v.empty() ? fmt::format("{}    {};\n", pad, k)
                       : fmt::format("{}    {:<20}\t{};\n", pad, k, v);
    }
    return out + pad + "}\n";
  };
  std::string out;
  for (const auto& [name, res] : node_.resources()) {
    if (!only.empty() && name != only) continue;
    out += fmt::format("resource {} {{\n", name);
    out += opts_block(res->options(), 4, "options");
    out += fmt::format("    _this_host {{\n        node-id\t\t\t{};\n", res->node_id());
    for (const auto& [vol, dev] : res->devices()) {
      out += fmt::format("        volume {} {{\n            device\t\t\tminor {};\n", vol,
                         dev->minor());
      if (dev->attached()) {
        const auto& a = dev->attach_spec();
        out += fmt::format("            disk\t\t\t\"{}\";\n", a.disk);
        out += a.meta_index == "internal" ? std::string("            meta-disk\t\t\tinternal;\n")
                                          : fmt::format("            meta-disk\t\t\t\"{}\" {};\n",
                                                        a.meta_disk, a.meta_index);
        out += opts_block(a.opts, 12, "disk");
      } else {
        out += "            disk\t\t\tnone;\n";
      }
      out += "        }\n";
    }
    out += "    }\n";
    for (const auto& [id, p] : res->peers()) {
      out += fmt::format("    connection {{\n        _peer_node_id {};\n", id);
      for (const auto& path : p.paths) {
        out += fmt::format(
            "        path {{\n            _this_host {};\n            _remote_host {};\n"
            "        }}\n",
            path.local, path.remote);
      }
      auto net = p.net_opts;
      net["_name"] = p.name;
      out += opts_block(net, 8, "net");
      out += "    }\n";
    }
    out += "}\n\n";
  }
  Reply rep;
  rep.output = out;
  return rep;
}

}  // namespace bsr::control
