// The resolved configuration model that bsradm, bsrd and `bsradm up` consume: plain
// data built once by LoadConfig() (config.h) and then only read, from any thread.
//
// Shape:  Config
//           global            GlobalOptions
//           resources[]       Resource
//             options, startup, handlers       (common -> resource)
//             hosts[]         Host: `on NAME...` or `floating ADDR` sections
//               names, node_id, address, volumes[] (resource volumes merged with the
//               host's own; disk options common -> resource -> volume -> on -> on/volume)
//             connections[]   Connection: two hosts, paths[], net (common -> resource
//               -> mesh/connection), peer_device[volume] (disk sections' peer-device
//               options common -> resource -> volume -> connection -> connection/volume)
// Every options section is an OptionMap: the explicitly written options in source
// order (name -> value exactly as written, after DRBD 8.x aliases are mapped) plus
// typed accessors that apply seed 001's default and convert to the option's unit.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/lexer.h"
#include "config/schema.h"

namespace bsr::config {

// Ordered option-name -> value map of one options section.
class OptionMap {
 public:
  struct Entry {
    std::string name;
    std::string value;  // "" for flags; multi-word values joined by one space
    SourceLoc loc;
    bool operator==(const Entry& o) const { return name == o.name && value == o.value; }
  };

  explicit OptionMap(OptSection section) : section_(section) {}

  OptSection section() const { return section_; }
  const std::vector<Entry>& entries() const { return entries_; }
  bool empty() const { return entries_.empty(); }
  bool Has(std::string_view name) const { return Find(name) != nullptr; }
  const std::string* Find(std::string_view name) const;
  // Sets or overrides (keeps the original position when overriding).
  void Set(const std::string& name, const std::string& value, const SourceLoc& loc = {});
  // Options of `parent` not set here are appended (inheritance: parent is less specific).
  void InheritFrom(const OptionMap& parent);

  // Typed reads with the seed-001 default when unset. Number() is in the option's
  // default unit (e.g. resync-rate in KiB/s even if written "10M").
  int64_t Number(std::string_view name) const;
  bool Bool(std::string_view name) const;
  std::string Text(std::string_view name) const;

  bool operator==(const OptionMap& o) const {
    return section_ == o.section_ && entries_ == o.entries_;
  }

