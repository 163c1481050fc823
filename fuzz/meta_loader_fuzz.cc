// libFuzzer target for the metadata loader: the input becomes the tail of a 128 KiB device
// (where internal meta data lives) and is opened read-only and read-write, then used;
// the block decoders and the dump parser also see the raw input. Nothing may crash.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "meta/dump.h"
#include "meta/metadata.h"

namespace {

using namespace bsr::meta;

constexpr uint64_t kDevice = 128 << 10;

void Exercise(Metadata& md) {
  (void)DumpText(md);
  if (md.read_only()) return;
  uint64_t size = md.data_size();
  if (size >= 8192) {
    auto r = md.BeginIo(4096, 4096);
    if (r.ok()) (void)md.CompleteIo(4096, 4096);
  }
  auto slot = md.AssignPeerSlot(5, false);
  if (slot.ok() && md.data_bits() > 10) {
    (void)md.SetBits(*slot, 3, 7);
    (void)md.WriteDirtyBitmap();
  }
  (void)md.SetCurrentUuid(0x1234);
  (void)md.Close();
}

void OpenImage(std::span<const uint8_t> input, bool read_only) {
  std::vector<uint8_t> image(kDevice, 0);
  size_t n = std::min<size_t>(input.size(), kDevice);
  std::copy(input.begin(), input.begin() + static_cast<long>(n),
            image.end() - static_cast<long>(n));
  OpenOptions o;
  o.read_only = read_only;
  OpenReport rep;
  auto m = Metadata::Open(std::make_unique<MemIo>(std::move(image)), o, &rep);
  (void)rep.Summary();
  if (m.ok()) Exercise(**m);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  OpenImage(in, true);
  OpenImage(in, false);
  (void)DecodeSuperblockBlock(in);
  (void)DecodeAlTransaction(in, kAlMaxExtents);
  std::vector<uint64_t> words(kBitmapWordsPerBlock);
  (void)DecodeBitmapBlock(in, 0, 0, words);
  std::string_view text(reinterpret_cast<const char*>(data), size);
  MemIo target(kDevice);
  (void)RestoreDump(target, Placement{}, text);
  return 0;
}
