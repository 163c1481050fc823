// `bsradm HANDLER RES` (bsrd's usermode helper calls, replication/handlers.h): the
// command the configuration's handlers section gives for an event, with DRBD's
// inheritance (common -> resource). Pure, any thread.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "common/status.h"
#include "config/model.h"

namespace bsr::config {

// Whether `name` is a handler (an option of the handlers section: fence-peer, ...).
bool IsHandlerName(const std::string& name);

// The command configured for `handler` of resource `resource` ("" when none is).
Result<std::string> HandlerCommand(const Config& cfg, const std::string& resource,
                                   const std::string& handler);

// What the configuration knows about the resource, added to the handler's environment
// where bsrd did not already set it (drbdadm's DRBD_* equivalents): BSR_CONF,
// BSR_RESOURCE, BSR_PEERS, BSR_NODE_ID_<id>=name, and for the local host `node`:
// BSR_MY_NODE_ID, BSR_MY_ADDRESS, BSR_MY_AF, BSR_MINOR_<vnr>, BSR_BACKING_DEV_<vnr>,
// BSR_MINOR + BSR_BACKING_DEV (of $BSR_VOLUME, or of the volume in "RES/VOL"), and for
// $BSR_PEER_NODE_ID: BSR_PEER, BSR_PEER_ADDRESS, BSR_PEER_AF. `getenv` reads the
// current environment.
std::map<std::string, std::string> HandlerEnvironment(
    const Config& cfg, const std::string& resource, const std::string& node,
    const std::string& config_path, const std::function<const char*(const char*)>& getenv);

}  // namespace bsr::config
