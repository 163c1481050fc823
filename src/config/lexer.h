// Tokenizer for the bsr/DRBD configuration language. Pure function of its input;
// used by the parser on whatever thread loads the configuration.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace bsr::config {

// Where something was written: file name as given, 1-based line and column.
struct SourceLoc {
  std::string file;
  int line = 0;
  int col = 0;

  std::string ToString() const;  // "FILE:LINE:COL"
};

enum class TokenKind { kWord, kString, kLBrace, kRBrace, kSemicolon, kEof };

struct Token {
  TokenKind kind = TokenKind::kEof;
  std::string text;  // word or unescaped string contents
  SourceLoc loc;
};

// Splits `text` (the contents of `file`) into tokens. Words run until whitespace or
// one of `{ } ; " #`; `#` starts a comment to the end of the line; strings are
// double-quoted with `\"` and `\\` escapes. The last token is always kEof.
// Errors (unterminated string, control characters) carry "FILE:LINE:COL: ..." text.
Result<std::vector<Token>> Tokenize(std::string_view file, std::string_view text);

}  // namespace bsr::config
