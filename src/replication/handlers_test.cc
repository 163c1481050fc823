// HandlerRunner: runs a real helper script and checks its arguments, environment
// and exit code.
#include "replication/handlers.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "common/temp_dir.h"

namespace bsr::replication {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(HandlerRunner, RunsHelperWithArgumentsAndEnvironment) {
  TempDir dir;
  std::string script = dir / "helper.sh";
  std::string out = dir / "out";
  {
    std::ofstream f(script);
    f << "#!/bin/sh\necho \"$1 $2 $BSR_RESOURCE $BSR_VOLUME $BSR_MINOR $BSR_PEER_NODE_ID "
         "$BSR_MY_NODE_ID $BSR_X\" > "
      << out << "\nexit 7\n";
  }
  ASSERT_EQ(chmod(script.c_str(), 0755), 0);
  asio::io_context io;
  HandlerRunner runner(io, script);
  HandlerCall call{.handler = "local-io-error",
                   .resource = "r0",
                   .my_node_id = 1,
                   .volume = 0,
                   .minor = 3,
                   .peer_node_id = 2,
                   .extra_env = {{"BSR_X", "x"}}};
  int code = -100;
  runner.Run(call, [&](int c) { code = c; });
  EXPECT_EQ(runner.running(), 1);
  io.run();
  EXPECT_EQ(code, 7);
  EXPECT_EQ(runner.running(), 0);
  EXPECT_EQ(ReadAll(out), "local-io-error r0 r0 0 3 2 1 x\n");
}

TEST(HandlerRunner, MissingHelperReportsMinusOne) {
  asio::io_context io;
  HandlerRunner runner(io, "/nonexistent/bsr-helper");
  int code = 0;
  runner.Run({.handler = "split-brain", .resource = "r0"}, [&](int c) { code = c; });
  io.run();
  EXPECT_EQ(code, -1);
}

TEST(HandlerRunner, EmptyHelperRunsNothing) {
  asio::io_context io;
  HandlerRunner runner(io, "");
  int code = 0;
  runner.Run({.handler = "split-brain", .resource = "r0"}, [&](int c) { code = c; });
  io.run();
  EXPECT_EQ(code, -1);
}

TEST(HandlerEnvironment, OnlyKnownFieldsAreSet) {
  auto env = HandlerEnvironment({.handler = "split-brain", .resource = "r9"});
  bool res = false, vol = false;
  for (auto& e : env) {
    if (e == "BSR_RESOURCE=r9") res = true;
    if (e.rfind("BSR_VOLUME=", 0) == 0) vol = true;
  }
  EXPECT_TRUE(res);
  EXPECT_FALSE(vol);
}

}  // namespace
}  // namespace bsr::replication
