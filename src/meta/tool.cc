#include "meta/tool.h"

#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "meta/dump.h"
#include "meta/metadata.h"
#include "meta/signature.h"

namespace bsr::meta {
namespace {

constexpr const char* kUsage =
    "usage: bsrmeta [--force] MINOR bsr1 META-DEV INDEX COMMAND [ARGS] [OPTIONS]\n"
    "  MINOR     minor number or /dev/bsrN\n"
    "  META-DEV  the meta data device or file (the data disk itself for internal)\n"
    "  INDEX     internal | flex-external | flexible | N (128 MiB slot N)\n"
    "commands:\n"
    "  create-md [MAX_PEERS]  --node-id=N --al-extents=N --al-stripes=N\n"
    "                         --al-stripe-size-kB=N --peer-max-bio-size=N --data-size=BYTES\n"
    "  dump-md | restore-md FILE | wipe-md | apply-al (--force: salvage bad blocks)\n"
    "  show-gi | get-gi [--node-id=N]  (N: the peer whose bitmap UUID is shown)\n"
    "  check-resize\n"
    "  outdate     (a Consistent disk: UpToDate -> Outdated; refused on an Inconsistent one)\n"
    "  invalidate  (the disk becomes Inconsistent; every peer slot all out of sync)\n";

struct Args {
  bool force = false;
  bool verbose = false;
  std::vector<std::string> pos;
  std::vector<std::pair<std::string, std::string>> opts;  // --name=value
};

bool ParseU64(const std::string& s, uint64_t* v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

// "--name=value" or "--name value"; flags without value.
Result<Args> ParseArgs(const std::vector<std::string>& argv) {
  static const std::vector<std::string> kValued = {
      "node-id",           "al-extents", "al-stripes", "al-stripe-size-kB",
      "peer-max-bio-size", "data-size",  "max-peers"};
  Args a;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& s = argv[i];
    if (s == "--force" || s == "-f") {
      a.force = true;
    } else if (s == "--verbose" || s == "-v") {
      a.verbose = true;
    } else if (s.rfind("--", 0) == 0 && s.size() > 2) {
      std::string name = s.substr(2), value;
      size_t eq = name.find('=');
      if (eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      } else if (i + 1 < argv.size()) {
        value = argv[++i];
      }
      if (std::find(kValued.begin(), kValued.end(), name) == kValued.end()) {
        return Error(Errc::kInvalidArgument, "unknown option --{}", name);
      }
      a.opts.emplace_back(name, value);
    } else {
      a.pos.push_back(s);
    }
  }
  return a;
}

Result<uint64_t> Opt(const Args& a, const std::string& name, uint64_t def, uint64_t lo,
                     uint64_t hi) {
  uint64_t v = def;
  for (const auto& [n, val] : a.opts) {
    if (n != name) continue;
    if (!ParseU64(val, &v) || v < lo || v > hi) {
      return Error(Errc::kInvalidArgument, "--{}={}: expected a number {}..{}", name, val, lo, hi);
    }
  }
  return v;
}

bool HasOpt(const Args& a, const std::string& name) {
  for (const auto& o : a.opts) {
    if (o.first == name) return true;
  }
  return false;
}

int ExitFor(const Status& s) {
  switch (s.code()) {
    case Errc::kNotFound:
    case Errc::kCorrupt: return kExitNoMeta;
    case Errc::kInvalidArgument: return kExitUsage;
    case Errc::kExists:
    case Errc::kState:
    case Errc::kBusy: return kExitRefused;
    default: return kExitFailed;
  }
}

class Tool {
 public:
  Tool(Args a, std::ostream& out, std::ostream& err) : a_(std::move(a)), out_(out), err_(err) {}
  int Run();

 private:
  int Fail(const Status& s) {
    err_ << "bsrmeta: " << s.message() << "\n";
    return ExitFor(s);
  }
  Result<std::unique_ptr<FileIo>> OpenDev(bool read_only) {
    FileIoOptions o;
    o.read_only = read_only;
    o.exclusive = !read_only;
    return FileIo::Open(dev_, o);
  }
  Result<std::unique_ptr<Metadata>> OpenMeta(bool read_only, OpenReport* rep,
                                             bool salvage = false) {
    BSR_ASSIGN_OR_RETURN(auto io, OpenDev(read_only));
    OpenOptions o;
    o.placement = placement_;
    o.read_only = read_only;
    o.salvage = salvage;
    return Metadata::Open(std::move(io), o, rep);
  }
  void RecordSize(uint64_t size);
  Result<uint64_t> LastKnownSize();
  int CreateMd();
  int DumpMd();
  int RestoreMd();
  int WipeMd();
  int ApplyAl();
  int Gi(bool show);
  int Outdate();
  int Invalidate();
  int CheckResize();

