// Helpers shared by the builder's phases (builder.cc, builder_resource.cc): reading
// options sections, volume parameters and addresses out of statements. Internal to
// the config module; single-threaded.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "config/config.h"

namespace bsr::config::internal {

std::string JoinValues(const Statement& st, size_t from = 1);

// Reads the parameters of an options section into `out`. For `disk` sections
// (kind kDisk) peer-device options go to `pd` when given; for kPeerDevice only
// peer-device options are accepted.
void ReadOptions(Statement& sec, OptSection kind, OptionMap& out, OptionMap* pd, Diagnostics& d);

// Volume-level data written in a `volume` section, directly in `on`/`floating`
// (implicit volume 0), or in `resource` (defaults for every host).
struct VolSpec {
  int number = 0;
  SourceLoc loc;
  bool has_device = false;
  int minor = -1;
  std::string device;
  SourceLoc device_loc;
  bool has_disk = false;
  bool diskless = false;
  std::string disk;
  SourceLoc disk_loc;
  bool has_meta = false;
  MetaDisk meta;
  SourceLoc meta_loc;
  DiskOptions disk_opts;
  PeerDeviceOptions pd_opts;
};

// `top` overrides `base` field by field; options inherit.
VolSpec Overlay(const VolSpec& base, const VolSpec& top);

// Handles device / disk / meta-disk / flexible-meta-disk parameters and `disk {}`
// sections; rewrites device and meta-disk words to their canonical form. Returns
// false when `st` is none of these.
bool ReadVolumeItem(Statement& st, VolSpec& v, Diagnostics& d);

// Parses "[af] ip:port" words starting at words[i]; advances i.
std::optional<Address> ReadAddress(const Statement& st, size_t& i, Diagnostics& d);

// Parses a decimal integer within [lo, hi]; reports `what` on failure.
std::optional<int> ReadInt(const Word& w, int lo, int hi, const char* what, Diagnostics& d);

// "unknown keyword 'x' in SECTION (did you mean 'y'?)"
void UnknownKeyword(const Word& w, std::string_view section,
                    const std::vector<std::string_view>& known, Diagnostics& d);

// Options given in the `common` section: the base of every resource.
struct CommonSpec {
  DiskOptions disk;
  PeerDeviceOptions pd;
  NetOptions net;
  ResourceOptions options;
  StartupOptions startup;
  Handlers handlers;
};

// One `resource` section -> Resource (builder_resource.cc).
Resource BuildResource(Statement& res, const CommonSpec& common, Diagnostics& d);

}  // namespace bsr::config::internal
