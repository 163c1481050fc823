// Process-wide logging setup on spdlog: levelled lines to stderr, which journald
// picks up as-is. Call InitLogging once from main(); then use spdlog::info() etc.
#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

#include "common/status.h"

namespace bsr {

// level: trace, debug, info, warn, error, critical or off.
Status InitLogging(std::string_view program, std::string_view level);

}  // namespace bsr
