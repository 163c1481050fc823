// Pieces of the crash cleanup that read the system's tables: /proc/self/mountinfo
// parsing and path containment. Pure functions, callable from any thread.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace bsr::frontend {

struct MountEntry {
  unsigned major = 0;
  unsigned minor = 0;
  std::string mount_point;  // unescaped (\040 -> ' ')
  std::string fs_type;      // "fuse.bsr", "ext4"
  std::string source;
};

// Parses mountinfo text (proc(5)); malformed lines are skipped.
std::vector<MountEntry> ParseMountInfo(std::string_view text);

// Undoes mountinfo's octal escapes ("\040" -> " "); other text is kept as is.
std::string UnescapeMountField(std::string_view field);

// True when `path` is `dir` or lies below it (lexically, after normalising both; a
// trailing " (deleted)" that sysfs adds to unlinked files is ignored).
bool PathIsUnder(const std::filesystem::path& path, const std::filesystem::path& dir);

// Names this module owns in a dev dir: "bsr" followed by decimal digits.
bool IsBsrDeviceName(std::string_view name);

}  // namespace bsr::frontend
