#include "config/builder_util.h"

#include <arpa/inet.h>

#include <charconv>

namespace bsr::config::internal {

std::string JoinValues(const Statement& st, size_t from) {
  std::string s;
  for (size_t i = from; i < st.words.size(); ++i) {
    if (i > from) s += ' ';
    s += st.words[i].text;
  }
  return s;
}

void UnknownKeyword(const Word& w, std::string_view section,
                    const std::vector<std::string_view>& known, Diagnostics& d) {
  std::string hint = DidYouMean(w.text, known);
  d.Add(w.loc, fmt::format("unknown keyword '{}' in {} section{}", w.text, section,
                           hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint)));
}

std::optional<int> ReadInt(const Word& w, int lo, int hi, const char* what, Diagnostics& d) {
  int v = 0;
  auto [p, ec] = std::from_chars(w.text.data(), w.text.data() + w.text.size(), v);
  if (w.text.empty() || ec != std::errc() || p != w.text.data() + w.text.size()) {
    d.Add(w.loc, fmt::format("{} '{}' is not a number", what, w.text));
    return std::nullopt;
  }
  if (v < lo || v > hi) {
    d.Add(w.loc, fmt::format("{} {} out of range {}..{}", what, v, lo, hi));
    return std::nullopt;
  }
  return v;
}

void ReadOptions(Statement& sec, OptSection kind, OptionMap& out, OptionMap* pd, Diagnostics& d) {
  std::vector<std::string_view> known;
  for (const auto& def : AllOptions()) {
    if (def.section == kind || (pd && def.section == OptSection::kPeerDevice))
      known.push_back(def.name);
  }
  std::string_view sec_name = sec.keyword();
  for (auto& st : sec.body) {
    const Word kw = st.words[0];  // a copy: words may grow below
    if (st.is_section) {
      d.Add(kw.loc, fmt::format("unexpected section '{}' inside {} section", kw.text, sec_name));
      continue;
    }
    std::string name = kw.text;
    OptSection target = kind;
    const OptionDef* def = FindOption(kind, name);
    if (!def && pd) {
      def = FindOption(OptSection::kPeerDevice, name);
      target = OptSection::kPeerDevice;
    }
    std::string value = JoinValues(st);
    // DRBD 8.x spelled boolean options "no-disk-flushes;".
    if (!def && name.rfind("no-", 0) == 0 && st.words.size() == 1) {
      std::string base = name.substr(3);
      const OptionDef* b = FindOption(kind, base);
      if (b && b->type == OptType::kBool) {
        def = b;
        target = kind;
        name = base;
        value = "no";
        st.words[0].text = name;
        st.words.push_back(Word{"no", false, kw.loc});
      }
    }
    if (!def) {
      UnknownKeyword(kw, sec_name, known, d);
      continue;
    }
    OptionMap& dst = target == OptSection::kPeerDevice && pd ? *pd : out;
    if (def->type == OptType::kFlag) {
      if (st.words.size() != 1) {
        d.Add(st.words[1].loc, fmt::format("'{}' takes no value", name));
        continue;
      }
    } else if (st.words.size() == 1) {
      if (def->type == OptType::kBool) {
        value = "yes";
        st.words.push_back(Word{"yes", false, kw.loc});  // canonical: "name yes;"
      } else {
        d.Add(kw.loc, fmt::format("'{}' needs a value", name));
        continue;
      }
    } else if (st.words.size() > 2 && def->section != OptSection::kHandlers &&
               def->name != "become-primary-on") {
      d.Add(st.words[2].loc,
            fmt::format("'{}' takes one value, got {}", name, st.words.size() - 1));
      continue;
    }
    if (dst.Has(name)) {
      const auto& entries = dst.entries();
      SourceLoc first;
      for (const auto& e : entries) {
        if (e.name == name) first = e.loc;
      }
      d.Add(kw.loc,
            fmt::format("'{}' given twice in one section (first at line {})", name, first.line));
      continue;
    }
    Status s = ValidateValue(*def, value);
    // after-sb-0pri discard-node-NAME (seed 001): the config language only; bsradm
    // turns it into discard-local on NAME and discard-remote elsewhere (adm_plan.cc).
    if (!s.ok() && name == "after-sb-0pri" && value.rfind("discard-node-", 0) == 0 &&
        value.size() > std::string_view("discard-node-").size()) {
      s = Status::Ok();
    }
    if (s.ok() && name == "cpu-mask" &&
        value.find_first_not_of("0123456789abcdefABCDEFx,") != std::string::npos) {
      s = Error(Errc::kInvalidArgument, "'{}' is not a hexadecimal CPU mask", value);
    }
    if (!s.ok()) {
      d.Add(st.words.size() > 1 ? st.words[1].loc : kw.loc,
            fmt::format("{}: {}", name, s.message()));
      continue;
    }
    dst.Set(name, value, kw.loc);
  }
}

