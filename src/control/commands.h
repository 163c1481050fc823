// The bsrsetup command table (drbdsetup 9's names, positional arguments and
// --options), shared by bsrsetup (to parse argv) and bsrd (to validate requests).
// Immutable data; any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "config/schema.h"
#include "control/message.h"

namespace bsr::control {

struct CommandSpec {
  std::string_view name;
  std::vector<std::string_view> args;      // required positional arguments
  std::vector<std::string_view> optional;  // optional trailing positional arguments
  // The options section whose options the command accepts (--al-extents=...).
  std::optional<config::OptSection> section;
  std::vector<std::string_view> flags;  // extra options: "force", "verbose", ...
  std::string_view help;
};

const std::vector<CommandSpec>& Commands();
const CommandSpec* FindCommand(std::string_view name);

// Checks argument count, option names (did-you-mean) and option values against the
// schema. The error says which argument or option is wrong and why.
Status ValidateRequest(const Request& request);

// drbdsetup-style argv (after the program's own global options) -> Request.
// Accepts --opt=value, --opt value (for options that take a value) and --flag.
Result<Request> ParseCommandLine(const std::vector<std::string>& argv);

std::string Usage();

}  // namespace bsr::control
