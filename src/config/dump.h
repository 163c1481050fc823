// `bsradm dump`: canonical re-print of a loaded configuration (includes expanded,
// DRBD 8.x forms rewritten, minors, address families and node-ids explicit). The
// output parses back to the same model. Pure; any thread.
#pragma once

#include <string>
#include <vector>

#include "config/config.h"

namespace bsr::config {

// Whole configuration (global, common, every resource).
std::string Dump(const Loaded& loaded);

// Only the named resources, in the order given.
std::string DumpResources(const Loaded& loaded, const std::vector<std::string>& names);

// A word as the config language needs it written (quoted when it must be).
std::string QuoteWord(const std::string& word);

}  // namespace bsr::config
