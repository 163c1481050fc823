#include "config/adm_handler.h"

#include <fmt/format.h>

#include <charconv>

#include "config/adm_plan.h"
#include "config/schema.h"

namespace bsr::config {

bool IsHandlerName(const std::string& name) {
  return FindOption(OptSection::kHandlers, name) != nullptr;
}

Result<std::string> HandlerCommand(const Config& cfg, const std::string& resource,
                                   const std::string& handler) {
  if (!IsHandlerName(handler))
    return Error(Errc::kInvalidArgument, "unknown handler '{}'", handler);
  // A handler call may name one volume ("r0/1"); handlers are per resource.
  std::string name = resource.substr(0, resource.find('/'));
  const Resource* r = cfg.FindResource(name);
  if (!r) return Error(Errc::kNotFound, "'{}' not defined in your config", name);
  const std::string* cmd = r->handlers.Find(handler);
  return cmd ? *cmd : std::string();
}

std::map<std::string, std::string> HandlerEnvironment(
    const Config& cfg, const std::string& resource, const std::string& node,
    const std::string& config_path, const std::function<const char*(const char*)>& getenv) {
  std::map<std::string, std::string> env;
  auto has = [&](const std::string& k) {
    const char* v = getenv(k.c_str());
    return v && *v;
  };
  auto set = [&](const std::string& k, const std::string& v) {
    if (!has(k) && !v.empty()) env[k] = v;
  };
  auto number = [&](const std::string& text) {
    int n = -1;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    return ec == std::errc() && p == text.data() + text.size() ? n : -1;
  };
  std::string name = resource.substr(0, resource.find('/'));
  const Resource* r = cfg.FindResource(name);
  if (!r) return env;
  set("BSR_CONF", config_path);
  set("BSR_RESOURCE", name);
  auto local = LocalHost(*r, node);
  const Host* me = local.ok() ? *local : nullptr;
  std::string peers;
  for (const auto& h : r->hosts) {
    if (h.node_id >= 0) set(fmt::format("BSR_NODE_ID_{}", h.node_id), h.Name());
    if (&h == me) continue;
    peers += (peers.empty() ? "" : " ") + h.Name();
  }
  set("BSR_PEERS", peers);
  if (!me) return env;
  set("BSR_MY_NODE_ID", std::to_string(me->node_id));
  int volume = -1;
  if (has("BSR_VOLUME")) {
    volume = number(getenv("BSR_VOLUME"));
  } else if (auto slash = resource.find('/'); slash != std::string::npos) {
    volume = number(resource.substr(slash + 1));
  }
  for (const auto& v : me->volumes) {
    set(fmt::format("BSR_MINOR_{}", v.number), std::to_string(v.minor));
    if (!v.diskless) set(fmt::format("BSR_BACKING_DEV_{}", v.number), v.disk);
    if (v.number == volume) {
      set("BSR_VOLUME", std::to_string(v.number));
      set("BSR_MINOR", std::to_string(v.minor));
      if (!v.diskless) set("BSR_BACKING_DEV", v.disk);
    }
  }
  int me_index = static_cast<int>(me - r->hosts.data());
  int peer_id = has("BSR_PEER_NODE_ID") ? number(getenv("BSR_PEER_NODE_ID")) : -1;
  for (const Connection* c : r->ConnectionsOf(me_index)) {
    const Host& peer = r->hosts[c->PeerOf(me_index)];
    if (peer.node_id != peer_id || c->paths.empty()) continue;
    const Path& path = c->paths.front();
    bool mine_is_a = path.host_a == me_index;
    const Address& mine = mine_is_a ? path.addr_a : path.addr_b;
    const Address& theirs = mine_is_a ? path.addr_b : path.addr_a;
    set("BSR_PEER", peer.Name());
    set("BSR_PEER_ADDRESS", theirs.ip);
    set("BSR_PEER_AF", theirs.family);
    set("BSR_MY_ADDRESS", mine.ip);
    set("BSR_MY_AF", mine.family);
  }
  if (me->address) {
    set("BSR_MY_ADDRESS", me->address->ip);
    set("BSR_MY_AF", me->address->family);
  }
  return env;
}

}  // namespace bsr::config
