// Building blocks shared by the bsradm planners (adm_plan.cc: config-only plans,
// adm_adjust.cc: adjust against a running bsrd). Pure, any thread.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "config/adm_plan.h"
#include "config/model.h"

namespace bsr::config::internal {

// One resource (optionally one volume of it) as seen from the local host.
struct Target {
  const Config* cfg = nullptr;
  const Resource* res = nullptr;
  const Host* local = nullptr;
  int local_index = -1;
  int volume = -1;  // -1: all volumes
};

// A connection of the local host and the host at its other end.
struct Peer {
  const Connection* conn;
  const Host* host;
};

std::vector<Peer> Peers(const Target& t);
std::vector<const Volume*> Volumes(const Target& t);

// The options of `m` as bsrsetup gets them (name, value): values as written, except
// resync-after, which becomes the minor of the volume it names.
std::vector<std::pair<std::string, std::string>> SetupOptions(const OptionMap& m, const Target& t);
// "--name=value", or "--name" for a flag option.
std::string OptionArg(OptSection section, const std::string& name, const std::string& value);
void AppendOptions(std::vector<std::string>& argv, const OptionMap& m, const Target& t);

PlanStep Setup(std::initializer_list<std::string> words);
PlanStep Attach(const Target& t, const Volume& v);
PlanStep ApplyAl(const Volume& v);
// The peer-device options `up` sets for (peer, volume): the configured ones, plus
// bitmap=no towards a diskless peer.
PeerDeviceOptions PeerDeviceOptionsFor(const Peer& p, const Volume& v);
// `up`: new-resource ... connect. `set_defaults` adds --set-defaults to
// peer-device-options (the config-only `adjust`, as drbdadm prints it).
void PlanUp(const Target& t, bool set_defaults, std::vector<PlanStep>& out);

// Adds `words` (PlanFlags::passthrough) to the bsrsetup calls that carry out `command`,
// replacing options of the same name.
void ApplyPassthrough(const std::string& command, const std::vector<std::string>& words,
                      std::vector<PlanStep>& steps);

Result<std::vector<Target>> ResolveTargets(const Config& cfg, const std::string& node,
                                           const std::string& target);

}  // namespace bsr::config::internal
