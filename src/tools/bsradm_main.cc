// bsradm: high-level admin. Reads the configuration, plans the bsrsetup / bsrmeta
// calls for a command (config/adm_plan.h) and prints (-d) or runs them in order.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "config/adm_adjust.h"
#include "config/adm_handler.h"
#include "config/adm_plan.h"
#include "config/config.h"
#include "config/dump.h"
#include "config/host_env.h"

namespace {

using namespace bsr::config;

constexpr int kExitUsage = 1;
constexpr int kExitConfig = 10;
constexpr int kExitNoTool = 20;

void Usage(FILE* f) {
  std::fprintf(
      f,
      "usage: bsradm [-c FILE] [-d] [--node NAME] [-- BSRSETUP-OPTION...] COMMAND [--force]\n"
      "              [OPTION...] {RESOURCE[/VOLUME]...|all}\n"
      "  OPTION: the bsrsetup options drbdadm passes on (connect/adjust --discard-my-data,\n"
      "  --tentative; verify --start=, --stop=; invalidate --reset-bitmap=; new-current-uuid\n"
      "  --clear-bitmap; resize --size=; attach DISK-OPTION); after -- any, unchecked\n"
      "  -c, --config-file FILE  configuration (default $BSR_CONFIG, else /etc/bsr.conf,\n"
      "                          else /etc/bsr.d/*.res)\n"
      "  -d, --dry-run           print the bsrsetup/bsrmeta calls instead of running them\n"
      "  -n, --node NAME         act as node NAME (also $BSR_NODE); skips IP verification\n"
      "commands: up down adjust attach detach connect disconnect primary secondary\n"
      "  create-md dump-md apply-al wipe-md show-gi get-gi invalidate invalidate-remote\n"
      "  pause-sync resume-sync outdate verify resize suspend-io resume-io status\n"
      "  new-current-uuid dump sh-resources sh-resource sh-dev sh-ll-dev sh-md-dev sh-md-idx\n"
      "  sh-minor sh-ip\n"
      "handlers (run the configured command with /bin/sh -c, as bsrd's usermode helper):\n"
      "  local-io-error split-brain initial-split-brain pri-lost pri-lost-after-sb\n"
      "  pri-on-incon-degr fence-peer unfence-peer before-resync-target after-resync-target\n"
      "  before-resync-source out-of-sync quorum-lost disconnected\n"
      "adjust asks a running bsrd (bsrsetup show --json) and plans only the differences;\n"
      "  with no bsrd to ask it plans like up\n");
}

bool IsExecutable(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// bsrsetup / bsrmeta next to our own binary, else on PATH; "" when missing.
std::string FindTool(const std::string& name, std::string* looked) {
  char self[4096];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  std::string dir;
  if (n > 0) {
    self[n] = '\0';
    dir = self;
    dir = dir.substr(0, dir.rfind('/'));
    std::string p = dir + "/" + name;
    if (IsExecutable(p)) return p;
  }
  *looked = dir.empty() ? "PATH" : dir + " and PATH";
  const char* path = std::getenv("PATH");
  std::string all = path ? path : "/usr/sbin:/usr/bin:/sbin:/bin";
  size_t start = 0;
  while (start <= all.size()) {
    size_t end = all.find(':', start);
    if (end == std::string::npos) end = all.size();
    std::string d = all.substr(start, end - start);
    if (!d.empty() && IsExecutable(d + "/" + name)) return d + "/" + name;
    start = end + 1;
  }
  return "";
}

int RunStep(const std::string& tool, const PlanStep& step) {
  std::vector<char*> argv;
  std::vector<std::string> words = step.argv;
  words[0] = tool;
  for (auto& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  std::fflush(stdout);
  pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("bsradm: fork");
    return kExitNoTool;
  }
  if (pid == 0) {
    ::execv(tool.c_str(), argv.data());
    std::fprintf(stderr, "bsradm: cannot run %s: %s\n", tool.c_str(), std::strerror(errno));
    _exit(kExitNoTool);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

// -c FILE, else $BSR_CONFIG (bsrd runs handlers without -c), else /etc/bsr.conf, else
// the resource files in /etc/bsr.d/ on their own.
bsr::Result<Loaded> LoadConfiguration(const std::string& file) {
  if (!file.empty()) return LoadFile(file);
  if (const char* env = std::getenv("BSR_CONFIG"); env && *env) return LoadFile(env);
  const std::string kMain = "/etc/bsr.conf";
  if (::access(kMain.c_str(), F_OK) == 0) return LoadFile(kMain);
  FileAccess fs = RealFileAccess();
  if (fs.glob("/etc/bsr.d/*.res").empty()) {
    return bsr::Error(bsr::Errc::kNotFound,
                      "bsradm: no configuration: {} does not exist and /etc/bsr.d/ has no "
                      "*.res files (use -c FILE)",
                      kMain);
  }
  auto real_read = fs.read;
  fs.read = [real_read](const std::string& path) -> bsr::Result<std::string> {
    if (path == "/etc/bsr.d/(default)") return std::string("include \"*.res\";\n");
    return real_read(path);
  };
  return LoadFile("/etc/bsr.d/(default)", fs);
}

// A resource with `floating` sections is matched by address: when no `on` section
// is this node, the floating host whose IP exists here is the local one.
std::string NodeFor(const Config& cfg, const std::string& target, const std::string& node,
                    bool named) {
  if (named || target == "all") return node;
  const Resource* r = cfg.FindResource(target.substr(0, target.find('/')));
  if (!r || LocalHost(*r, node).ok()) return node;
  std::vector<std::string> mine = HostAddresses();
  for (const auto& h : r->hosts) {
    if (h.floating && h.address &&
        std::find(mine.begin(), mine.end(), h.address->ip) != mine.end()) {
      return h.address->ip;
    }
  }
  return node;
}

int Run(const std::vector<PlanStep>& steps) {
  // Every tool must exist before the first step runs: a missing bsrsetup changes nothing.
  std::string setup_path, meta_path, looked;
  for (const auto& s : steps) {
    std::string& slot = s.argv[0] == "bsrsetup" ? setup_path : meta_path;
    if (!slot.empty()) continue;
    slot = FindTool(s.argv[0], &looked);
    if (slot.empty()) {
      std::fprintf(stderr, "bsradm: %s not found (looked in %s); nothing was run\n",
                   s.argv[0].c_str(), looked.c_str());
      return kExitNoTool;
    }
  }
  int last = 0;
  for (size_t i = 0; i < steps.size(); ++i) {
    const PlanStep& s = steps[i];
    if (s.only_if_previous_failed && last == 0) continue;
    bool has_fallback = i + 1 < steps.size() && steps[i + 1].only_if_previous_failed;
    last = RunStep(s.argv[0] == "bsrsetup" ? setup_path : meta_path, s);
    if (last != 0 && !has_fallback) {
      std::fprintf(stderr, "bsradm: '%s' failed with exit code %d\n", FormatStep(s).c_str(), last);
      return last;
    }
  }
  return 0;
}

// Runs `tool args...`, collecting its stdout and stderr; returns its exit status.
int Capture(const std::string& tool, const std::vector<std::string>& args, std::string* out,
            std::string* err) {
  int po[2], pe[2];
  if (::pipe2(po, O_CLOEXEC) != 0) return kExitNoTool;
  if (::pipe2(pe, O_CLOEXEC) != 0) {
    ::close(po[0]);
    ::close(po[1]);
    return kExitNoTool;
  }
  std::vector<std::string> words = {tool};
  words.insert(words.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  std::fflush(stdout);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(po[1], 1);
    ::dup2(pe[1], 2);
    ::execv(tool.c_str(), argv.data());
    _exit(kExitNoTool);
  }
  ::close(po[1]);
  ::close(pe[1]);
  if (pid < 0) {
    ::close(po[0]);
    ::close(pe[0]);
    return kExitNoTool;
  }
  // stderr is drained after stdout; bsrsetup writes at most a line or two there.
  for (auto [fd, dst] : {std::pair{po[0], out}, std::pair{pe[0], err}}) {
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
      if (n > 0) dst->append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// What the local bsrd runs (`bsrsetup show --json`). Sets *no_daemon and returns an
// empty list when there is no bsrd (or no bsrsetup) to ask.
bsr::Result<std::vector<RunningResource>> AskDaemon(bool* no_daemon) {
  *no_daemon = false;
  std::string looked;
  std::string setup = FindTool("bsrsetup", &looked);
  if (setup.empty()) {
    *no_daemon = true;
    return std::vector<RunningResource>{};
  }
  std::string out, err;
  int rc = Capture(setup, {"show", "--json"}, &out, &err);
  if (rc != 0) {
    if (err.find("cannot reach bsrd") != std::string::npos) {
      *no_daemon = true;
      return std::vector<RunningResource>{};
    }
    while (!err.empty() && err.back() == '\n') err.pop_back();
    return bsr::Error(bsr::Errc::kIo, "bsrsetup show --json failed (exit {}): {}", rc, err);
  }
  return ParseRunning(out);
}

// `bsradm HANDLER RES`: runs the configured command with /bin/sh -c in this process's
// environment (bsrd's BSR_* variables pass through); exits with its status.
int RunHandler(const Config& cfg, const std::string& handler,
               const std::vector<std::string>& targets, bool dry_run, const std::string& node) {
  if (targets.size() != 1) {
    std::fprintf(stderr, "bsradm: %s needs exactly one resource name\n", handler.c_str());
    return kExitUsage;
  }
  auto cmd = HandlerCommand(cfg, targets[0], handler);
  if (!cmd.ok()) {
    std::fprintf(stderr, "bsradm: %s\n", cmd.status().message().c_str());
    return kExitConfig;
  }
  if (cmd->empty()) return 0;  // no handler configured: nothing to do, as drbdadm
  if (dry_run) {
    std::printf("%s\n", cmd->c_str());
    return 0;
  }
  std::string conf = cfg.files.empty() || cfg.files[0].find("(default)") != std::string::npos
                         ? std::string()
                         : cfg.files[0];
  for (const auto& [k, v] : HandlerEnvironment(cfg, targets[0], node, conf,
                                               [](const char* k) { return std::getenv(k); })) {
    ::setenv(k.c_str(), v.c_str(), 0);
  }
  std::fflush(stdout);
  ::execl("/bin/sh", "sh", "-c", cmd->c_str(), static_cast<char*>(nullptr));
  std::fprintf(stderr, "bsradm: cannot run /bin/sh for the %s handler: %s\n", handler.c_str(),
               std::strerror(errno));
  return kExitNoTool;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_file;
  std::string node_opt;
  bool dry_run = false;
  bool force = false;
  std::string command;
  std::vector<std::string> targets;
  std::vector<std::string> candidates;   // drbdsetup options, checked once the command is known
  std::vector<std::string> passthrough;  // after "--": passed on unchecked, as drbdadm does
  bool after_dashes = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--" && !after_dashes) {
      after_dashes = true;
      continue;
    }
    if (after_dashes && a.rfind("--", 0) == 0) {
      passthrough.push_back(a);
      continue;
    }
    auto value = [&](const char* opt) -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bsradm: %s needs a value\n", opt);
        std::exit(kExitUsage);
      }
      return argv[++i];
    };
    if (a == "-c" || a == "--config-file") {
      config_file = value("-c");
    } else if (a.rfind("--config-file=", 0) == 0) {
      config_file = a.substr(14);
    } else if (a == "-d" || a == "--dry-run") {
      dry_run = true;
    } else if (a == "-n" || a == "--node") {
      node_opt = value("--node");
    } else if (a.rfind("--node=", 0) == 0) {
      node_opt = a.substr(7);
    } else if (a == "--force") {
      force = true;
    } else if (a == "-h" || a == "--help" || a == "help") {
      Usage(stdout);
      return 0;
    } else if (a.rfind("--", 0) == 0 && a.size() > 2) {
      candidates.push_back(a);
    } else if (!a.empty() && a[0] == '-') {
      std::fprintf(stderr, "bsradm: unknown option '%s'\n", a.c_str());
      Usage(stderr);
      return kExitUsage;
    } else if (command.empty()) {
      command = a;
    } else {
      targets.push_back(a);
    }
  }
  if (command.empty()) {
    Usage(stderr);
    return kExitUsage;
  }
  bool known = command == "dump" || IsShCommand(command) || IsPlannedCommand(command) ||
               IsHandlerName(command);
  if (!known) {
    std::fprintf(stderr, "bsradm: unknown command '%s'\n", command.c_str());
    Usage(stderr);
    return kExitUsage;
  }
  for (const auto& c : candidates) {
    if (!IsPassthroughOption(command, c)) {
      std::fprintf(stderr, "bsradm: unknown option '%s' for %s\n", c.c_str(), command.c_str());
      Usage(stderr);
      return kExitUsage;
    }
    passthrough.push_back(c);
  }
  auto loaded = LoadConfiguration(config_file);
  const char* env_config = std::getenv("BSR_CONFIG");
  if (!loaded.ok() && IsHandlerName(command) && config_file.empty() &&
      !(env_config && *env_config) && loaded.status().code() == bsr::Errc::kNotFound) {
    // bsrd calls handlers through bsradm even when it is driven by bsrsetup alone: with
    // no configuration anywhere there is no handler to run, as for an unset one.
    std::fprintf(stderr, "bsradm: no configuration, handler %s not run\n", command.c_str());
    return 0;
  }
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s\n", loaded.status().message().c_str());
    return kExitConfig;
  }
  const Config& cfg = loaded->config;
  if (IsHandlerName(command)) {
    bool named_node = false;
    return RunHandler(cfg, command, targets, dry_run, PickNodeName(node_opt, &named_node));
  }
  if (command == "dump") {
    bool all = targets.empty() || (targets.size() == 1 && targets[0] == "all");
    if (!all) {
      for (const auto& t : targets) {
        if (!cfg.FindResource(t)) {
          std::fprintf(stderr, "bsradm: '%s' not defined in your config\n", t.c_str());
          return kExitConfig;
        }
      }
    }
    std::string out = all ? Dump(*loaded) : DumpResources(*loaded, targets);
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
  }
  bool named = false;
  std::string node = PickNodeName(node_opt, &named);
  if (command == "sh-resources" || command == "sh-nop") {
    auto r = ShQuery(cfg, node, command, "");
    if (!r.ok()) {
      std::fprintf(stderr, "bsradm: %s\n", r.status().message().c_str());
      return kExitConfig;
    }
    if (!r->empty()) std::printf("%s\n", r->c_str());
    return 0;
  }
  if (targets.empty()) {
    std::fprintf(stderr, "bsradm: %s needs a resource name (or 'all')\n", command.c_str());
    return kExitUsage;
  }
  std::vector<PlanStep> steps;
  std::vector<std::string> res_names;
  // adjust diffs against what the local bsrd runs; without one it plans like up.
  bool no_daemon = true;
  std::vector<RunningResource> running;
  if (command == "adjust") {
    auto r = AskDaemon(&no_daemon);
    if (!r.ok()) {
      std::fprintf(stderr, "bsradm: %s\n", r.status().message().c_str());
      return kExitNoTool;
    }
    running = std::move(*r);
  }
  for (const auto& t : targets) {
    if (IsShCommand(command)) {
      auto r = ShQuery(cfg, NodeFor(cfg, t, node, named), command, t);
      if (!r.ok()) {
        std::fprintf(stderr, "bsradm: %s\n", r.status().message().c_str());
        return kExitConfig;
      }
      if (!r->empty()) std::printf("%s\n", r->c_str());
      continue;
    }
    auto plan = command == "adjust" && !no_daemon
                    ? PlanAdjust(cfg, NodeFor(cfg, t, node, named), t, running,
                                 PlanFlags{force, passthrough})
                    : PlanCommand(cfg, NodeFor(cfg, t, node, named), command, t,
                                  PlanFlags{force, passthrough});
    if (!plan.ok()) {
      std::fprintf(stderr, "bsradm: %s\n", plan.status().message().c_str());
      return kExitConfig;
    }
    steps.insert(steps.end(), plan->begin(), plan->end());
    res_names.push_back(t == "all" ? "" : t.substr(0, t.find('/')));
  }
  if (IsShCommand(command)) return 0;
  if (!named && !cfg.global.disable_ip_verification()) {
    std::vector<std::string> check;
    for (const auto& n : res_names) {
      if (!n.empty()) check.push_back(n);
    }
    if (std::find(res_names.begin(), res_names.end(), "") != res_names.end()) {
      for (const auto& r : cfg.resources) check.push_back(r.name);
    }
    bsr::Status s = VerifyLocalAddresses(cfg, check, node, HostAddresses());
    if (!s.ok()) {
      std::fprintf(stderr, "%s\n", s.message().c_str());
      return kExitConfig;
    }
  }
  if (dry_run) {
    for (const auto& s : steps) std::printf("%s\n", FormatStep(s).c_str());
    return 0;
  }
  return Run(steps);
}
