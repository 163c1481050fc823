#include "config/parser.h"

#include <glob.h>
#include <limits.h>
#include <stdlib.h>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace bsr::config {
namespace {

constexpr int kMaxDepth = 32;         // nesting of sections
constexpr int kMaxIncludeDepth = 16;  // nesting of include files

class Parser {
 public:
  Parser(const std::vector<Token>& toks) : toks_(toks) {}

  Result<std::vector<Statement>> ParseTop() {
    std::vector<Statement> out;
    while (Peek().kind != TokenKind::kEof) {
      BSR_ASSIGN_OR_RETURN(auto st, ParseStatement(0));
      out.push_back(std::move(st));
    }
    return out;
  }

 private:
  const Token& Peek() const { return toks_[pos_]; }
  const Token& Next() { return toks_[pos_ < toks_.size() - 1 ? pos_++ : pos_]; }

  static std::string Describe(const Token& t) {
    switch (t.kind) {
      case TokenKind::kEof: return "end of file";
      case TokenKind::kLBrace: return "'{'";
      case TokenKind::kRBrace: return "'}'";
      case TokenKind::kSemicolon: return "';'";
      case TokenKind::kString: return fmt::format("\"{}\"", t.text);
      default: return fmt::format("'{}'", t.text);
    }
  }

  Result<Statement> ParseStatement(int depth) {
    if (depth > kMaxDepth) {
      return Error(Errc::kInvalidArgument, "{}: sections nested too deeply", Peek().loc.ToString());
    }
    Statement st;
    const Token& first = Peek();
    if (first.kind != TokenKind::kWord) {
      return Error(Errc::kInvalidArgument, "{}: expected a keyword, got {}", first.loc.ToString(),
                   Describe(first));
    }
    st.loc = first.loc;
    while (Peek().kind == TokenKind::kWord || Peek().kind == TokenKind::kString) {
      const Token& t = Next();
      st.words.push_back(Word{t.text, t.kind == TokenKind::kString, t.loc});
    }
    const Token& end = Peek();
    if (end.kind == TokenKind::kSemicolon) {
      Next();
      return st;
    }
    if (end.kind == TokenKind::kLBrace) {
      Next();
      st.is_section = true;
      while (true) {
        const Token& t = Peek();
        if (t.kind == TokenKind::kRBrace) {
          Next();
          return st;
        }
        if (t.kind == TokenKind::kEof) {
          return Error(Errc::kInvalidArgument,
                       "{}: section '{}' is not closed (missing '}}' before end of file)",
                       st.loc.ToString(), Head(st));
        }
        BSR_ASSIGN_OR_RETURN(auto child, ParseStatement(depth + 1));
        st.body.push_back(std::move(child));
      }
    }
    if (end.kind == TokenKind::kEof) {
      return Error(Errc::kInvalidArgument, "{}: missing ';' after '{}'", end.loc.ToString(),
                   Head(st));
    }
    return Error(Errc::kInvalidArgument, "{}: expected ';' or '{{' after '{}', got {}",
                 end.loc.ToString(), Head(st), Describe(end));
  }

  static std::string Head(const Statement& st) {
    std::string s;
    for (size_t i = 0; i < st.words.size() && i < 3; ++i) {
      if (i) s += ' ';
      s += st.words[i].text;
    }
    return s;
  }

