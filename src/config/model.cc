#include "config/model.h"

#include <fmt/format.h>

namespace bsr::config {

const std::string* OptionMap::Find(std::string_view name) const {
  for (const auto& e : entries_) {
    if (e.name == name) return &e.value;
  }
  return nullptr;
}

void OptionMap::Set(const std::string& name, const std::string& value, const SourceLoc& loc) {
  for (auto& e : entries_) {
    if (e.name == name) {
      e.value = value;
      e.loc = loc;
      return;
    }
  }
  entries_.push_back(Entry{name, value, loc});
}

void OptionMap::InheritFrom(const OptionMap& parent) {
  std::vector<Entry> merged;
  for (const auto& e : parent.entries_) {
    if (!Has(e.name)) merged.push_back(e);
  }
  // Inherited options first, so the order reads from general to specific.
  merged.insert(merged.end(), entries_.begin(), entries_.end());
  entries_ = std::move(merged);
}

int64_t OptionMap::Number(std::string_view name) const {
  const OptionDef* def = FindOption(section_, name);
  if (!def) return 0;
  const std::string* v = Find(name);
  std::string_view text = v ? std::string_view(*v) : def->def;
  auto r = ParseNumber(*def, text);
  if (r.ok()) return *r;
  // Validated values always parse; an unset numeric default of a symbol type is 0.
  auto d = ParseNumber(*def, def->def);
  return d.ok() ? *d : 0;
}

bool OptionMap::Bool(std::string_view name) const {
  const OptionDef* def = FindOption(section_, name);
  const std::string* v = Find(name);
  if (def && def->type == OptType::kFlag) return v != nullptr;
  std::string_view text = v ? std::string_view(*v) : (def ? def->def : std::string_view("no"));
  auto r = ParseBool(text);
  return r.ok() && *r;
}

std::string OptionMap::Text(std::string_view name) const {
  const std::string* v = Find(name);
  if (v) return *v;
  const OptionDef* def = FindOption(section_, name);
  return def ? std::string(def->def) : std::string();
}

std::string DiskOptions::on_io_error() const {
  std::string v = Text("on-io-error");
  return v == "pass_on" ? "passthrough" : v;
}

std::string Address::ToSetupArg() const {
  if (family == "ipv6") return fmt::format("ipv6:[{}]:{}", ip, port);
  return fmt::format("{}:{}:{}", family, ip, port);
}

std::string Address::ToConfig() const {
  if (family == "ipv6") return fmt::format("ipv6 [{}]:{}", ip, port);
  return fmt::format("{} {}:{}", family, ip, port);
}

std::string MetaDisk::MetaDevArg(const std::string& disk) const {
  return kind == Kind::kInternal ? disk : device;
}

std::string MetaDisk::MetaIndexArg() const {
  switch (kind) {
    case Kind::kInternal: return "internal";
    case Kind::kFlexible: return "flex-external";
    case Kind::kIndexed: return std::to_string(index);
    case Kind::kNone: break;
  }
  return "";
}

std::string MetaDisk::AttachIndexArg() const {
  switch (kind) {
    case Kind::kInternal: return "internal";
    case Kind::kFlexible: return "flexible";
    case Kind::kIndexed: return std::to_string(index);
    case Kind::kNone: break;
  }
  return "";
}

std::string Host::Name() const {
  if (!names.empty()) return names.front();
  return address ? fmt::format("{}:{}", address->ip, address->port) : std::string("floating");
}

bool Host::Matches(std::string_view name) const {
  for (const auto& n : names) {
    if (n == name) return true;
  }
  if (floating && address) {
    return name == address->ip || name == fmt::format("{}:{}", address->ip, address->port);
  }
  return false;
}

const Volume* Host::FindVolume(int number) const {
  for (const auto& v : volumes) {
    if (v.number == number) return &v;
  }
  return nullptr;
}

const Host* Resource::FindHost(std::string_view name) const {
  int i = HostIndex(name);
  return i < 0 ? nullptr : &hosts[i];
}

int Resource::HostIndex(std::string_view name) const {
  for (size_t i = 0; i < hosts.size(); ++i) {
    if (hosts[i].Matches(name)) return static_cast<int>(i);
  }
  return -1;
}

std::vector<const Connection*> Resource::ConnectionsOf(int host_index) const {
  std::vector<const Connection*> out;
  for (const auto& c : connections) {
    if (c.PeerOf(host_index) >= 0) out.push_back(&c);
  }
  return out;
}

const Resource* Config::FindResource(std::string_view name) const {
  for (const auto& r : resources) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

}  // namespace bsr::config