VolSpec Overlay(const VolSpec& base, const VolSpec& top) {
  VolSpec v = top;
  if (!v.has_device) {
    v.has_device = base.has_device;
    v.minor = base.minor;
    v.device = base.device;
    v.device_loc = base.device_loc;
  }
  if (!v.has_disk) {
    v.has_disk = base.has_disk;
    v.diskless = base.diskless;
    v.disk = base.disk;
    v.disk_loc = base.disk_loc;
  }
  if (!v.has_meta) {
    v.has_meta = base.has_meta;
    v.meta = base.meta;
    v.meta_loc = base.meta_loc;
  }
  if (v.loc.line == 0) v.loc = base.loc;
  v.disk_opts.InheritFrom(base.disk_opts);
  v.pd_opts.InheritFrom(base.pd_opts);
  return v;
}

namespace {

// Trailing number of "/dev/drbd12" or "/dev/bsr12"; -1 when there is none.
int MinorFromPath(const std::string& dev) {
  for (std::string_view prefix : {"/dev/drbd", "/dev/bsr"}) {
    if (dev.rfind(prefix, 0) == 0 && dev.size() > prefix.size()) {
      std::string_view rest(dev);
      rest.remove_prefix(prefix.size());
      int v = 0;
      auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), v);
      if (ec == std::errc() && p == rest.data() + rest.size()) return v;
    }
  }
  return -1;
}

constexpr int kMaxMinor = 1048575;

void ReadDevice(Statement& st, VolSpec& v, Diagnostics& d) {
  v.has_device = true;
  v.device_loc = st.loc;
  auto& w = st.words;
  if (w.size() == 3 && w[1].text == "minor") {  // device minor N
    if (auto m = ReadInt(w[2], 0, kMaxMinor, "minor", d)) v.minor = *m;
    v.device.clear();
    return;
  }
  if (w.size() == 4 && w[2].text == "minor") {  // device PATH minor N (also Windows "e minor 2")
    if (auto m = ReadInt(w[3], 0, kMaxMinor, "minor", d)) v.minor = *m;
    v.device = w[1].text;
    return;
  }
  if (w.size() == 2) {
    v.device = w[1].text;
    v.minor = MinorFromPath(v.device);
    if (v.minor < 0) {
      d.Add(w[1].loc, fmt::format("cannot tell the minor number from device '{}'; write "
                                  "'device {} minor N;'",
                                  v.device, v.device));
      return;
    }
    if (v.minor > kMaxMinor) {
      d.Add(w[1].loc, fmt::format("minor {} out of range 0..{}", v.minor, kMaxMinor));
      return;
    }
    w.push_back(Word{"minor", false, w[1].loc});
    w.push_back(Word{std::to_string(v.minor), false, w[1].loc});
    return;
  }
  d.Add(st.loc, "expected 'device PATH;', 'device minor N;' or 'device PATH minor N;'");
}

