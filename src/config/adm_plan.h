// Command planning for bsradm: (config, local node, command, target) -> the ordered
// bsrsetup / bsrmeta calls that carry it out, mirroring drbdadm 9's calls to
// drbdsetup / drbdmeta. Pure (no I/O): `bsradm -d` prints a plan, plain `bsradm`
// runs it. Also the `sh-*` queries answered from the config alone. Any thread.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "config/model.h"

namespace bsr::config {

// bsrmeta's metadata format token (drbdmeta's is v09).
inline constexpr const char* kMetaFormat = "bsr1";

struct PlanStep {
  std::vector<std::string> argv;  // argv[0] is "bsrsetup" or "bsrmeta"
  // Runs only when the step before it failed (drbdadm's "ask the daemon, else read
  // the metadata offline" pairs, e.g. show-gi, invalidate, outdate).
  bool only_if_previous_failed = false;
};

struct PlanFlags {
  // primary, secondary, disconnect, detach --force; create-md --force (to bsrmeta)
  bool force = false;
  // drbdsetup options given to bsradm ("--discard-my-data", "--start=100"), added to
  // the command's bsrsetup calls (replacing a configured value of the same option).
  std::vector<std::string> passthrough = {};
};

// Whether `option` ("--discard-my-data", "--size=10G") is one bsradm passes on to
// bsrsetup for `command` (drbdadm's set: connect --discard-my-data|--tentative, verify
// --start|--stop, invalidate[-remote] --reset-bitmap, new-current-uuid --clear-bitmap,
// resize --size ..., attach with disk options, adjust with connect's).
bool IsPassthroughOption(const std::string& command, const std::string& option);

// Commands PlanCommand knows.
bool IsPlannedCommand(const std::string& command);
// Commands answered by ShQuery.
bool IsShCommand(const std::string& command);

// The host of `res` that is `node` (by `on` name, or a floating address).
Result<const Host*> LocalHost(const Resource& res, const std::string& node);

// `target` is "RES", "RES/VOL" or "all" (every resource that has `node`).
Result<std::vector<PlanStep>> PlanCommand(const Config& cfg, const std::string& node,
                                          const std::string& command, const std::string& target,
                                          const PlanFlags& flags = {});

// Output of `bsradm sh-...` for `target` (empty for sh-resources), lines joined by '\n'.
Result<std::string> ShQuery(const Config& cfg, const std::string& node, const std::string& command,
                            const std::string& target);

// One step as `bsradm -d` prints it: words shell-escaped with backslashes.
std::string FormatStep(const PlanStep& step);

}  // namespace bsr::config
