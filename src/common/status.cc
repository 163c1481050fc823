#include "common/status.h"

namespace bsr {

std::string_view ErrcName(Errc code) {
  switch (code) {
    case Errc::kOk: return "ok";
    case Errc::kInvalidArgument: return "invalid argument";
    case Errc::kNotFound: return "not found";
    case Errc::kExists: return "already exists";
    case Errc::kState: return "refused in current state";
    case Errc::kIo: return "I/O error";
    case Errc::kCorrupt: return "corrupt data";
    case Errc::kProtocol: return "protocol error";
    case Errc::kUnsupported: return "unsupported";
    case Errc::kTimeout: return "timed out";
    case Errc::kPermission: return "permission denied";
    case Errc::kBusy: return "busy";
    case Errc::kInternal: return "internal error";
  }
  return "unknown";
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  return fmt::format("{} ({})", message_, ErrcName(code_));
}

}  // namespace bsr
