#include "config/lexer.h"

#include <fmt/format.h>

namespace bsr::config {

std::string SourceLoc::ToString() const {
  return fmt::format("{}:{}:{}", file, line, col);
}

namespace {

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

bool IsWordChar(char c) {
  return !IsSpace(c) && c != '{' && c != '}' && c != ';' && c != '"' && c != '\0';
}

}  // namespace

Result<std::vector<Token>> Tokenize(std::string_view file, std::string_view text) {
  std::vector<Token> out;
  int line = 1;
  int col = 1;
  size_t i = 0;
  auto advance = [&](size_t n) {
    for (size_t k = 0; k < n && i < text.size(); ++k, ++i) {
      if (text[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
  };
  auto loc_here = [&] { return SourceLoc{std::string(file), line, col}; };
  while (i < text.size()) {
    char c = text[i];
    if (IsSpace(c)) {
      advance(1);
      continue;
    }
    if (c == '#') {
      while (i < text.size() && text[i] != '\n') advance(1);
      continue;
    }
    Token tok;
    tok.loc = loc_here();
    if (c == '{' || c == '}' || c == ';') {
      tok.kind = c == '{'   ? TokenKind::kLBrace
                 : c == '}' ? TokenKind::kRBrace
                            : TokenKind::kSemicolon;
      tok.text = std::string(1, c);
      advance(1);
      out.push_back(std::move(tok));
      continue;
    }
    if (c == '"') {
      tok.kind = TokenKind::kString;
      advance(1);
      bool closed = false;
      while (i < text.size()) {
        char d = text[i];
        if (d == '"') {
          advance(1);
          closed = true;
          break;
        }
        if (d == '\\' && i + 1 < text.size()) {
          char e = text[i + 1];
          tok.text.push_back(e == 'n' ? '\n' : e == 't' ? '\t' : e);
          advance(2);
          continue;
        }
        if (d == '\0') break;
        tok.text.push_back(d);
        advance(1);
      }
      if (!closed) {
        return Error(Errc::kInvalidArgument, "{}: unterminated string (missing closing '\"')",
                     tok.loc.ToString());
      }
      out.push_back(std::move(tok));
      continue;
    }
    if (c == '\0') {
      return Error(Errc::kInvalidArgument, "{}: NUL character in configuration",
                   tok.loc.ToString());
    }
    tok.kind = TokenKind::kWord;
    while (i < text.size() && IsWordChar(text[i])) {
      tok.text.push_back(text[i]);
      advance(1);
    }
    out.push_back(std::move(tok));
  }
  Token eof;
  eof.kind = TokenKind::kEof;
  eof.loc = loc_here();
  out.push_back(std::move(eof));
  return out;
}

}  // namespace bsr::config
