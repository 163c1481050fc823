#include "config/adm_handler.h"

#include "config/schema.h"

namespace bsr::config {

bool IsHandlerName(const std::string& name) {
  return FindOption(OptSection::kHandlers, name) != nullptr;
}

Result<std::string> HandlerCommand(const Config& cfg, const std::string& resource,
                                   const std::string& handler) {
  if (!IsHandlerName(handler))
    return Error(Errc::kInvalidArgument, "unknown handler '{}'", handler);
  // A handler call may name one volume ("r0/1"); handlers are per resource.
  std::string name = resource.substr(0, resource.find('/'));
  const Resource* r = cfg.FindResource(name);
  if (!r) return Error(Errc::kNotFound, "'{}' not defined in your config", name);
  const std::string* cmd = r->handlers.Find(handler);
  return cmd ? *cmd : std::string();
}

}  // namespace bsr::config
