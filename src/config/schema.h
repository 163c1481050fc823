// The option tables: every option of every options section with its type, range,
// default and unit (seed 001; drbdsetup's tables where the seed is silent).
// Immutable data, safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace bsr::config {

// Options sections. kDisk is the volume's disk options; kPeerDevice options are
// written in `disk` sections too (seed 001) but belong to a (connection, volume).
enum class OptSection { kGlobal, kDisk, kPeerDevice, kNet, kResource, kStartup, kHandlers };

std::string_view OptSectionName(OptSection s);

enum class OptType {
  kNumber,          // integer, optional unit suffix when `scale` is a byte scale
  kBool,            // yes|no|on|off|true|false; a bare keyword means yes
  kEnum,            // one of `choices`
  kString,          // free text
  kNumberOrSymbol,  // number in range, or one of `choices`
  kFlag,            // keyword only, no value
};

struct OptionDef {
  std::string_view name;
  OptSection section;
  OptType type;
  int64_t min = 0;
  int64_t max = 0;
  std::string_view def;      // default as written in the config ("" = unset)
  char scale = '1';          // default unit of a bare number: '1' plain, 's' sectors,
                             // 'k' KiB, 'b' bytes; K/M/G/s suffixes scale it, except
                             // for time units (seconds, tenths, ms) where they are refused
  std::string_view unit;     // human unit for docs and errors
  std::string_view choices;  // '|'-separated for kEnum / kNumberOrSymbol
  std::string_view doc;
};

const std::vector<OptionDef>& AllOptions();
const OptionDef* FindOption(OptSection section, std::string_view name);

// Converts a number with an optional K/M/G/s suffix into `def`'s default unit and
// checks the range. Errors say what is wrong without a location.
Result<int64_t> ParseNumber(const OptionDef& def, std::string_view value);

// Checks a value against its definition (type, choices, range, unit).
Status ValidateValue(const OptionDef& def, std::string_view value);

// yes/no parsing shared by kBool options.
Result<bool> ParseBool(std::string_view value);

// The closest name among `candidates` for a did-you-mean hint ("" if none is close).
std::string DidYouMean(std::string_view word, const std::vector<std::string_view>& candidates);

}  // namespace bsr::config
