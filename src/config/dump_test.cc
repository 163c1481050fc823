#include "config/dump.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace bsr::config {
namespace {

const char* kConfig = R"(
global { usage-count no; }
common { net { protocol C; } handlers { split-brain "echo \"hi there\""; } }
resource r0 { protocol A; syncer { rate 10M; }
  options { auto-promote no; }
  volume 0 { device /dev/drbd1; disk /dev/a; meta-disk /dev/m[0]; }
  volume 1 { device minor 2; disk /dev/b; meta-disk internal; disk { al-extents 100; } }
  on alice { address 10.1.1.1:7000; }
  on bob { address ipv6 [fd00::2]:7000; }
}
resource r1 { device minor 9; disk none;
  on alice { node-id 3; address 10.1.1.1:7001; }
  on bob { node-id 4; address 10.1.1.2:7001; }
  on carol { node-id 5; address 10.1.1.3:7001; }
  connection x { host alice; host bob port 7009; }
  connection { path { host alice address 192.168.0.1:7100; host carol address 192.168.0.3:7100; } }
  connection-mesh { hosts bob carol; }
}
)";

TEST(DumpTest, RoundTripGivesTheSameModelAndText) {
  auto first = LoadString("a.res", kConfig);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  std::string text = Dump(*first);
  auto second = LoadString("b.res", text);
  ASSERT_TRUE(second.ok()) << second.status().ToString() << "\n" << text;
  EXPECT_EQ(first->config, second->config);
  std::string again = Dump(*second);
  EXPECT_EQ(text.substr(text.find('\n')), again.substr(again.find('\n')));
}

TEST(DumpTest, CanonicalFormsAreExplicit) {
  auto l = LoadString("a.res", kConfig);
  ASSERT_TRUE(l.ok());
  std::string text = Dump(*l);
  EXPECT_NE(text.find("device           /dev/drbd1 minor 1;"), std::string::npos) << text;
  EXPECT_NE(text.find("address          ipv4 10.1.1.1:7000;"), std::string::npos) << text;
  EXPECT_NE(text.find("address          ipv6 [fd00::2]:7000;"), std::string::npos) << text;
  EXPECT_NE(text.find("meta-disk        /dev/m [0];"), std::string::npos) << text;
  EXPECT_NE(text.find("node-id          0;"), std::string::npos) << text;    // assigned
  EXPECT_NE(text.find("protocol         A;"), std::string::npos) << text;    // moved into net
  EXPECT_NE(text.find("resync-rate      10M;"), std::string::npos) << text;  // from syncer
  EXPECT_EQ(text.find("syncer"), std::string::npos) << text;
  EXPECT_NE(text.find("split-brain      \"echo \\\"hi there\\\"\";"), std::string::npos) << text;
}

// Every config of the differential corpus dumps to text that loads to the same model.
TEST(DumpTest, CorpusRoundTrips) {
  std::filesystem::path dir = std::filesystem::path(BSR_SOURCE_DIR) / "tests/config/corpus";
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".res") continue;
    auto first = LoadFile(e.path().string());
    ASSERT_TRUE(first.ok()) << e.path() << ": " << first.status().ToString();
    std::string text = Dump(*first);
    auto second = LoadString("again.res", text);
    ASSERT_TRUE(second.ok()) << e.path() << ": " << second.status().ToString();
    EXPECT_EQ(first->config, second->config) << e.path();
    ++n;
  }
  EXPECT_GE(n, 30);
}

TEST(DumpTest, SingleResource) {
  auto l = LoadString("a.res", kConfig);
  ASSERT_TRUE(l.ok());
  std::string text = DumpResources(*l, {"r1"});
  EXPECT_NE(text.find("resource r1 {"), std::string::npos);
  EXPECT_EQ(text.find("resource r0"), std::string::npos);
  EXPECT_EQ(QuoteWord("a b"), "\"a b\"");
  EXPECT_EQ(QuoteWord(""), "\"\"");
  EXPECT_EQ(QuoteWord("/dev/x"), "/dev/x");
}

}  // namespace
}  // namespace bsr::config
