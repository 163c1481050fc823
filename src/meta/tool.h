// bsrmeta: the offline metadata tool (drbdmeta's command line). Runs on the calling
// thread; opens the meta device itself through FileIo.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace bsr::meta {

// Exit codes.
inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 1;     // bad command line
inline constexpr int kExitNoMeta = 10;   // no valid meta data (missing or corrupt)
inline constexpr int kExitRefused = 20;  // refused: existing data, unclean AL, ...
inline constexpr int kExitFailed = 30;   // I/O or other failure

// bsrmeta [--force] MINOR FORMAT META-DEV INDEX COMMAND [ARGS] [OPTIONS]
// `args` excludes the program name.
int RunBsrmeta(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace bsr::meta
