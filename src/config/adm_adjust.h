// `bsradm adjust` against a running bsrd: what the daemon runs (parsed from
// `bsrsetup show --json`) diffed against the configuration, giving only the
// bsrsetup / bsrmeta calls that close the gap (drbdadm 9's adjust). Pure, any thread.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "config/adm_plan.h"
#include "config/model.h"

namespace bsr::config {

using OptionValues = std::map<std::string, std::string>;  // name -> value ("" for flags)

struct RunningVolume {
  int volume = 0;
  int minor = -1;
  bool attached = false;
  std::string disk;        // as given to attach (when attached)
  std::string meta_disk;   // ditto
  std::string meta_index;  // internal | flexible | N
  OptionValues disk_options;
};

struct RunningPath {
  std::string local;  // "ipv4:10.1.1.31:7789"
  std::string remote;
  bool operator==(const RunningPath&) const = default;
};

struct RunningPeer {
  int node_id = -1;
  std::string name;
  std::string cstate;  // "StandAlone", "Connecting", "Connected", ...
  OptionValues net;
  std::vector<RunningPath> paths;
  std::map<int, OptionValues> peer_devices;  // by volume
};

struct RunningResource {
  std::string name;
  int node_id = -1;
  OptionValues options;
  std::vector<RunningVolume> volumes;
  std::vector<RunningPeer> peers;
};

// The JSON of `bsrsetup show --json` (an array of resources). Malformed input gives
// an error naming the field.
Result<std::vector<RunningResource>> ParseRunning(std::string_view json_text);

// Whether two values of option `name` of `section` mean the same ("10M" == "10240"
// for resync-rate, "yes" == "on"); an absent value (nullptr) is the default.
bool SameOptionValue(OptSection section, const std::string& name, const std::string* a,
                     const std::string* b);

// The calls that make the running state match the configuration for `target`
// ("RES", "RES/VOL" or "all"). A resource that is not running gets `up`'s plan.
// Empty when nothing differs.
Result<std::vector<PlanStep>> PlanAdjust(const Config& cfg, const std::string& node,
                                         const std::string& target,
                                         const std::vector<RunningResource>& running,
                                         const PlanFlags& flags = {});

}  // namespace bsr::config
