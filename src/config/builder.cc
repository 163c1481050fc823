// AST -> model: top level, common, legacy (DRBD 8.x) rewrites and the checks that
// span resources. The per-resource work is in builder_resource.cc.
#include <algorithm>
#include <map>
#include <set>

#include "config/builder_util.h"
#include "config/config.h"

namespace bsr::config {

void Diagnostics::Add(const SourceLoc& loc, std::string message) {
  lines_.push_back(fmt::format("{}: {}", loc.ToString(), message));
}

Status Diagnostics::ToStatus() const {
  if (lines_.empty()) return Status::Ok();
  std::string all;
  for (const auto& l : lines_) {
    if (!all.empty()) all += '\n';
    all += l;
  }
  return Status(Errc::kInvalidArgument, all);
}

namespace internal {

namespace {

Statement& SectionFor(std::vector<Statement>& body, size_t at, const std::string& name,
                      const SourceLoc& loc) {
  for (auto& s : body) {
    if (s.is_section && s.keyword() == name && s.words.size() == 1) return s;
  }
  Statement s;
  s.words.push_back(Word{name, false, loc});
  s.is_section = true;
  s.loc = loc;
  body.insert(body.begin() + static_cast<long>(std::min(at, body.size())), std::move(s));
  for (auto& t : body) {
    if (t.is_section && t.keyword() == name && t.words.size() == 1) return t;
  }
  return body.front();
}

// DRBD 8.x forms inside resource/common: `protocol C;` and `syncer { ... }`.
void RewriteLegacy(std::vector<Statement>& body) {
  static const std::map<std::string, std::pair<std::string, std::string>> kSyncer = {
      {"rate", {"disk", "resync-rate"}},
      {"after", {"disk", "resync-after"}},
      {"al-extents", {"disk", "al-extents"}},
      {"c-plan-ahead", {"disk", "c-plan-ahead"}},
      {"c-delay-target", {"disk", "c-delay-target"}},
      {"c-fill-target", {"disk", "c-fill-target"}},
      {"c-max-rate", {"disk", "c-max-rate"}},
      {"c-min-rate", {"disk", "c-min-rate"}},
      {"verify-alg", {"net", "verify-alg"}},
      {"csums-alg", {"net", "csums-alg"}},
      {"use-rle", {"net", "use-rle"}},
      {"data-integrity-alg", {"net", "data-integrity-alg"}},
      {"cpu-mask", {"options", "cpu-mask"}},
      {"on-no-data-accessible", {"options", "on-no-data-accessible"}},
  };
  for (size_t i = 0; i < body.size();) {
    Statement& st = body[i];
    if (!st.is_section && st.keyword() == "protocol") {
      Statement moved = std::move(st);
      body.erase(body.begin() + static_cast<long>(i));
      Statement& net = SectionFor(body, i, "net", moved.loc);
      net.body.insert(net.body.begin(), std::move(moved));
      continue;
    }
    if (st.is_section && st.keyword() == "syncer") {
      Statement syncer = std::move(st);
      body.erase(body.begin() + static_cast<long>(i));
      for (auto& p : syncer.body) {
        auto it = kSyncer.find(p.keyword());
        std::string section = it == kSyncer.end() ? "disk" : it->second.first;
        if (it != kSyncer.end()) p.words[0].text = it->second.second;
        Statement& target = SectionFor(body, i, section, syncer.loc);
        target.body.push_back(std::move(p));
      }
      continue;
    }
    ++i;
  }
}

void ReadCommon(Statement& st, CommonSpec& c, Diagnostics& d) {
  static const std::vector<std::string_view> kKnown = {"disk", "net", "options", "startup",
                                                       "handlers"};
  for (auto& s : st.body) {
    const std::string& kw = s.keyword();
    if (!s.is_section) {
      UnknownKeyword(s.words[0], "common", kKnown, d);
      continue;
    }
    if (kw == "disk") {
      ReadOptions(s, OptSection::kDisk, c.disk, &c.pd, d);
    } else if (kw == "net") {
      ReadOptions(s, OptSection::kNet, c.net, nullptr, d);
    } else if (kw == "options") {
      ReadOptions(s, OptSection::kResource, c.options, nullptr, d);
    } else if (kw == "startup") {
      ReadOptions(s, OptSection::kStartup, c.startup, nullptr, d);
    } else if (kw == "handlers") {
      ReadOptions(s, OptSection::kHandlers, c.handlers, nullptr, d);
    } else {
      UnknownKeyword(s.words[0], "common", kKnown, d);
    }
  }
}

void CrossChecks(const Config& cfg, const std::vector<Statement*>& res_stmts, Diagnostics& d) {
  // Per host name: minors and address:port must be unique over all resources.
  std::map<std::string, std::map<int, std::string>> minors;
  std::map<std::string, std::map<std::string, std::string>> addrs;
  std::set<std::string> names;
  for (size_t r = 0; r < cfg.resources.size(); ++r) {
    const Resource& res = cfg.resources[r];
    if (!names.insert(res.name).second) {
      d.Add(res_stmts[r]->words.size() > 1 ? res_stmts[r]->words[1].loc : res.loc,
            fmt::format("resource '{}' defined twice", res.name));
    }
    for (const auto& h : res.hosts) {
      std::vector<std::string> keys = h.names;
      if (keys.empty()) keys.push_back(h.Name());
      for (const auto& name : keys) {
        for (const auto& v : h.volumes) {
          if (v.minor < 0) continue;
          auto [it, fresh] =
              minors[name].emplace(v.minor, fmt::format("{}/{}", res.name, v.number));
          if (!fresh) {
            d.Add(v.loc, fmt::format("minor {} on host '{}' is already used by {}", v.minor, name,
                                     it->second));
          }
        }
        if (h.address) {
          std::string key = fmt::format("{}:{}", h.address->ip, h.address->port);
          auto [it, fresh] = addrs[name].emplace(key, res.name);
          if (!fresh) {
            d.Add(h.loc, fmt::format("address {} on host '{}' is already used by resource '{}'",
                                     key, name, it->second));
          }
        }
      }
    }
  }
  // resync-after must name a resource that exists.
  for (const auto& res : cfg.resources) {
    for (const auto& h : res.hosts) {
      for (const auto& v : h.volumes) {
        const std::string* ra = v.disk_options.Find("resync-after");
        if (!ra) continue;
        std::string target = ra->substr(0, ra->find('/'));
        if (!cfg.FindResource(target)) {
          SourceLoc loc;
          for (const auto& e : v.disk_options.entries()) {
            if (e.name == "resync-after") loc = e.loc;
          }
          d.Add(loc, fmt::format("resync-after names unknown resource '{}'", target));
          return;
        }
      }
    }
  }
}

}  // namespace
}  // namespace internal

Result<Config> BuildConfig(std::vector<Statement>& tree) {
  using namespace internal;
  Diagnostics d;
  Config cfg;
  CommonSpec common;
  bool seen_global = false;
  bool seen_common = false;
  std::vector<Statement*> res_stmts;
  static const std::vector<std::string_view> kTop = {"global", "common", "resource", "include",
                                                     "skip"};
  for (auto& st : tree) {
    const std::string& kw = st.keyword();
    if (st.is_section && (kw == "resource" || kw == "common")) RewriteLegacy(st.body);
    if (kw == "global" && st.is_section) {
      if (seen_global) d.Add(st.loc, "only one 'global' section is allowed");
      seen_global = true;
      ReadOptions(st, OptSection::kGlobal, cfg.global, nullptr, d);
    } else if (kw == "common" && st.is_section) {
      if (seen_common) d.Add(st.loc, "only one 'common' section is allowed");
      seen_common = true;
      if (st.words.size() != 1) d.Add(st.words[1].loc, "'common' takes no name");
      ReadCommon(st, common, d);
    } else if (kw == "resource" && st.is_section) {
      res_stmts.push_back(&st);
    } else if (kw == "resource") {
      d.Add(st.loc, "'resource' needs a body: resource NAME { ... }");
    } else {
      UnknownKeyword(st.words[0], "top-level", kTop, d);
    }
  }
  for (Statement* st : res_stmts) cfg.resources.push_back(BuildResource(*st, common, d));
  CrossChecks(cfg, res_stmts, d);
  if (!d.empty()) return d.ToStatus();
  return cfg;
}

Result<Loaded> LoadFile(const std::string& path, const FileAccess& fs) {
  BSR_ASSIGN_OR_RETURN(auto tree, ParseFile(path, fs));
  std::vector<std::string> files;
  for (const auto& s : tree) {
    if (std::find(files.begin(), files.end(), s.loc.file) == files.end())
      files.push_back(s.loc.file);
  }
  BSR_ASSIGN_OR_RETURN(auto cfg, BuildConfig(tree));
  cfg.files = files;
  if (cfg.files.empty()) cfg.files.push_back(path);
  return Loaded{std::move(tree), std::move(cfg)};
}

Result<Loaded> LoadString(std::string_view file, std::string_view text) {
  BSR_ASSIGN_OR_RETURN(auto tree, ParseString(file, text));
  BSR_ASSIGN_OR_RETURN(auto cfg, BuildConfig(tree));
  cfg.files.push_back(std::string(file));
  return Loaded{std::move(tree), std::move(cfg)};
}

}  // namespace bsr::config
