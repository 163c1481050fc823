// Parser for the configuration language: tokens -> a generic statement tree, with
// `include` expansion and `skip` removal. No meaning is attached here (builder.h
// does that). Pure apart from reading the files it is pointed at; one thread.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "config/lexer.h"

namespace bsr::config {

// One word of a statement. `quoted` words came from "..." strings.
struct Word {
  std::string text;
  bool quoted = false;
  SourceLoc loc;
};

// `kw arg...;` (a parameter) or `kw arg... { body }` (a section).
struct Statement {
  std::vector<Word> words;  // never empty
  bool is_section = false;
  std::vector<Statement> body;
  SourceLoc loc;  // of the first word

  const std::string& keyword() const { return words.front().text; }
};

// How the parser reaches files; replaced in tests and by the fuzzer.
struct FileAccess {
  // Reads a whole file, or returns an error naming it.
  std::function<Result<std::string>(const std::string& path)> read;
  // Expands a glob pattern into the sorted list of matching paths.
  std::function<std::vector<std::string>(const std::string& pattern)> glob;
  // Canonical identity of a file (realpath) for include-cycle detection.
  std::function<std::string(const std::string& path)> canonical;
};

FileAccess RealFileAccess();

// Parses one buffer. Includes are refused (there is no file system behind it).
Result<std::vector<Statement>> ParseString(std::string_view file, std::string_view text);

// Parses `path` and everything it includes, in order.
Result<std::vector<Statement>> ParseFile(const std::string& path, const FileAccess& fs);

}  // namespace bsr::config
