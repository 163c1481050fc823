#include "frontend/kernel_device_cleanup.h"

#include <spdlog/spdlog.h>
#include <sys/mount.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "frontend/kernel_device.h"
#include "frontend/kernel_device_loop.h"

namespace bsr::frontend {

namespace fs = std::filesystem;

std::string UnescapeMountField(std::string_view field) {
  auto octal = [](char c) { return c >= '0' && c <= '7'; };
  std::string out;
  out.reserve(field.size());
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && octal(field[i + 1]) && octal(field[i + 2]) &&
        octal(field[i + 3])) {
      out.push_back(static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 +
                                      (field[i + 3] - '0')));
      i += 3;
      continue;
    }
    out.push_back(field[i]);
  }
  return out;
}

std::vector<MountEntry> ParseMountInfo(std::string_view text) {
  std::vector<MountEntry> result;
  while (!text.empty()) {
    size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    std::vector<std::string_view> fields;
    size_t pos = 0;
    while (pos < line.size()) {
      size_t next = line.find(' ', pos);
      if (next == std::string_view::npos) next = line.size();
      if (next > pos) fields.push_back(line.substr(pos, next - pos));
      pos = next + 1;
    }
    // id parent major:minor root mount-point options [optional...] - type source super
    auto dash = std::find(fields.begin(), fields.end(), std::string_view("-"));
    if (fields.size() < 6 || dash == fields.end() || dash - fields.begin() < 6 ||
        fields.end() - dash < 3) {
      continue;
    }
    MountEntry entry;
    std::string dev(fields[2]);
    if (std::sscanf(dev.c_str(), "%u:%u", &entry.major, &entry.minor) != 2) continue;
    entry.mount_point = UnescapeMountField(fields[4]);
    entry.fs_type = UnescapeMountField(*(dash + 1));
    entry.source = UnescapeMountField(*(dash + 2));
    result.push_back(std::move(entry));
  }
  return result;
}

bool PathIsUnder(const fs::path& path, const fs::path& dir) {
  std::string p = path.string();
  constexpr std::string_view kDeleted = " (deleted)";
  if (p.size() > kDeleted.size() && p.ends_with(kDeleted)) p.resize(p.size() - kDeleted.size());
  std::string a = fs::path(p).lexically_normal().string();
  std::string b = dir.lexically_normal().string();
  while (a.size() > 1 && a.back() == '/') a.pop_back();
  while (b.size() > 1 && b.back() == '/') b.pop_back();
  if (a.empty() || b.empty() || a.front() != '/' || b.front() != '/') return false;
  if (a == b) return true;
  if (b == "/") return true;
  return a.size() > b.size() && a.compare(0, b.size(), b) == 0 && a[b.size()] == '/';
}

bool IsBsrDeviceName(std::string_view name) {
  return name.size() > 3 && name.substr(0, 3) == "bsr" &&
         name.find_first_not_of("0123456789", 3) == std::string_view::npos;
}

namespace {

void RemoveStaleLinks(const fs::path& dev_dir, StaleCleanupReport& report) {
  std::error_code ec;
  for (auto it = fs::directory_iterator(dev_dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (!IsBsrDeviceName(name) || !it->is_symlink()) continue;
    std::error_code rm;
    if (fs::remove(it->path(), rm)) {
      report.actions.push_back(fmt::format("removed stale link {}", it->path().string()));
    } else if (rm) {
      report.problems.push_back(fmt::format("remove {}: {}", it->path().string(), rm.message()));
    }
  }
  fs::path by_res = dev_dir / "bsr" / "by-res";
  std::vector<fs::path> dirs;
  for (auto it = fs::recursive_directory_iterator(by_res, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_symlink()) {
      std::error_code rm;
      if (fs::remove(it->path(), rm)) {
        report.actions.push_back(fmt::format("removed stale link {}", it->path().string()));
      } else if (rm) {
        report.problems.push_back(fmt::format("remove {}: {}", it->path().string(), rm.message()));
      }
    } else if (it->is_directory()) {
      dirs.push_back(it->path());
    }
  }
  // Deepest first; only empty directories go (remove() refuses others).
  std::sort(dirs.begin(), dirs.end(), [](const fs::path& a, const fs::path& b) {
    return a.string().size() > b.string().size();
  });
  dirs.push_back(by_res);
  dirs.push_back(dev_dir / "bsr");
  for (const auto& d : dirs) {
    std::error_code rm;
    if (fs::is_directory(d, rm) && !fs::is_symlink(d, rm) && fs::is_empty(d, rm)) fs::remove(d, rm);
  }
}

}  // namespace

StaleCleanupReport CleanupStaleKernelDevices(const fs::path& state_dir, const fs::path& dev_dir) {
  StaleCleanupReport report;
  std::error_code ec;
  fs::path state = fs::weakly_canonical(fs::absolute(state_dir, ec), ec);
  if (ec || state.empty()) state = fs::absolute(state_dir).lexically_normal();

  std::vector<MountEntry> mounts;
  {
    std::ifstream in("/proc/self/mountinfo");
    std::stringstream text;
    text << in.rdbuf();
    for (auto& m : ParseMountInfo(text.str())) {
      if (m.fs_type.rfind("fuse", 0) == 0 && PathIsUnder(m.mount_point, state)) {
        mounts.push_back(std::move(m));
      }
    }
  }
  // First make every request to a stale image fail at once, so that detaching a loop
  // device never waits for a server that is gone.
  for (const auto& m : mounts) {
    std::ofstream abort_file(fmt::format("/sys/fs/fuse/connections/{}/abort", m.minor));
    if (abort_file) abort_file << "1";
  }
  for (int index : ListLoopDevices()) {
    auto backing = LoopBackingFile(index);
    if (!backing || !PathIsUnder(*backing, state)) continue;
    Status s = ForceDetachLoop(index, std::chrono::seconds(2));
    if (s.ok()) {
      report.actions.push_back(fmt::format("detached /dev/loop{} ({})", index, *backing));
    } else {
      report.problems.push_back(s.message());
    }
  }
  std::sort(mounts.begin(), mounts.end(), [](const MountEntry& a, const MountEntry& b) {
    return a.mount_point.size() > b.mount_point.size();
  });
  for (const auto& m : mounts) {
    if (::umount2(m.mount_point.c_str(), MNT_DETACH) == 0) {
      report.actions.push_back(fmt::format("unmounted stale FUSE mount {}", m.mount_point));
    } else if (errno != EINVAL && errno != ENOENT) {
      report.problems.push_back(
          fmt::format("umount {}: {} (errno {})", m.mount_point, std::strerror(errno), errno));
    }
  }
  RemoveStaleLinks(dev_dir, report);
  // Mount points of images: <state>/kdev/bsr<N>, removed when empty.
  for (auto it = fs::directory_iterator(state / "kdev", ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    std::error_code rm;
    if (IsBsrDeviceName(it->path().filename().string()) && it->is_directory(rm) &&
        fs::is_empty(it->path(), rm)) {
      fs::remove(it->path(), rm);
    }
  }
  for (const auto& a : report.actions) spdlog::info("cleanup: {}", a);
  for (const auto& p : report.problems) spdlog::warn("cleanup: {}", p);
  return report;
}

}  // namespace bsr::frontend
