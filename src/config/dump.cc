#include "config/dump.h"

#include <fmt/format.h>

#include <algorithm>

namespace bsr::config {
namespace {

void Print(const Statement& st, int depth, std::string& out) {
  std::string indent(static_cast<size_t>(depth) * 4, ' ');
  out += indent;
  std::string head = QuoteWord(st.words[0].text);
  out += head;
  for (size_t i = 1; i < st.words.size(); ++i) {
    // Align parameter values in a column like drbdadm does; sections stay compact.
    if (i == 1 && !st.is_section && head.size() < 16) {
      out += std::string(17 - head.size(), ' ');
    } else {
      out += ' ';
    }
    out += QuoteWord(st.words[i].text);
  }
  if (!st.is_section) {
    out += ";\n";
    return;
  }
  out += " {\n";
  for (const auto& c : st.body) Print(c, depth + 1, out);
  out += indent + "}\n";
}

}  // namespace

std::string QuoteWord(const std::string& word) {
  bool needs = word.empty();
  for (char c : word) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '{' || c == '}' || c == ';' || c == '"' ||
        c == '#' || c == '\\' || c == '\r' || c == '\f' || c == '\v') {
      needs = true;
    }
  }
  if (!needs) return word;
  std::string q = "\"";
  for (char c : word) {
    if (c == '"' || c == '\\') q += '\\';
    if (c == '\n') {
      q += "\\n";
      continue;
    }
    if (c == '\t') {
      q += "\\t";
      continue;
    }
    q += c;
  }
  q += '"';
  return q;
}

std::string Dump(const Loaded& loaded) {
  std::string out;
  for (const auto& f : loaded.config.files) out += fmt::format("# {}\n", f);
  for (const auto& st : loaded.tree) {
    out += '\n';
    Print(st, 0, out);
  }
  return out;
}

std::string DumpResources(const Loaded& loaded, const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) {
    for (const auto& st : loaded.tree) {
      if (st.keyword() == "resource" && st.words.size() == 2 && st.words[1].text == name) {
        out += fmt::format("# resource {} defined at {}\n", name, st.loc.ToString());
        Print(st, 0, out);
        out += '\n';
      }
    }
  }
  return out;
}

}  // namespace bsr::config
