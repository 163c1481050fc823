// What bsradm needs to know about this host: its node name, its addresses, and the
// check that a resource's local address exists here (seed 001, global section).
// Called from bsradm's main thread.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "config/model.h"

namespace bsr::config {

// uname -n.
std::string HostNodeName();

// Every IPv4/IPv6 address configured on this host's interfaces (getifaddrs).
std::vector<std::string> HostAddresses();

// The node bsradm acts as: `--node` if given, else $BSR_NODE, else $__DRBD_NODE__,
// else uname -n. `named` tells whether it was named explicitly.
std::string PickNodeName(const std::string& cli_node, bool* named);

// For each resource in `names` whose `node` host has an address: that address must
// be one of `addresses`. One "FILE:LINE:COL: ..." line per problem.
Status VerifyLocalAddresses(const Config& cfg, const std::vector<std::string>& names,
                            const std::string& node, const std::vector<std::string>& addresses);

}  // namespace bsr::config
