// Text export/import of whole metadata for `bsrmeta dump-md` / `restore-md`: a stable,
// line-oriented format (docs/on-disk-format.md). Pure functions; any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "meta/bitmap.h"
#include "meta/format.h"
#include "meta/io.h"

namespace bsr::meta {

class Metadata;

// The superblock fields that survive a dump (no sequence numbers, no device offsets) and
// each assigned slot's bitmap as runs of set bits.
std::string DumpText(const Metadata& md);

struct ParsedDump {
  Superblock sb;  // layout fields zero; filled in by RestoreDump
  // Per slot (kMaxPeers entries): runs of set bits (first, count). Kept as runs so a
  // dump claiming a huge data size costs no memory before the device check.
  std::vector<std::vector<std::pair<uint64_t, uint64_t>>> runs;
};
// Parses a dump completely; the error names the line.
Result<ParsedDump> ParseDump(std::string_view text);

// Writes the dumped metadata to `io` at `placement` (which may differ from the dump's, to
// move metadata). Internal placement needs the same data size as the dump. Nothing is
// written when the dump or the device does not fit.
Status RestoreDump(MetaIo& io, const Placement& placement, std::string_view text);

}  // namespace bsr::meta