  const std::vector<Token>& toks_;
  size_t pos_ = 0;
};

// Removes `skip ...` statements at every level.
void DropSkipped(std::vector<Statement>& v) {
  v.erase(
      std::remove_if(v.begin(), v.end(), [](const Statement& s) { return s.keyword() == "skip"; }),
      v.end());
  for (auto& s : v) DropSkipped(s.body);
}

Status CheckNoNestedInclude(const std::vector<Statement>& v) {
  for (const auto& s : v) {
    if (s.keyword() == "include") {
      return Error(Errc::kInvalidArgument, "{}: 'include' is only allowed outside of sections",
                   s.loc.ToString());
    }
    BSR_RETURN_IF_ERROR(CheckNoNestedInclude(s.body));
  }
  return Status::Ok();
}

Result<std::vector<Statement>> ParseText(std::string_view file, std::string_view text) {
  BSR_ASSIGN_OR_RETURN(auto toks, Tokenize(file, text));
  Parser p(toks);
  BSR_ASSIGN_OR_RETURN(auto out, p.ParseTop());
  DropSkipped(out);
  for (const auto& s : out) BSR_RETURN_IF_ERROR(CheckNoNestedInclude(s.body));
  return out;
}

std::string DirName(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

bool HasGlobChars(const std::string& s) {
  return s.find_first_of("*?[") != std::string::npos;
}

Status Expand(const std::string& path, const FileAccess& fs, std::vector<std::string>& stack,
              std::vector<Statement>& out, const SourceLoc* from) {
  std::string canon = fs.canonical(path);
  if (std::find(stack.begin(), stack.end(), canon) != stack.end()) {
    return Error(Errc::kInvalidArgument,
                 "{}: include cycle: '{}' includes itself (directly or indirectly)",
                 from ? from->ToString() : path, path);
  }
  if (stack.size() >= kMaxIncludeDepth) {
    return Error(Errc::kInvalidArgument, "{}: includes nested too deeply",
                 from ? from->ToString() : path);
  }
  auto text = fs.read(path);
  if (!text.ok()) {
    if (from) return Error(Errc::kNotFound, "{}: {}", from->ToString(), text.status().message());
    return text.status();
  }
  BSR_ASSIGN_OR_RETURN(auto stmts, ParseText(path, *text));
  stack.push_back(canon);
  for (auto& st : stmts) {
    if (st.keyword() != "include") {
      out.push_back(std::move(st));
      continue;
    }
    if (st.is_section || st.words.size() != 2) {
      return Error(Errc::kInvalidArgument, "{}: expected 'include \"PATTERN\";'",
                   st.loc.ToString());
    }
    std::string pattern = st.words[1].text;
    if (pattern.empty() || pattern[0] != '/') pattern = DirName(path) + "/" + pattern;
    std::vector<std::string> files = fs.glob(pattern);
    if (files.empty() && !HasGlobChars(pattern)) {
      return Error(Errc::kNotFound, "{}: include file '{}' not found", st.words[1].loc.ToString(),
                   pattern);
    }
    for (const auto& f : files) BSR_RETURN_IF_ERROR(Expand(f, fs, stack, out, &st.words[1].loc));
  }
  stack.pop_back();
  return Status::Ok();
}

}  // namespace

FileAccess RealFileAccess() {
  FileAccess fs;
  fs.read = [](const std::string& path) -> Result<std::string> {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Error(Errc::kNotFound, "cannot open '{}'", path);
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) return Error(Errc::kIo, "cannot read '{}'", path);
    return ss.str();
  };
  fs.glob = [](const std::string& pattern) {
    std::vector<std::string> out;
    glob_t g{};
    if (::glob(pattern.c_str(), 0, nullptr, &g) == 0) {
      for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
    }
    globfree(&g);
    std::sort(out.begin(), out.end());
    return out;
  };
  fs.canonical = [](const std::string& path) {
    char buf[PATH_MAX];
    if (realpath(path.c_str(), buf)) return std::string(buf);
    return path;
  };
  return fs;
}

Result<std::vector<Statement>> ParseString(std::string_view file, std::string_view text) {
  BSR_ASSIGN_OR_RETURN(auto out, ParseText(file, text));
  for (const auto& s : out) {
    if (s.keyword() == "include") {
      return Error(Errc::kInvalidArgument, "{}: 'include' needs a file system (parsing a string)",
                   s.loc.ToString());
    }
  }
  return out;
}

Result<std::vector<Statement>> ParseFile(const std::string& path, const FileAccess& fs) {
  std::vector<Statement> out;
  std::vector<std::string> stack;
  BSR_RETURN_IF_ERROR(Expand(path, fs, stack, out, nullptr));
  return out;
}

}  // namespace bsr::config
