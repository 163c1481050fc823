// bsrsetup: low-level control of bsrd, one request per call; drbdsetup 9's
// command line (see `bsrsetup help`).
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "control/client.h"
#include "control/commands.h"
#include "control/status_format.h"
#include "replication/resource_state.h"

namespace {

int PrintStatus(const bsr::control::Request& req, const bsr::control::Reply& rep) {
  using bsr::control::StatusOptions;
  StatusOptions o{req.HasOpt("verbose"), req.HasOpt("statistics")};
  nlohmann::json json_out = nlohmann::json::array();
  for (const auto& j : rep.data) {
    auto st = bsr::control::FromJson(j);
    if (!st.ok()) {
      std::fprintf(stderr, "bsrsetup: %s\n", st.status().message().c_str());
      return 20;
    }
    if (req.HasOpt("json")) {
      json_out.push_back(bsr::control::StatusJson(*st));
    } else {
      std::fputs(bsr::control::FormatStatus(*st, o).c_str(), stdout);
    }
  }
  if (req.HasOpt("json")) std::printf("%s\n", json_out.dump(2).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket_flag, run_dir_flag;
  std::vector<std::string> rest;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto take = [&](const std::string& name, std::string* out) {
      if (a == name && i + 1 < argc) {
        *out = argv[++i];
        return true;
      }
      if (a.rfind(name + "=", 0) == 0) {
        *out = a.substr(name.size() + 1);
        return true;
      }
      return false;
    };
    if (rest.empty() && (take("--socket", &socket_flag) || take("--run-dir", &run_dir_flag))) {
      continue;
    }
    rest.push_back(a);
  }
  if (rest.empty() || rest[0] == "help" || rest[0] == "--help" || rest[0] == "-h") {
    std::fputs(bsr::control::Usage().c_str(), rest.empty() ? stderr : stdout);
    return rest.empty() ? 20 : 0;
  }
  auto req = bsr::control::ParseCommandLine(rest);
  if (!req.ok()) {
    std::fprintf(stderr, "bsrsetup: %s\n", req.status().message().c_str());
    return 20;
  }
  auto client =
      bsr::control::Client::Connect(bsr::control::ResolveSocketPath(socket_flag, run_dir_flag));
  if (!client.ok()) {
    std::fprintf(stderr, "bsrsetup: %s\n", client.status().message().c_str());
    return 20;
  }
  auto print_line = [](const std::string& line) {
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
    return true;
  };
  bsr::Result<bsr::control::Reply> rep =
      req->cmd == "events2" ? client->Stream(*req, print_line) : client->Call(*req);
  if (!rep.ok()) {
    std::fprintf(stderr, "bsrsetup: %s\n", rep.status().message().c_str());
    return 20;
  }
  if (!rep->ok()) {
    std::fprintf(stderr, "%s\n", rep->error.c_str());
    return rep->exit_code;
  }
  if (req->cmd == "status") return PrintStatus(*req, *rep);
  std::fputs(rep->output.c_str(), stdout);
  return 0;
}