void ReadMetaDisk(Statement& st, VolSpec& v, Diagnostics& d) {
  v.has_meta = true;
  v.meta_loc = st.loc;
  auto& w = st.words;
  if (w[0].text == "flexible-meta-disk") w[0].text = "meta-disk";
  if (w.size() < 2 || w.size() > 3) {
    d.Add(st.loc,
          "expected 'meta-disk internal;', 'meta-disk DEVICE;' or 'meta-disk DEVICE [INDEX];'");
    return;
  }
  std::string dev = w[1].text;
  std::string idx;
  if (w.size() == 3) {
    idx = w[2].text;
  } else if (auto lb = dev.find('['); lb != std::string::npos && lb > 0 && dev.back() == ']') {
    idx = dev.substr(lb);
    dev = dev.substr(0, lb);
    w[1].text = dev;
    w.push_back(Word{idx, false, w[1].loc});
  }
  if (dev == "internal") {
    if (!idx.empty()) d.Add(w[2].loc, "'meta-disk internal' takes no index");
    v.meta = MetaDisk{MetaDisk::Kind::kInternal, "", -1};
    return;
  }
  if (idx.empty()) {
    v.meta = MetaDisk{MetaDisk::Kind::kFlexible, dev, -1};
    return;
  }
  const Word& iw = w[2];
  if (idx.size() < 3 || idx.front() != '[' || idx.back() != ']') {
    d.Add(iw.loc, fmt::format("meta-disk index '{}' must be written [N]", idx));
    return;
  }
  Word inner{idx.substr(1, idx.size() - 2), false, iw.loc};
  if (auto n = ReadInt(inner, 0, 1024, "meta-disk index", d))
    v.meta = MetaDisk{MetaDisk::Kind::kIndexed, dev, *n};
}

}  // namespace

bool ReadVolumeItem(Statement& st, VolSpec& v, Diagnostics& d) {
  const std::string& kw = st.keyword();
  if (st.is_section) {
    if (kw != "disk") return false;
    if (st.words.size() != 1) d.Add(st.words[1].loc, "'disk' section takes no name");
    ReadOptions(st, OptSection::kDisk, v.disk_opts, &v.pd_opts, d);
    return true;
  }
  if (kw == "device") {
    ReadDevice(st, v, d);
    return true;
  }
  if (kw == "disk") {
    if (st.words.size() != 2) {
      d.Add(st.loc, "expected 'disk DEVICE;' or 'disk none;'");
      return true;
    }
    v.has_disk = true;
    v.disk_loc = st.loc;
    v.diskless = st.words[1].text == "none";
    v.disk = v.diskless ? "" : st.words[1].text;
    return true;
  }
  if (kw == "meta-disk" || kw == "flexible-meta-disk") {
    ReadMetaDisk(st, v, d);
    return true;
  }
  return false;
}

std::optional<Address> ReadAddress(const Statement& st, size_t& i, Diagnostics& d) {
  const auto& w = st.words;
  if (i >= w.size()) {
    d.Add(st.loc, "address missing after 'address'");
    return std::nullopt;
  }
  Address a;
  static const std::vector<std::string_view> kFamilies = {"ipv4", "ipv6", "ssocks", "sdp", "sci"};
  for (auto f : kFamilies) {
    if (w[i].text == f) {
      a.family = std::string(f);
      ++i;
      break;
    }
  }
  if (i >= w.size()) {
    d.Add(st.loc, "address missing after the address family");
    return std::nullopt;
  }
  const Word& aw = w[i++];
  std::string text = aw.text;
  std::string host;
  std::string port;
  if (!text.empty() && text[0] == '[') {
    auto rb = text.find(']');
    if (rb == std::string::npos || rb + 1 >= text.size() || text[rb + 1] != ':') {
      d.Add(aw.loc, fmt::format("bad address '{}': expected [IPV6]:PORT", text));
      return std::nullopt;
    }
    host = text.substr(1, rb - 1);
    port = text.substr(rb + 2);
    if (a.family == "ipv4") a.family = "ipv6";
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos) {
      d.Add(aw.loc, fmt::format("bad address '{}': expected IP:PORT", text));
      return std::nullopt;
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  unsigned char buf[16];
  if (a.family == "ipv6") {
    if (inet_pton(AF_INET6, host.c_str(), buf) != 1 || text[0] != '[') {
      d.Add(aw.loc,
            fmt::format("bad IPv6 address '{}': write it in brackets, e.g. [fd00::1]:7789", text));
      return std::nullopt;
    }
  } else if (inet_pton(AF_INET, host.c_str(), buf) != 1) {
    d.Add(aw.loc, fmt::format("bad IPv4 address '{}'", host));
    return std::nullopt;
  }
  a.ip = host;
  Word pw{port, false, aw.loc};
  auto p = ReadInt(pw, 1, 65535, "port", d);
  if (!p) return std::nullopt;
  a.port = *p;
  return a;
}

}  // namespace bsr::config::internal
