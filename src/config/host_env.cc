#include "config/host_env.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <sys/utsname.h>

#include <algorithm>
#include <cstdlib>

#include "config/adm_plan.h"
#include "config/config.h"

namespace bsr::config {

std::string HostNodeName() {
  struct utsname u {};
  if (uname(&u) != 0) return "localhost";
  return u.nodename;
}

std::vector<std::string> HostAddresses() {
  std::vector<std::string> out;
  struct ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (auto* ifa = list; ifa; ifa = ifa->ifa_next) {
    if (!ifa->ifa_addr) continue;
    char buf[INET6_ADDRSTRLEN] = {};
    if (ifa->ifa_addr->sa_family == AF_INET) {
      auto* sin = reinterpret_cast<struct sockaddr_in*>(ifa->ifa_addr);
      if (inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf)) out.emplace_back(buf);
    } else if (ifa->ifa_addr->sa_family == AF_INET6) {
      auto* sin6 = reinterpret_cast<struct sockaddr_in6*>(ifa->ifa_addr);
      if (inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof buf)) out.emplace_back(buf);
    }
  }
  freeifaddrs(list);
  return out;
}

std::string PickNodeName(const std::string& cli_node, bool* named) {
  *named = true;
  if (!cli_node.empty()) return cli_node;
  for (const char* var : {"BSR_NODE", "__DRBD_NODE__"}) {
    const char* v = std::getenv(var);
    if (v && *v) return v;
  }
  *named = false;
  return HostNodeName();
}

namespace {

// Textual forms differ for IPv6 ("fd00::1" vs "fd00:0::1"); compare binary.
bool SameIp(const std::string& a, const std::string& b) {
  unsigned char x[16] = {};
  unsigned char y[16] = {};
  int fa = a.find(':') != std::string::npos ? AF_INET6 : AF_INET;
  int fb = b.find(':') != std::string::npos ? AF_INET6 : AF_INET;
  if (fa != fb) return false;
  if (inet_pton(fa, a.c_str(), x) != 1 || inet_pton(fb, b.c_str(), y) != 1) return a == b;
  return std::equal(x, x + (fa == AF_INET ? 4 : 16), y);
}

}  // namespace

Status VerifyLocalAddresses(const Config& cfg, const std::vector<std::string>& names,
                            const std::string& node, const std::vector<std::string>& addresses) {
  Diagnostics d;
  for (const auto& name : names) {
    const Resource* r = cfg.FindResource(name);
    if (!r) continue;
    auto h = LocalHost(*r, node);
    if (!h.ok() || !(*h)->address) continue;
    const Address& a = *(*h)->address;
    bool found = std::any_of(addresses.begin(), addresses.end(),
                             [&](const std::string& x) { return SameIp(x, a.ip); });
    if (!found) {
      d.Add((*h)->loc,
            fmt::format("in resource {}, on {}: IP {} not found on this host (set "
                        "disable-ip-verification in the global section, or name the node "
                        "with --node)",
                        r->name, (*h)->Name(), a.ip));
    }
  }
  return d.ToStatus();
}

}  // namespace bsr::config