  Args a_;
  std::ostream& out_;
  std::ostream& err_;
  std::string minor_;
  std::string dev_;
  Placement placement_;
  std::string command_;
  std::vector<std::string> cmd_args_;
};

int Tool::Run() {
  if (a_.pos.size() < 5) {
    err_ << kUsage;
    return kExitUsage;
  }
  minor_ = a_.pos[0];
  if (minor_.rfind("/dev/bsr", 0) == 0) minor_ = minor_.substr(8);
  uint64_t m = 0;
  if (minor_ != "-" && !ParseU64(minor_, &m)) {
    err_ << "bsrmeta: bad MINOR '" << a_.pos[0] << "': expected a number or /dev/bsrN\n";
    return kExitUsage;
  }
  if (a_.pos[1] != "bsr1") {
    err_ << "bsrmeta: unsupported meta data format '" << a_.pos[1]
         << "': this bsrmeta writes and reads only 'bsr1'\n";
    return kExitUsage;
  }
  dev_ = a_.pos[2];
  auto p = Placement::Parse(a_.pos[3]);
  if (!p.ok()) return Fail(p.status());
  placement_ = *p;
  command_ = a_.pos[4];
  cmd_args_.assign(a_.pos.begin() + 5, a_.pos.end());
  auto no_args = [&]() {
    if (cmd_args_.empty()) return true;
    err_ << "bsrmeta: " << command_ << ": unexpected argument '" << cmd_args_[0] << "'\n";
    return false;
  };
  if (command_ == "create-md") return CreateMd();
  if (command_ == "restore-md") return RestoreMd();
  if (!no_args()) return kExitUsage;
  if (command_ == "dump-md") return DumpMd();
  if (command_ == "wipe-md") return WipeMd();
  if (command_ == "apply-al") return ApplyAl();
  if (command_ == "show-gi") return Gi(true);
  if (command_ == "get-gi") return Gi(false);
  if (command_ == "check-resize") return CheckResize();
  if (command_ == "outdate") return Outdate();
  if (command_ == "invalidate") return Invalidate();
  err_ << "bsrmeta: unknown command '" << command_ << "'\n" << kUsage;
  return kExitUsage;
}

// Last-known device size of internal meta data, so check-resize can find the old
// superblock after the device grew. Kept in $BSR_STATE_DIR (default /var/lib/bsr).
std::filesystem::path LkbdPath(const std::string& minor) {
  const char* dir = std::getenv("BSR_STATE_DIR");
  return std::filesystem::path(dir ? dir : "/var/lib/bsr") / ("bsr-minor-" + minor + ".lkbd");
}

void Tool::RecordSize(uint64_t size) {
  if (placement_.kind != PlacementKind::kInternal || minor_ == "-") return;
  std::error_code ec;
  auto path = LkbdPath(minor_);
  std::filesystem::create_directories(path.parent_path(), ec);
  std::ofstream f(path, std::ios::trunc);
  f << dev_ << " " << size << "\n";
  if (!f) err_ << "bsrmeta: warning: cannot record device size in " << path.string() << "\n";
}

Result<uint64_t> Tool::LastKnownSize() {
  auto path = LkbdPath(minor_);
  std::ifstream f(path);
  std::string dev;
  uint64_t size = 0;
  if (!(f >> dev >> size) || dev != dev_) {
    return Error(Errc::kNotFound, "no last-known size of {} recorded in {}", dev_, path.string());
  }
  return size;
}

int Tool::CreateMd() {
  if (cmd_args_.size() > 1) {
    err_ << "bsrmeta: create-md takes at most one argument (MAX_PEERS)\n";
    return kExitUsage;
  }
  CreateOptions c;
  c.placement = placement_;
  uint64_t peers = 1;
  if (!cmd_args_.empty() && (!ParseU64(cmd_args_[0], &peers) || peers < 1 || peers > kMaxPeers)) {
    err_ << "bsrmeta: MAX_PEERS '" << cmd_args_[0] << "' must be 1.." << kMaxPeers << "\n";
    return kExitUsage;
  }
  auto v = Opt(a_, "max-peers", peers, 1, kMaxPeers);
  if (!v.ok()) return Fail(v.status());
  c.max_peers = static_cast<uint32_t>(*v);
  int64_t node_id = -1;
  if (HasOpt(a_, "node-id")) {
    auto n = Opt(a_, "node-id", 0, 0, kMaxNodeId);
    if (!n.ok()) return Fail(n.status());
    node_id = static_cast<int64_t>(*n);
  }
  c.node_id = static_cast<int32_t>(node_id);
  auto ext = Opt(a_, "al-extents", kAlDefaultExtents, kAlMinExtents, kAlMaxExtents);
  auto stripes = Opt(a_, "al-stripes", 1, 1, kAlMaxSlots);
  auto kb = Opt(a_, "al-stripe-size-kB", 32, 4, uint64_t{kAlMaxSlots} * 4);
  auto bio = Opt(a_, "peer-max-bio-size", 1 << 20, 4096, 128u << 20);
  auto data = Opt(a_, "data-size", 0, 0, ~uint64_t{0});
  for (const auto* r : {&ext, &stripes, &kb, &bio, &data}) {
    if (!r->ok()) return Fail(r->status());
  }
  if (*kb % 4)
    return Fail(Error(Errc::kInvalidArgument, "--al-stripe-size-kB must be a multiple of 4"));
  c.al = AlGeometry{static_cast<uint32_t>(*stripes), static_cast<uint32_t>(*kb / 4),
                    static_cast<uint32_t>(*ext)};
  c.peer_max_bio_size = static_cast<uint32_t>(*bio);
  c.data_size = *data;
  auto io = OpenDev(false);
  if (!io.ok()) return Fail(io.status());
  // Existing bsr meta data?
  OpenReport ignored;
  auto existing = OpenMeta(true, &ignored);
  if (existing.ok() || existing.status().code() == Errc::kCorrupt) {
    if (!a_.force) {
      err_ << "bsrmeta: " << dev_ << ": found existing bsr meta data ("
           << (existing.ok() ? "valid" : existing.status().message())
           << "); refusing to overwrite it. Use --force to create new meta data anyway.\n";
      return kExitRefused;
    }
  } else {
    // A file system where the data (internal) or the meta data (external) would go?
    uint64_t at = placement_.kind == PlacementKind::kIndexed
                      ? uint64_t{placement_.index} * kIndexedSlotSize
                      : 0;
    auto sig = DetectSignature(**io, at);
    if (!sig.ok()) return Fail(sig.status());
    if (!sig->empty() && !a_.force) {
      err_ << "bsrmeta: " << dev_ << ": found " << *sig
           << "; creating meta data would destroy or truncate it. Use --force to proceed.\n";
      return kExitRefused;
    }
  }
  out_ << "initializing activity log\n";
  out_ << "NOT initializing bitmap\n";
  out_ << "Writing meta data...\n";
  Status st = Metadata::Create(**io, c);
  if (!st.ok()) return Fail(st);
  RecordSize((*io)->Size());
  out_ << "New bsr meta data block successfully created.\n";
  return kExitOk;
}

int Tool::DumpMd() {
  OpenReport rep;
  auto m = OpenMeta(true, &rep);
  if (!m.ok()) return Fail(m.status());
  for (const auto& n : rep.notes) err_ << "bsrmeta: warning: " << n << "\n";
  if (rep.al_replay_pending) {
    err_ << "bsrmeta: found meta data is \"unclean\" (" << rep.al_replayed_extents
         << " activity log extents not applied), please apply-al first\n";
    return kExitRefused;
  }
  out_ << DumpText(**m);
  return kExitOk;
}

int Tool::RestoreMd() {
  if (cmd_args_.size() != 1) {
    err_ << "bsrmeta: restore-md needs exactly one argument: the dump FILE\n";
    return kExitUsage;
  }
  std::ifstream f(cmd_args_[0]);
  if (!f) {
    err_ << "bsrmeta: cannot read dump file " << cmd_args_[0] << "\n";
    return kExitUsage;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  auto io = OpenDev(false);
  if (!io.ok()) return Fail(io.status());
  Status st = RestoreDump(**io, placement_, ss.str());
  if (!st.ok()) return Fail(st.WithContext(cmd_args_[0]));
  RecordSize((*io)->Size());
  out_ << "Successfully restored meta data\n";
  return kExitOk;
}

int Tool::WipeMd() {
  auto io = OpenDev(false);
  if (!io.ok()) return Fail(io.status());
  OpenReport rep;
  auto m = OpenMeta(true, &rep);
  if (!m.ok() && m.status().code() == Errc::kNotFound) {
    out_ << "There appears to be no bsr meta data to wipe out.\n";
    return kExitOk;
  }
  auto md_end = MdEnd(placement_, (*io)->Size());
  if (!md_end.ok()) return Fail(md_end.status());
  uint64_t start = *md_end - kBlockSize;
  if (m.ok()) start = (*m)->superblock().layout().md_start;
  out_ << "Wiping meta data...\n";
  std::vector<uint8_t> zeros(std::min<uint64_t>(*md_end - start, 1 << 20), 0);
  for (uint64_t off = start; off < *md_end; off += zeros.size()) {
    uint64_t n = std::min<uint64_t>(zeros.size(), *md_end - off);
    Status st = (*io)->Write(off, std::span<const uint8_t>(zeros.data(), n));
    if (!st.ok()) return Fail(st);
  }
  Status st = (*io)->Flush();
  if (!st.ok()) return Fail(st);
  out_ << "bsr meta data wiped from " << dev_ << "\n";
  return kExitOk;
}

int Tool::ApplyAl() {
  OpenReport rep;
  auto m = OpenMeta(false, &rep, a_.force);
  if (!m.ok()) {
    if (m.status().code() == Errc::kCorrupt && !a_.force) {
      err_ << "bsrmeta: " << m.status().message()
           << "\nbsrmeta: apply-al --force salvages it: unreadable activity log blocks mark "
              "the whole device out of sync, unreadable bitmap blocks their range\n";
      return kExitNoMeta;
    }
    return Fail(m.status());
  }
  Status st = (*m)->Close();
  if (!st.ok()) return Fail(st);
  RecordSize((*m)->io().Size());
  out_ << rep.Summary() << "\n";
  return kExitOk;
}

int Tool::Gi(bool show) {
  OpenReport rep;
  auto m = OpenMeta(true, &rep);
  if (!m.ok()) return Fail(m.status());
  const Superblock& sb = (*m)->superblock();
  int slot = -1;
  if (HasOpt(a_, "node-id")) {
    auto n = Opt(a_, "node-id", 0, 0, kMaxNodeId);
    if (!n.ok()) return Fail(n.status());
    slot = (*m)->FindPeerSlot(static_cast<int32_t>(*n));
    if (slot < 0) {
      return Fail(Error(Errc::kNotFound, "no peer slot for node-id {} in the meta data", *n));
    }
  } else {
    for (uint32_t s = 0; s < sb.max_peers && slot < 0; ++s) {
      if (sb.peers[s].node_id != -1) slot = static_cast<int>(s);
    }
  }
  if (!show) {
    out_ << GiLine(sb, slot) << "\n";
    return kExitOk;
  }
  out_ << GiText(sb, slot);
  if (slot >= 0) {
    out_ << fmt::format("peer node-id {} (slot {}): {} out-of-sync blocks of 4 KiB\n",
                        sb.peers[slot].node_id, slot, (*m)->OutOfSyncBits(slot));
  } else {
    out_ << "no peer slot assigned yet -- never seen a peer\n";
  }
  return kExitOk;
}

// Internal meta data lives at the end of the device; after the device grew it is found
// at the recorded old end and moved to the new end (the new area becomes out of sync).
// outdate/invalidate on a detached disk, as drbdmeta does them: bsradm falls back to
// these when no bsrd holds the volume.
int Tool::Outdate() {
  OpenReport rep;
  auto m = OpenMeta(false, &rep);
  if (!m.ok()) return Fail(m.status());
  uint32_t flags = (*m)->superblock().flags;
  if (!(flags & kFlagConsistent)) {
    (void)(*m)->Close();
    err_ << "bsrmeta: outdate refused: the disk is Inconsistent (flags: " << SbFlagsToString(flags)
         << "); only Consistent data can be marked Outdated\n";
    return kExitRefused;
  }
  Status st = (*m)->SetFlags(0, kFlagWasUpToDate);
  if (st.ok()) st = (*m)->Close();
  if (!st.ok()) return Fail(st);
  return kExitOk;
}

int Tool::Invalidate() {
  OpenReport rep;
  auto m = OpenMeta(false, &rep);
  if (!m.ok()) return Fail(m.status());
  Status st = (*m)->SetFlags(0, kFlagConsistent | kFlagWasUpToDate);
  for (int slot = 0; st.ok() && slot < kMaxPeers; ++slot) {
    if ((*m)->bitmap(slot) != nullptr) st = (*m)->SetAllBits(slot);
  }
  if (st.ok()) st = (*m)->WriteDirtyBitmap();
  if (st.ok()) st = (*m)->Close();
  if (!st.ok()) return Fail(st);
  return kExitOk;
}

int Tool::CheckResize() {
  OpenReport rep;
  auto m = OpenMeta(true, &rep);
  if (m.ok()) {
    RecordSize((*m)->io().Size());
    out_ << "meta data found where expected on " << dev_ << "; nothing to do\n";
    return kExitOk;
  }
  if (placement_.kind != PlacementKind::kInternal || m.status().code() != Errc::kNotFound) {
    return Fail(m.status());
  }
  auto old_size = LastKnownSize();
  if (!old_size.ok()) return Fail(m.status());
  auto io = OpenDev(false);
  if (!io.ok()) return Fail(io.status());
  uint64_t new_size = (*io)->Size();
  if (*old_size > new_size) {
    return Fail(Error(Errc::kState, "{} shrank from {} to {} bytes: its internal meta data is gone",
                      dev_, *old_size, new_size));
  }
  // Read the old meta data through a view of the device ending at the old size.
  struct View final : MetaIo {
    MetaIo* inner;
    uint64_t size;
    Status Read(uint64_t o, std::span<uint8_t> d) override { return inner->Read(o, d); }
    Status Write(uint64_t o, std::span<const uint8_t> d) override { return inner->Write(o, d); }
    Status Flush() override { return inner->Flush(); }
    uint64_t Size() const override { return size; }
    std::string Name() const override { return inner->Name(); }
  };
  auto view = std::make_unique<View>();
  view->inner = io->get();
  view->size = *old_size;
  OpenOptions ro;
  ro.placement = placement_;
  ro.read_only = true;
  auto old = Metadata::Open(std::move(view), ro, &rep);
  if (!old.ok()) return Fail(old.status().WithContext("old meta data"));
  if (rep.al_replay_pending) {
    return Fail(Error(Errc::kState,
                      "old meta data is unclean; attach it at the old size and "
                      "detach cleanly first"));
  }
  Superblock sb = (*old)->superblock();
  auto l = ComputeLayout(placement_, new_size, sb.max_peers, sb.al);
  if (!l.ok()) return Fail(l.status());
  uint64_t old_bits = sb.data_bits();
  uint64_t old_sb_off = sb.md_end - kBlockSize;
  sb.md_end = l->md_end;
  sb.md_size = l->md_size();
  sb.bm_blocks_per_peer = l->bm_blocks_per_peer;
  sb.data_size = l->md_start;
  std::vector<Bitmap> bitmaps(kMaxPeers);
  for (uint32_t s = 0; s < sb.max_peers; ++s) {
    if (sb.peers[s].node_id == -1) continue;
    Bitmap bm(sb.data_bits());
    bm.Merge((*old)->bitmap(static_cast<int>(s))->words());
    bm.Set(old_bits, sb.data_bits() - old_bits);
    bitmaps[s] = std::move(bm);
  }
  Status st = Metadata::WriteFresh(**io, sb, bitmaps);
  if (!st.ok()) return Fail(st);
  if (old_sb_off + kBlockSize <= l->md_start) {
    std::vector<uint8_t> zeros(kBlockSize, 0);
    st = (*io)->Write(old_sb_off, zeros);
    if (st.ok()) st = (*io)->Flush();
    if (!st.ok()) return Fail(st);
  }
  RecordSize(new_size);
  out_ << fmt::format(
      "moved meta data from the old end ({} bytes) to the new end ({} bytes); "
      "usable data size now {}\n",
      *old_size, new_size, sb.data_size);
  return kExitOk;
}

}  // namespace

int RunBsrmeta(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  auto a = ParseArgs(args);
  if (!a.ok()) {
    err << "bsrmeta: " << a.status().message() << "\n" << kUsage;
    return kExitUsage;
  }
  return Tool(std::move(*a), out, err).Run();
}

}  // namespace bsr::meta
