#include "common/log.h"

#include <spdlog/sinks/stdout_sinks.h>

#include <string>

namespace bsr {

Status InitLogging(std::string_view program, std::string_view level) {
  auto lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off") {
    return Error(Errc::kInvalidArgument,
                 "unknown log level '{}' (use trace, debug, info, warn, error, critical, off)",
                 level);
  }
  auto logger = spdlog::stderr_logger_mt(std::string(program));
  // No timestamp when journald adds one; keep it for terminals and test logs.
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %n[%P] %l: %v");
  logger->set_level(lvl);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
  return Status::Ok();
}

}  // namespace bsr
