#include "meta/signature.h"

#include <cstring>
#include <vector>

namespace bsr::meta {
namespace {

struct Sig {
  const char* name;
  uint64_t at;
  const char* magic;
  size_t len;
};

constexpr Sig kSigs[] = {
    {"ext2/ext3/ext4 file system", 1080, "\x53\xEF", 2},
    {"xfs file system", 0, "XFSB", 4},
    {"swap space", 4086, "SWAPSPACE2", 10},
    {"swap space", 4086, "SWAP-SPACE", 10},
    {"btrfs file system", 65600, "_BHRfS_M", 8},
    {"LVM2 physical volume", 536, "LVM2 001", 8},
};

}  // namespace

Result<std::string> DetectSignature(MetaIo& io, uint64_t offset) {
  if (offset >= io.Size()) return std::string();
  uint64_t n = std::min<uint64_t>(io.Size() - offset, 65536 + 4096);
  std::vector<uint8_t> buf(n);
  BSR_RETURN_IF_ERROR(io.Read(offset, buf));
  for (const Sig& s : kSigs) {
    if (s.at + s.len <= buf.size() && std::memcmp(buf.data() + s.at, s.magic, s.len) == 0) {
      return fmt::format("{} at offset {}", s.name, offset + s.at);
    }
  }
  return std::string();
}

}  // namespace bsr::meta
