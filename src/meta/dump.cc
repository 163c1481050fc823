#include "meta/dump.h"

#include <charconv>
#include <sstream>

#include "meta/metadata.h"

namespace bsr::meta {
namespace {

constexpr std::string_view kHeader = "# bsr meta data dump (bsrmeta dump-md)";

std::vector<std::string_view> Split(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

template <typename T>
bool ParseNum(std::string_view s, T* out) {
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s.remove_prefix(2);
    base = 16;
  }
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out, base);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

Result<uint32_t> ParseFlags(std::string_view s, bool peer) {
  uint32_t flags = 0;
  if (s == "none") return flags;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string_view::npos) j = s.size();
    auto name = s.substr(i, j - i);
    auto bit = peer ? PeerFlagFromName(name) : SbFlagFromName(name);
    if (!bit.ok()) return bit.status();
    flags |= *bit;
    i = j + 1;
  }
  return flags;
}

}  // namespace

std::string DumpText(const Metadata& md) {
  const Superblock& sb = md.superblock();
  std::string o;
  o += fmt::format("{}\n", kHeader);
  o += "version bsr1\n";
  o += fmt::format("placement {}\n", sb.placement.ToString());
  o += fmt::format("max-peers {}\n", sb.max_peers);
  o += fmt::format("node-id {}\n", sb.node_id);
  o += fmt::format("data-size {}\n", sb.data_size);
  o += fmt::format("al-stripes {}\n", sb.al.stripes);
  o += fmt::format("al-stripe-size-kB {}\n", uint64_t{sb.al.stripe_size_4k} * 4);
  o += fmt::format("al-extents {}\n", sb.al.extents);
  o += fmt::format("peer-max-bio-size {}\n", sb.peer_max_bio_size);
  o += fmt::format("flags {}\n", SbFlagsToString(sb.flags));
  o += fmt::format("current-uuid 0x{}\n", UuidString(sb.current_uuid));
  for (int i = 0; i < kHistoryUuids; ++i) {
    if (sb.history[i]) o += fmt::format("history-uuid {} 0x{}\n", i, UuidString(sb.history[i]));
  }
  for (uint32_t s = 0; s < sb.max_peers; ++s) {
    const PeerSlot& p = sb.peers[s];
    if (p.node_id == -1) continue;
    o += fmt::format("peer {} node-id {} bitmap-uuid 0x{} flags {}\n", s, p.node_id,
                     UuidString(p.bitmap_uuid), PeerFlagsToString(p.flags));
    const Bitmap* bm = md.bitmap(static_cast<int>(s));
    uint64_t bit = bm->FindNextSet(0);
    while (bit != kNoBit) {
      uint64_t end = bm->FindNextClear(bit);
      if (end == kNoBit) end = bm->bits();
      o += fmt::format("bitmap {} set {} {}\n", s, bit, end - bit);
      bit = bm->FindNextSet(end);
    }
  }
  o += "end\n";
  return o;
}