 private:
  OptSection section_;
  std::vector<Entry> entries_;
};

struct GlobalOptions : OptionMap {
  GlobalOptions() : OptionMap(OptSection::kGlobal) {}
  bool disable_ip_verification() const { return Has("disable-ip-verification"); }
  int64_t dialog_refresh_seconds() const { return Number("dialog-refresh"); }
};

struct DiskOptions : OptionMap {
  DiskOptions() : OptionMap(OptSection::kDisk) {}
  int64_t al_extents() const { return Number("al-extents"); }
  bool al_updates() const { return Bool("al-updates"); }
  bool disk_barrier() const { return Bool("disk-barrier"); }
  bool disk_flushes() const { return Bool("disk-flushes"); }
  bool disk_drain() const { return Bool("disk-drain"); }
  bool md_flushes() const { return Bool("md-flushes"); }
  int64_t disk_timeout_tenths() const { return Number("disk-timeout"); }
  // "passthrough", "call-local-io-error" or "detach" (pass_on maps to passthrough).
  std::string on_io_error() const;
  std::string resync_after() const { return Text("resync-after"); }
};

struct PeerDeviceOptions : OptionMap {
  PeerDeviceOptions() : OptionMap(OptSection::kPeerDevice) {}
  int64_t resync_rate_kib() const { return Number("resync-rate"); }
  int64_t c_plan_ahead_tenths() const { return Number("c-plan-ahead"); }
  int64_t c_delay_target_tenths() const { return Number("c-delay-target"); }
  int64_t c_fill_target_sectors() const { return Number("c-fill-target"); }
  int64_t c_max_rate_kib() const { return Number("c-max-rate"); }
  int64_t c_min_rate_kib() const { return Number("c-min-rate"); }
};

struct NetOptions : OptionMap {
  NetOptions() : OptionMap(OptSection::kNet) {}
  char protocol() const { return Text("protocol").empty() ? 'C' : Text("protocol")[0]; }
  int64_t timeout_tenths() const { return Number("timeout"); }
  int64_t connect_int_seconds() const { return Number("connect-int"); }
  int64_t ping_int_seconds() const { return Number("ping-int"); }
  int64_t ping_timeout_tenths() const { return Number("ping-timeout"); }
  int64_t max_epoch_size() const { return Number("max-epoch-size"); }
  int64_t max_buffers() const { return Number("max-buffers"); }
  int64_t ko_count() const { return Number("ko-count"); }
  int64_t sndbuf_size_bytes() const { return Number("sndbuf-size"); }
  int64_t rcvbuf_size_bytes() const { return Number("rcvbuf-size"); }
  int64_t congestion_fill_sectors() const { return Number("congestion-fill"); }
  int64_t congestion_extents() const { return Number("congestion-extents"); }
  std::string on_congestion() const { return Text("on-congestion"); }
  std::string cram_hmac_alg() const { return Text("cram-hmac-alg"); }
  std::string shared_secret() const { return Text("shared-secret"); }
  std::string csums_alg() const { return Text("csums-alg"); }
  std::string verify_alg() const { return Text("verify-alg"); }
  std::string data_integrity_alg() const { return Text("data-integrity-alg"); }
  std::string fencing() const { return Text("fencing"); }
  std::string after_sb_0pri() const { return Text("after-sb-0pri"); }
  std::string after_sb_1pri() const { return Text("after-sb-1pri"); }
  std::string after_sb_2pri() const { return Text("after-sb-2pri"); }
  std::string rr_conflict() const { return Text("rr-conflict"); }
  bool use_rle() const { return Bool("use-rle"); }
  bool tcp_cork() const { return Bool("tcp-cork"); }
};

struct ResourceOptions : OptionMap {
  ResourceOptions() : OptionMap(OptSection::kResource) {}
  bool auto_promote() const { return Bool("auto-promote"); }
  int64_t peer_ack_window_sectors() const { return Number("peer-ack-window"); }
  int64_t peer_ack_delay_ms() const { return Number("peer-ack-delay"); }
  std::string on_no_data_accessible() const { return Text("on-no-data-accessible"); }
  std::string quorum() const { return Text("quorum"); }
};

struct StartupOptions : OptionMap {
  StartupOptions() : OptionMap(OptSection::kStartup) {}
  int64_t wfc_timeout_seconds() const { return Number("wfc-timeout"); }
  int64_t degr_wfc_timeout_seconds() const { return Number("degr-wfc-timeout"); }
  int64_t outdated_wfc_timeout_seconds() const { return Number("outdated-wfc-timeout"); }
};

// Handler commands by event name ("fence-peer" -> "/usr/lib/bsr/fence.sh").
struct Handlers : OptionMap {
  Handlers() : OptionMap(OptSection::kHandlers) {}
};

struct Address {
  std::string family = "ipv4";  // ipv4 | ipv6 | ssocks | sdp | sci
  std::string ip;               // without brackets
  int port = 0;
  // bsrsetup form: "ipv4:10.1.1.31:7789", "ipv6:[fd00::1]:7789".
  std::string ToSetupArg() const;
  // config form: "ipv4 10.1.1.31:7789".
  std::string ToConfig() const;
  bool operator==(const Address&) const = default;
};

struct MetaDisk {
  enum class Kind { kNone, kInternal, kFlexible, kIndexed };
  Kind kind = Kind::kNone;
  std::string device;  // external meta device (kFlexible, kIndexed)
  int index = -1;      // kIndexed only
  // bsrmeta / drbdmeta positional pair "DEV IDX": "/dev/sdb1 internal",
  // "/dev/sdc flex-external", "/dev/sdc 0".
  std::string MetaDevArg(const std::string& disk) const;
  std::string MetaIndexArg() const;
  // bsrsetup attach form of the index: internal | flexible | N.
  std::string AttachIndexArg() const;
  bool operator==(const MetaDisk&) const = default;
};

struct Volume {
  int number = 0;
  int minor = -1;
  std::string device;     // "/dev/bsr2", "/dev/drbd2", a Windows letter, or "" (minor only)
  bool diskless = false;  // disk none
  std::string disk;       // lower-level device (empty when diskless)
  MetaDisk meta;
  DiskOptions disk_options;  // resolved
  SourceLoc loc;
  bool operator==(const Volume& o) const {
    return number == o.number && minor == o.minor && device == o.device && diskless == o.diskless &&
           disk == o.disk && meta == o.meta && disk_options == o.disk_options;
  }
};

struct Host {
  std::vector<std::string> names;  // `on a b c` -> {a,b,c}; floating: empty
  bool floating = false;
  int node_id = -1;
  std::optional<Address> address;
  std::vector<Volume> volumes;  // sorted by number
  SourceLoc loc;

  std::string Name() const;  // first name, or the address for floating
  bool Matches(std::string_view name) const;
  const Volume* FindVolume(int number) const;
  bool operator==(const Host& o) const {
    return names == o.names && floating == o.floating && node_id == o.node_id &&
           address == o.address && volumes == o.volumes;
  }
};

struct Path {
  int host_a = -1;  // index into Resource::hosts
  int host_b = -1;
  Address addr_a;
  Address addr_b;
  bool operator==(const Path&) const = default;
};

struct Connection {
  std::string name;  // optional `connection NAME`
  int host_a = -1;   // index into Resource::hosts
  int host_b = -1;
  std::vector<Path> paths;  // at least one
  NetOptions net;           // resolved
  // Resolved peer-device options per volume number (every volume of the resource).
  std::map<int, PeerDeviceOptions> peer_devices;
  SourceLoc loc;
  // The other end seen from hosts[local] (-1 when `local` is not an end).
  int PeerOf(int local) const { return local == host_a ? host_b : local == host_b ? host_a : -1; }
  bool operator==(const Connection& o) const {
    return name == o.name && host_a == o.host_a && host_b == o.host_b && paths == o.paths &&
           net == o.net && peer_devices == o.peer_devices;
  }
};

struct Resource {
  std::string name;
  ResourceOptions options;
  StartupOptions startup;
  Handlers handlers;
  std::vector<Host> hosts;
  std::vector<Connection> connections;
  SourceLoc loc;

  const Host* FindHost(std::string_view name) const;
  int HostIndex(std::string_view name) const;
  // Connections that involve hosts[host_index], in configuration order.
  std::vector<const Connection*> ConnectionsOf(int host_index) const;
  bool operator==(const Resource& o) const {
    return name == o.name && options == o.options && startup == o.startup &&
           handlers == o.handlers && hosts == o.hosts && connections == o.connections;
  }
};

struct Config {
  std::vector<std::string> files;  // every file read, in order
  GlobalOptions global;
  std::vector<Resource> resources;

  const Resource* FindResource(std::string_view name) const;
  bool operator==(const Config& o) const { return global == o.global && resources == o.resources; }
};

}  // namespace bsr::config
