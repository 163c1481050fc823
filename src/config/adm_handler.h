// `bsradm HANDLER RES` (bsrd's usermode helper calls, replication/handlers.h): the
// command the configuration's handlers section gives for an event, with DRBD's
// inheritance (common -> resource). Pure, any thread.
#pragma once

#include <string>

#include "common/status.h"
#include "config/model.h"

namespace bsr::config {

// Whether `name` is a handler (an option of the handlers section: fence-peer, ...).
bool IsHandlerName(const std::string& name);

// The command configured for `handler` of resource `resource` ("" when none is).
Result<std::string> HandlerCommand(const Config& cfg, const std::string& resource,
                                   const std::string& handler);

}  // namespace bsr::config
