#include "config/lexer.h"

#include <gtest/gtest.h>

namespace bsr::config {
namespace {

TEST(LexerTest, WordsStringsPunctuationAndPositions) {
  auto toks = Tokenize("f.res", "resource r0 {\n  net { shared-secret \"a b\\\"c\"; } # note\n}");
  ASSERT_TRUE(toks.ok()) << toks.status().ToString();
  std::vector<std::string> texts;
  for (const auto& t : *toks) texts.push_back(t.text);
  EXPECT_EQ(texts, (std::vector<std::string>{"resource", "r0", "{", "net", "{", "shared-secret",
                                             "a b\"c", ";", "}", "}", ""}));
  EXPECT_EQ((*toks)[6].kind, TokenKind::kString);
  EXPECT_EQ((*toks)[3].loc.line, 2);
  EXPECT_EQ((*toks)[3].loc.col, 3);
  EXPECT_EQ((*toks)[9].loc.line, 3);
  EXPECT_EQ(toks->back().kind, TokenKind::kEof);
}

TEST(LexerTest, HashInsideWordIsNotComment) {
  auto toks = Tokenize("f", "secret ab#cd;");
  ASSERT_TRUE(toks.ok());
  EXPECT_EQ((*toks)[1].text, "ab#cd");
}

TEST(LexerTest, UnterminatedStringReportsItsStart) {
  auto toks = Tokenize("x.res", "a\n  \"abc");
  ASSERT_FALSE(toks.ok());
  EXPECT_EQ(toks.status().message().rfind("x.res:2:3: unterminated string", 0), 0u)
      << toks.status().message();
}

TEST(LexerTest, NulByteIsAnError) {
  std::string text = "a ";
  text.push_back('\0');
  EXPECT_FALSE(Tokenize("f", text).ok());
}

}  // namespace
}  // namespace bsr::config
