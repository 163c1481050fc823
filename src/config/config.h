// Entry points of the config module: file or string -> statement tree -> resolved
// model (model.h), with every problem reported as one "FILE:LINE:COL: message" line.
// Pure apart from reading the files named; call from one thread at a time.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "config/model.h"
#include "config/parser.h"

namespace bsr::config {

// Collects "FILE:LINE:COL: message" problems; a load fails when any were found.
class Diagnostics {
 public:
  void Add(const SourceLoc& loc, std::string message);
  bool empty() const { return lines_.empty(); }
  const std::vector<std::string>& lines() const { return lines_; }
  // kInvalidArgument with the lines joined by '\n' (Ok when empty).
  Status ToStatus() const;

 private:
  std::vector<std::string> lines_;
};

// A loaded configuration: the normalized statement tree (DRBD 8.x forms rewritten,
// devices/addresses/node-ids made explicit) that dump prints, and the model.
struct Loaded {
  std::vector<Statement> tree;
  Config config;
};

// Normalizes `tree` in place and builds the model from it.
Result<Config> BuildConfig(std::vector<Statement>& tree);

Result<Loaded> LoadFile(const std::string& path, const FileAccess& fs = RealFileAccess());
Result<Loaded> LoadString(std::string_view file, std::string_view text);

}  // namespace bsr::config
