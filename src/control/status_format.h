// Renders ResourceState snapshots the way drbdsetup 9 prints them: `status`
// (plain, --verbose, --statistics), `status --json`, and events2 lines.
// Pure functions; any thread.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "replication/resource_state.h"

namespace bsr::control {

struct StatusOptions {
  bool verbose = false;
  bool statistics = false;
};

// seed 002's layout, e.g.
//   r0 role:Secondary
//     disk:Inconsistent
//     node0 role:Secondary
//       peer-disk:Inconsistent
// followed by an empty line, as drbdsetup separates resources.
std::string FormatStatus(const replication::ResourceState& s, StatusOptions opts = {});

// drbdsetup status --json: one object per resource.
nlohmann::json StatusJson(const replication::ResourceState& s);

// events2: the "exists" lines describing the whole state (resource, devices,
// connections, peer devices), in drbdsetup's order.
std::vector<std::string> Events2Exists(const replication::ResourceState& s);

// events2: create/change/destroy lines for the difference between two snapshots;
// unchanged objects produce nothing. Statistics changes are not events.
std::vector<std::string> Events2Diff(const replication::ResourceState& old_state,
                                     const replication::ResourceState& new_state);

// Lossless JSON form of a snapshot, used on the control socket.
nlohmann::json ToJson(const replication::ResourceState& s);
Result<replication::ResourceState> FromJson(const nlohmann::json& j);

}  // namespace bsr::control