Result<ParsedDump> ParseDump(std::string_view text) {
  ParsedDump d;
  d.runs.assign(kMaxPeers, {});
  Superblock& sb = d.sb;
  bool seen_version = false, seen_end = false, seen_size = false, seen_peers = false;
  int line_no = 0;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    ++line_no;
    auto bad = [&](std::string_view why) {
      return Error(Errc::kInvalidArgument, "dump line {}: {}: '{}'", line_no, why, line);
    };
    auto t = Split(line);
    if (t.empty() || t[0][0] == '#') continue;
    if (seen_end) return bad("text after 'end'");
    std::string_view key = t[0];
    auto need = [&](size_t n) { return t.size() == n; };
    if (key == "end" && need(1)) {
      seen_end = true;
    } else if (key == "version" && need(2)) {
      if (t[1] != "bsr1") return bad("unsupported dump version (expected bsr1)");
      seen_version = true;
    } else if (key == "placement" && need(2)) {
      auto p = Placement::Parse(t[1]);
      if (!p.ok()) return bad(p.status().message());
      sb.placement = *p;
    } else if (key == "max-peers" && need(2)) {
      if (!ParseNum(t[1], &sb.max_peers) || sb.max_peers < 1 || sb.max_peers > kMaxPeers) {
        return bad("max-peers must be 1..31");
      }
      seen_peers = true;
    } else if (key == "node-id" && need(2)) {
      if (!ParseNum(t[1], &sb.node_id) || sb.node_id < -1 || sb.node_id > kMaxNodeId) {
        return bad("node-id must be -1..31");
      }
    } else if (key == "data-size" && need(2)) {
      if (!ParseNum(t[1], &sb.data_size) || sb.data_size % kBlockSize) {
        return bad("data-size must be a multiple of 4096");
      }
      seen_size = true;
    } else if (key == "al-stripes" && need(2)) {
      if (!ParseNum(t[1], &sb.al.stripes)) return bad("bad number");
    } else if (key == "al-stripe-size-kB" && need(2)) {
      uint32_t kb = 0;
      if (!ParseNum(t[1], &kb) || kb % 4 || kb == 0) return bad("must be a multiple of 4");
      sb.al.stripe_size_4k = kb / 4;
    } else if (key == "al-extents" && need(2)) {
      if (!ParseNum(t[1], &sb.al.extents)) return bad("bad number");
    } else if (key == "peer-max-bio-size" && need(2)) {
      if (!ParseNum(t[1], &sb.peer_max_bio_size)) return bad("bad number");
    } else if (key == "flags" && need(2)) {
      auto f = ParseFlags(t[1], false);
      if (!f.ok()) return bad(f.status().message());
      sb.flags = *f;
    } else if (key == "current-uuid" && need(2)) {
      if (!ParseNum(t[1], &sb.current_uuid)) return bad("bad uuid");
    } else if (key == "history-uuid" && need(3)) {
      uint32_t i = 0;
      if (!ParseNum(t[1], &i) || i >= kHistoryUuids || !ParseNum(t[2], &sb.history[i])) {
        return bad("expected history-uuid INDEX(0..31) UUID");
      }
    } else if (key == "peer" && need(8) && t[2] == "node-id" && t[4] == "bitmap-uuid" &&
               t[6] == "flags") {
      uint32_t s = 0;
      PeerSlot p;
      if (!ParseNum(t[1], &s) || s >= kMaxPeers || !ParseNum(t[3], &p.node_id) || p.node_id < 0 ||
          p.node_id > kMaxNodeId || !ParseNum(t[5], &p.bitmap_uuid)) {
        return bad("expected peer SLOT node-id N bitmap-uuid UUID flags F");
      }
      auto f = ParseFlags(t[7], true);
      if (!f.ok()) return bad(f.status().message());
      p.flags = *f;
      if (!seen_size) return bad("peer before data-size");
      if (s >= sb.max_peers) return bad("peer slot beyond max-peers");
      if (sb.peers[s].node_id != -1) return bad("peer slot listed twice");
      sb.peers[s] = p;
    } else if (key == "bitmap" && need(5) && t[2] == "set") {
      uint32_t s = 0;
      uint64_t first = 0, count = 0;
      if (!ParseNum(t[1], &s) || s >= kMaxPeers || !ParseNum(t[3], &first) ||
          !ParseNum(t[4], &count)) {
        return bad("expected bitmap SLOT set FIRST COUNT");
      }
      if (sb.peers[s].node_id == -1) return bad("bitmap for a slot without a peer line");
      if (first > sb.data_bits() || count > sb.data_bits() - first || count == 0) {
        return bad("bit range beyond data-size");
      }
      d.runs[s].emplace_back(first, count);
    } else {
      return bad("unknown or malformed line");
    }
  }
  if (!seen_version || !seen_size || !seen_peers) {
    return Error(Errc::kInvalidArgument, "dump incomplete: needs version, max-peers, data-size");
  }
  if (!seen_end) return Error(Errc::kInvalidArgument, "dump truncated: no 'end' line");
  BSR_RETURN_IF_ERROR(sb.al.Validate().WithContext("dump"));
  return d;
}

Status RestoreDump(MetaIo& io, const Placement& placement, std::string_view text) {
  BSR_ASSIGN_OR_RETURN(ParsedDump d, ParseDump(text));
  Superblock& sb = d.sb;
  auto l = ComputeLayout(placement, io.Size(), sb.max_peers, sb.al);
  if (!l.ok()) return l.status().WithContext(io.Name());
  if (placement.kind == PlacementKind::kInternal && sb.data_size != l->md_start) {
    return Error(Errc::kInvalidArgument,
                 "{}: dump describes {} bytes of data, internal meta data here leaves {}",
                 io.Name(), sb.data_size, l->md_start);
  }
  if (sb.data_size > l->capacity()) {
    return Error(Errc::kInvalidArgument,
                 "{}: dump describes {} bytes of data, meta data here "
                 "can describe only {}",
                 io.Name(), sb.data_size, l->capacity());
  }
  sb.placement = placement;
  sb.md_end = l->md_end;
  sb.md_size = l->md_size();
  sb.bm_blocks_per_peer = l->bm_blocks_per_peer;
  std::vector<Bitmap> bitmaps(kMaxPeers);
  for (uint32_t s = 0; s < sb.max_peers; ++s) {
    if (sb.peers[s].node_id == -1) continue;
    bitmaps[s] = Bitmap(sb.data_bits());
    for (auto [first, count] : d.runs[s]) bitmaps[s].Set(first, count);
  }
  return Metadata::WriteFresh(io, sb, bitmaps);
}

}  // namespace bsr::meta
