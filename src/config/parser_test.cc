#include "config/parser.h"

#include <gtest/gtest.h>

#include <fstream>

#include "common/temp_dir.h"

namespace bsr::config {
namespace {

TEST(ParserTest, StatementsAndSections) {
  auto st = ParseString("f", "global { usage-count no; }\nresource r0 { on a b { node-id 1; } }");
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  ASSERT_EQ(st->size(), 2u);
  EXPECT_TRUE((*st)[0].is_section);
  EXPECT_EQ((*st)[0].body[0].words.size(), 2u);
  const Statement& on = (*st)[1].body[0];
  EXPECT_EQ(on.words.size(), 3u);
  EXPECT_EQ(on.body[0].keyword(), "node-id");
}

TEST(ParserTest, SkipRemovesSectionsAtAnyDepth) {
  auto st = ParseString("f", "skip resource old { x; }\nresource r { skip net { a; } disk { } }");
  ASSERT_TRUE(st.ok());
  ASSERT_EQ(st->size(), 1u);
  ASSERT_EQ((*st)[0].body.size(), 1u);
  EXPECT_EQ((*st)[0].body[0].keyword(), "disk");
}

TEST(ParserTest, UnclosedSectionPointsAtItsStart) {
  auto st = ParseString("f.res", "\n  resource r0 {\n on a {}\n");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().message().rfind("f.res:2:3: section 'resource r0' is not closed", 0), 0u)
      << st.status().message();
}

TEST(ParserTest, MissingSemicolon) {
  auto st = ParseString("f", "global { usage-count no }");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.status().message().find("f:1:25: expected ';'"), std::string::npos)
      << st.status().message();
}

TEST(ParserTest, DeepNestingIsRefusedNotACrash) {
  std::string text;
  for (int i = 0; i < 5000; ++i) text += "a {";
  EXPECT_FALSE(ParseString("f", text).ok());
}

TEST(ParserTest, IncludeGlobRelativeToIncludingFileAndCycle) {
  TempDir dir;
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir.path() / name) << text;
  };
  std::filesystem::create_directories(dir.path() / "d");
  write("main.conf", "include \"d/*.res\";\nglobal { }");
  write("d/b.res", "resource b { }");
  write("d/a.res", "resource a { }");
  auto st = ParseFile((dir.path() / "main.conf").string(), RealFileAccess());
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  ASSERT_EQ(st->size(), 3u);
  EXPECT_EQ((*st)[0].words[1].text, "a");  // sorted glob order
  EXPECT_EQ((*st)[1].words[1].text, "b");
  EXPECT_NE((*st)[0].loc.file.find("d/a.res"), std::string::npos);

  write("loop.conf", "include \"loop2.conf\";");
  write("loop2.conf", "include \"loop.conf\";");
  auto loop = ParseFile((dir.path() / "loop.conf").string(), RealFileAccess());
  ASSERT_FALSE(loop.ok());
  EXPECT_NE(loop.status().message().find("include cycle"), std::string::npos);
  EXPECT_NE(loop.status().message().find("loop2.conf:1:9:"), std::string::npos)
      << loop.status().message();
}

TEST(ParserTest, IncludeOfMissingPlainFileFailsButEmptyGlobIsFine) {
  TempDir dir;
  std::ofstream(dir.path() / "a.conf") << "include \"none/*.res\";";
  EXPECT_TRUE(ParseFile((dir.path() / "a.conf").string(), RealFileAccess()).ok());
  std::ofstream(dir.path() / "b.conf") << "include \"missing.res\";";
  auto r = ParseFile((dir.path() / "b.conf").string(), RealFileAccess());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not found"), std::string::npos);
}

}  // namespace
}  // namespace bsr::config
