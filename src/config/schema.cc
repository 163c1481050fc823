#include "config/schema.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

namespace bsr::config {

std::string_view OptSectionName(OptSection s) {
  switch (s) {
    case OptSection::kGlobal: return "global";
    case OptSection::kDisk: return "disk";
    case OptSection::kPeerDevice: return "peer-device-options";
    case OptSection::kNet: return "net";
    case OptSection::kResource: return "options";
    case OptSection::kStartup: return "startup";
    case OptSection::kHandlers: return "handlers";
  }
  return "?";
}

namespace {

using S = OptSection;
using T = OptType;

constexpr int64_t kBig = INT64_C(4294967295);

std::vector<OptionDef> MakeTable() {
  std::vector<OptionDef> v = {
      // global
      {"usage-count", S::kGlobal, T::kEnum, 0, 0, "no", '1', "", "yes|no|ask",
       "Usage statistics; accepted and ignored by bsr."},
      {"disable-ip-verification", S::kGlobal, T::kFlag, 0, 0, "", '1', "", "",
       "Do not check that the local address exists on this host."},
      {"dialog-refresh", S::kGlobal, T::kNumber, 0, 600, "1", '1', "seconds", "",
       "Countdown refresh interval of the startup wait; 0 turns it off."},
      {"udev-always-use-vnr", S::kGlobal, T::kFlag, 0, 0, "", '1', "", "",
       "Always put the volume number into the by-res device link."},
      {"minor-count", S::kGlobal, T::kNumber, 1, 1048576, "32", '1', "", "",
       "Number of minors to reserve."},
      // disk
      {"on-io-error", S::kDisk, T::kEnum, 0, 0, "passthrough", '1', "",
       "passthrough|pass_on|call-local-io-error|detach",
       "Reaction to a lower-level I/O error; pass_on is the DRBD spelling of passthrough."},
      {"disk-barrier", S::kDisk, T::kBool, 0, 0, "no", '1', "", "", "Order writes with barriers."},
      {"disk-flushes", S::kDisk, T::kBool, 0, 0, "yes", '1', "", "", "Flush after writes."},
      {"disk-drain", S::kDisk, T::kBool, 0, 0, "no", '1', "", "",
       "Drain the request queue before submitting dependent writes."},
      {"md-flushes", S::kDisk, T::kBool, 0, 0, "yes", '1', "", "",
       "Flushes on the metadata device."},
      {"resync-after", S::kDisk, T::kString, 0, 0, "", '1', "", "",
       "Resynchronize only after RES/VOL has finished."},
      {"al-extents", S::kDisk, T::kNumber, 7, 65536, "6001", '1', "extents of 4 MiB", "",
       "Number of activity-log extents active at once."},
      {"al-updates", S::kDisk, T::kBool, 0, 0, "yes", '1', "", "",
       "Keep the activity log on disk."},
      {"discard-zeroes-if-aligned", S::kDisk, T::kBool, 0, 0, "yes", '1', "", "",
       "Treat aligned discards as zeroing."},
      {"disable-write-same", S::kDisk, T::kBool, 0, 0, "no", '1', "", "", "Do not use WRITE SAME."},
      {"disk-timeout", S::kDisk, T::kNumber, 0, 6000, "0", '1', "1/10 seconds", "",
       "Fail lower-level requests that take longer; 0 is infinite."},
      {"read-balancing", S::kDisk, T::kEnum, 0, 0, "prefer-local", '1', "",
       "prefer-local|prefer-remote|round-robin|least-pending|when-congested-remote|32K-striping|"
       "64K-striping|128K-striping|256K-striping|512K-striping|1M-striping",
       "Where reads are served from."},
      {"rs-discard-granularity", S::kDisk, T::kNumber, 0, 1048576, "0", 'b', "bytes", "",
       "Discard granularity during resync."},
      {"max-bio-size", S::kDisk, T::kNumber, 512, 1048576, "1048576", 'b', "bytes", "",
       "Largest request passed down."},
      // peer device (written in disk sections)
      {"resync-rate", S::kPeerDevice, T::kNumber, 1, 8388608, "250", 'k', "KiB/s", "",
       "Fixed resync bandwidth when the dynamic controller is off."},
      {"c-plan-ahead", S::kPeerDevice, T::kNumber, 0, 300, "20", '1', "1/10 seconds", "",
       "Dynamic resync controller horizon; 0 disables the controller."},
      {"c-delay-target", S::kPeerDevice, T::kNumber, 1, 100, "1", '1', "1/10 seconds", "",
       "Delay the controller aims for when c-fill-target is 0."},
      {"c-fill-target", S::kPeerDevice, T::kNumber, 0, 1048576, "0", 's', "sectors", "",
       "Amount of resync data in flight the controller aims for."},
      {"c-max-rate", S::kPeerDevice, T::kNumber, 0, 4194304, "102400", 'k', "KiB/s", "",
       "Upper bound of the dynamic resync rate."},
      {"c-min-rate", S::kPeerDevice, T::kNumber, 0, 4194304, "250", 'k', "KiB/s", "",
       "Resync rate kept while application I/O competes; 0 = no limit."},
      {"bitmap", S::kPeerDevice, T::kBool, 0, 0, "yes", '1', "", "",
       "Keep a bitmap for this peer."},
      // net
      {"protocol", S::kNet, T::kEnum, 0, 0, "C", '1', "", "A|B|C", "Replication protocol."},
      {"timeout", S::kNet, T::kNumber, 1, 600, "60", '1', "1/10 seconds", "",
       "Reply timeout; must be below connect-int and ping-int."},
      {"max-epoch-size", S::kNet, T::kNumber, 1, 20000, "2048", '1', "requests", "",
       "Write requests between two barriers."},
      {"connect-int", S::kNet, T::kNumber, 1, 120, "10", '1', "seconds", "",
       "Retry interval of connection attempts."},
      {"ping-int", S::kNet, T::kNumber, 1, 120, "10", '1', "seconds", "",
       "Keep-alive interval on an idle connection."},
      {"sndbuf-size", S::kNet, T::kNumber, 0, 10485760, "0", 'b', "bytes", "",
       "TCP send buffer; 0 = automatic."},
      {"rcvbuf-size", S::kNet, T::kNumber, 0, 10485760, "0", 'b', "bytes", "",
       "TCP receive buffer; 0 = automatic."},
      {"ko-count", S::kNet, T::kNumber, 0, 200, "7", '1', "", "",
       "Timeouts a peer may miss on one write before it is dropped; 0 disables."},
      {"allow-two-primaries", S::kNet, T::kBool, 0, 0, "no", '1', "", "",
       "Dual primary; bsr does not support it."},
      {"cram-hmac-alg", S::kNet, T::kString, 0, 0, "", '1', "", "",
       "HMAC for peer authentication."},
      {"shared-secret", S::kNet, T::kString, 0, 64, "", '1', "", "",
       "Peer authentication secret, up to 64 characters."},
      {"after-sb-0pri", S::kNet, T::kEnum, 0, 0, "disconnect", '1', "",
       "disconnect|discard-younger-primary|discard-older-primary|discard-zero-changes|"
       "discard-least-changes|discard-local|discard-remote",
       "Split-brain policy with no primary."},
      {"after-sb-1pri", S::kNet, T::kEnum, 0, 0, "disconnect", '1', "",
       "disconnect|consensus|discard-secondary|call-pri-lost-after-sb|violently-as0p",
       "Split-brain policy with one primary."},
      {"after-sb-2pri", S::kNet, T::kEnum, 0, 0, "disconnect", '1', "",
       "disconnect|call-pri-lost-after-sb|violently-as0p",
       "Split-brain policy with two primaries."},
      {"always-asbp", S::kNet, T::kBool, 0, 0, "no", '1', "", "",
       "Use the after-split-brain policies even with a third node's UUIDs."},
      {"rr-conflict", S::kNet, T::kEnum, 0, 0, "disconnect", '1', "",
       "disconnect|call-pri-lost|violently|retry-connect|auto-discard",
       "Resync decision incompatible with the roles."},
      {"ping-timeout", S::kNet, T::kNumber, 1, 30, "5", '1', "1/10 seconds", "",
       "Reply timeout of keep-alive packets (0.1 to 3 s)."},
      {"data-integrity-alg", S::kNet, T::kString, 0, 0, "", '1', "", "",
       "Checksum over replicated data."},
      {"tcp-cork", S::kNet, T::kBool, 0, 0, "yes", '1', "", "", "Batch partial packets."},
      {"on-congestion", S::kNet, T::kEnum, 0, 0, "block", '1', "", "block|pull-ahead|disconnect",
       "Reaction to a full send queue."},
      {"congestion-fill", S::kNet, T::kNumber, 0, 20971520, "0", 's', "sectors", "",
       "Data in flight that triggers on-congestion (up to 10 GiB); 0 disables."},
      {"congestion-extents", S::kNet, T::kNumber, 7, 65536, "6001", '1', "extents", "",
       "Active bitmap extents that trigger on-congestion."},
      {"csums-alg", S::kNet, T::kString, 0, 0, "", '1', "", "", "Checksum-based resync."},
      {"csums-after-crash-only", S::kNet, T::kBool, 0, 0, "no", '1', "", "",
       "Use csums-alg only after a primary crash."},
      {"verify-alg", S::kNet, T::kString, 0, 0, "", '1', "", "", "Online verify hash."},
      {"use-rle", S::kNet, T::kBool, 0, 0, "yes", '1', "", "", "Run-length encode bitmaps."},
      {"socket-check-timeout", S::kNet, T::kNumber, 0, 300, "0", '1', "1/10 seconds", "",
       "Wait for a new connection to settle; 0 = ping-timeout."},
      {"fencing", S::kNet, T::kEnum, 0, 0, "dont-care", '1', "",
       "dont-care|resource-only|resource-and-stonith", "Fencing policy."},
      {"max-buffers", S::kNet, T::kNumber, 32, 131072, "2048", '1', "pages of 4 KiB", "",
       "Receive-side buffer limit per volume."},
      {"allow-remote-read", S::kNet, T::kBool, 0, 0, "yes", '1', "", "",
       "Serve reads from this peer."},
      // resource options
      {"cpu-mask", S::kResource, T::kString, 0, 0, "0", '1', "", "", "CPU affinity mask (hex)."},
      {"on-no-data-accessible", S::kResource, T::kEnum, 0, 0, "io-error", '1', "",
       "io-error|suspend-io", "I/O when no up-to-date data is reachable."},
      {"auto-promote", S::kResource, T::kBool, 0, 0, "yes", '1', "", "",
       "Promote on first writable open, demote on last close."},
      {"peer-ack-window", S::kResource, T::kNumber, 2048, 204800, "4096", 's', "sectors", "",
       "Data a primary sends before a peer-ack (default 2 MiB)."},
      {"peer-ack-delay", S::kResource, T::kNumber, 1, 10000, "100", '1', "milliseconds", "",
       "Idle time before a peer-ack is sent."},
      {"twopc-timeout", S::kResource, T::kNumber, 50, 600, "300", '1', "1/10 seconds", "",
       "Cluster-wide state change timeout."},
      {"twopc-retry-timeout", S::kResource, T::kNumber, 1, 50, "1", '1', "1/10 seconds", "",
       "Retry delay of a cluster-wide state change."},
      {"auto-promote-timeout", S::kResource, T::kNumber, 0, 600, "20", '1', "1/10 seconds", "",
       "How long auto-promote waits."},
      {"max-io-depth", S::kResource, T::kNumber, 4, kBig, "8000", '1', "requests", "",
       "Requests in flight per volume."},
      {"quorum", S::kResource, T::kNumberOrSymbol, 1, 32, "off", '1', "", "off|majority|all",
       "Quorum policy."},
      {"on-no-quorum", S::kResource, T::kEnum, 0, 0, "io-error", '1', "", "io-error|suspend-io",
       "I/O without quorum."},
      {"quorum-minimum-redundancy", S::kResource, T::kNumberOrSymbol, 1, 32, "off", '1', "",
       "off|majority|all", "Up-to-date copies needed for quorum."},
      {"on-suspended-primary-outdated", S::kResource, T::kEnum, 0, 0, "disconnect", '1', "",
       "disconnect|force-secondary", "Suspended primary that became outdated."},
      // startup
      {"wfc-timeout", S::kStartup, T::kNumber, 0, 1000000, "0", '1', "seconds", "",
       "Startup wait for peers; 0 = forever."},
      {"degr-wfc-timeout", S::kStartup, T::kNumber, 0, 1000000, "0", '1', "seconds", "",
       "Startup wait after a degraded shutdown."},
      {"outdated-wfc-timeout", S::kStartup, T::kNumber, 0, 1000000, "0", '1', "seconds", "",
       "Startup wait when all peers were outdated."},
      {"wait-after-sb", S::kStartup, T::kBool, 0, 0, "no", '1', "", "",
       "Keep waiting after a split brain."},
      {"stacked-timeouts", S::kStartup, T::kBool, 0, 0, "no", '1', "", "",
       "Use the wfc timeouts on stacked devices."},
      {"become-primary-on", S::kStartup, T::kString, 0, 0, "", '1', "", "",
       "Node(s) promoted at startup."},
  };
  for (std::string_view h :
       {"after-resync-target", "before-resync-target", "before-resync-source", "out-of-sync",
        "fence-peer", "unfence-peer", "initial-split-brain", "local-io-error", "pri-lost",
        "pri-lost-after-sb", "pri-on-incon-degr", "split-brain", "quorum-lost", "disconnected"}) {
    v.push_back({h, S::kHandlers, T::kString, 0, 0, "", '1', "", "", "Command run on this event."});
  }
  return v;
}

int64_t ScaleBytes(char c) {
  switch (c) {
    case 's': return 512;
    case 'k':
    case 'K': return 1024;
    case 'm':
    case 'M': return INT64_C(1) << 20;
    case 'g':
    case 'G': return INT64_C(1) << 30;
    default: return 1;
  }
}

size_t Distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

const std::vector<OptionDef>& AllOptions() {
  static const std::vector<OptionDef> table = MakeTable();
  return table;
}

const OptionDef* FindOption(OptSection section, std::string_view name) {
  for (const auto& d : AllOptions()) {
    if (d.section == section && d.name == name) return &d;
  }
  return nullptr;
}

Result<bool> ParseBool(std::string_view v) {
  if (v == "yes" || v == "on" || v == "true") return true;
  if (v == "no" || v == "off" || v == "false") return false;
  return Error(Errc::kInvalidArgument, "'{}' is not a boolean (yes or no)", v);
}

Result<int64_t> ParseNumber(const OptionDef& def, std::string_view value) {
  std::string_view digits = value;
  char suffix = 0;
  if (!digits.empty() && std::isalpha(static_cast<unsigned char>(digits.back()))) {
    suffix = digits.back();
    digits.remove_suffix(1);
  }
  bool negative = !digits.empty() && digits[0] == '-';
  std::string_view mag = negative ? digits.substr(1) : digits;
  uint64_t n = 0;
  auto [ptr, ec] = std::from_chars(mag.data(), mag.data() + mag.size(), n);
  if (mag.empty() || ec != std::errc() || ptr != mag.data() + mag.size() ||
      n > (UINT64_C(1) << 62)) {
    return Error(Errc::kInvalidArgument, "'{}' is not a number", value);
  }
  int64_t result = static_cast<int64_t>(n);
  if (suffix) {
    if (ScaleBytes(suffix) == 1) {
      return Error(Errc::kInvalidArgument, "unknown unit suffix '{}' in '{}' (use K, M, G or s)",
                   suffix, value);
    }
    if (def.scale == '1' && def.unit.find("second") != std::string_view::npos) {
      return Error(Errc::kInvalidArgument,
                   "wrong unit: suffix '{}' not allowed, the value is in {}", suffix, def.unit);
    }
    int64_t from = ScaleBytes(suffix);
    int64_t to = ScaleBytes(def.scale == 'b' ? '1' : def.scale);  // plain counts scale like bytes
    if (result > (INT64_C(1) << 62) / from) {
      return Error(Errc::kInvalidArgument, "'{}' is too large", value);
    }
    result = result * from / to;
  }
  if (negative) result = -result;
  if (result < def.min || result > def.max) {
    return Error(Errc::kInvalidArgument, "value {} out of range {}..{}{}", value, def.min, def.max,
                 def.unit.empty() ? std::string() : fmt::format(" ({})", def.unit));
  }
  return result;
}

Status ValidateValue(const OptionDef& def, std::string_view value) {
  auto in_choices = [&](std::string_view v) {
    std::string_view c = def.choices;
    while (!c.empty()) {
      auto bar = c.find('|');
      if (c.substr(0, bar) == v) return true;
      if (bar == std::string_view::npos) break;
      c.remove_prefix(bar + 1);
    }
    return false;
  };
  switch (def.type) {
    case OptType::kNumber: return ParseNumber(def, value).status();
    case OptType::kBool: return ParseBool(value).status();
    case OptType::kEnum:
      if (in_choices(value)) return Status::Ok();
      return Error(Errc::kInvalidArgument, "'{}' is not one of {}", value, def.choices);
    case OptType::kNumberOrSymbol:
      if (in_choices(value)) return Status::Ok();
      if (!value.empty() && std::isdigit(static_cast<unsigned char>(value[0]))) {
        return ParseNumber(def, value).status();
      }
      return Error(Errc::kInvalidArgument, "'{}' is neither a number nor one of {}", value,
                   def.choices);
    case OptType::kString:
      if (def.max > 0 && static_cast<int64_t>(value.size()) > def.max) {
        return Error(Errc::kInvalidArgument, "value is {} characters long, at most {} allowed",
                     value.size(), def.max);
      }
      return Status::Ok();
    case OptType::kFlag: return Status::Ok();
  }
  return Status::Ok();
}

std::string DidYouMean(std::string_view word, const std::vector<std::string_view>& candidates) {
  std::string best;
  size_t best_d = std::max<size_t>(3, word.size() / 3) + 1;
  for (auto c : candidates) {
    size_t d = Distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = std::string(c);
    }
  }
  return best;
}

}  // namespace bsr::config
