// libFuzzer target for the wire codec: arbitrary bytes through the streaming frame
// decoder and the dispatch table, every per-type payload decoder, and the bitmap RLE
// decoder. Decoding must never crash, and whatever decodes must re-encode to the
// same bytes (the codecs are canonical) and, for a frame, to the same header flags and
// payload crc (so the encoder and decoder agree on what kFrameFlagBlockOutsideCrc
// leaves out of the crc).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "common/bytes.h"
#include "protocol/bitmap_rle.h"
#include "protocol/dispatch.h"

namespace bp = bsr::protocol;

namespace {

void Check(bool condition) {
  if (!condition) __builtin_trap();
}

// Any decoded packet re-encodes to exactly the payload it came from.
std::vector<uint8_t> CheckCanonical(const bp::Packet& packet, std::span<const uint8_t> payload,
                                    uint16_t flags = 0) {
  std::vector<uint8_t> wire = bp::EncodePacket(packet, 0, flags);
  Check(wire.size() == bp::kFrameHeaderSize + payload.size());
  Check(std::equal(payload.begin(), payload.end(), wire.begin() + bp::kFrameHeaderSize));
  return wire;
}

void MergeIfBitmap(const bp::Packet& packet, uint64_t total_bits) {
  std::vector<uint64_t> dest(bp::BitmapWords(total_bits));
  if (auto* rle = std::get_if<bp::BitmapRle>(&packet)) {
    (void)bp::MergeBitmapChunk(*rle, dest, total_bits);
  } else if (auto* plain = std::get_if<bp::BitmapPlain>(&packet)) {
    (void)bp::MergeBitmapChunk(*plain, dest, total_bits);
  }
}

template <typename F>
void HandleFrame(const F& f, bp::SocketKind socket) {
  Check(f.payload.size() == f.header.payload_length);
  auto packet = bp::DecodePacket(f, socket);
  if (!packet.ok()) return;
  auto wire = CheckCanonical(*packet, f.payload, f.header.flags);
  Check(bsr::LoadBe16(wire.data() + 8) == f.header.flags);
  Check(bsr::LoadBe32(wire.data() + 16) == f.header.payload_crc);
  MergeIfBitmap(*packet, 1 + f.header.volume * 17);
}

// Mode 0: a byte stream split into pieces whose sizes come from the input; frames
// taken as copies, as views, or (as the peer sockets do for large blocks) with the
// payload received outside the decoder: TakePendingPayload, the rest of the payload
// copied straight from the stream, FinishExternal.
// `allowed_flags`: the header flags the connection negotiated.
void FuzzStream(std::span<const uint8_t> in, uint16_t allowed_flags) {
  if (in.empty()) return;
  bp::SocketKind socket = static_cast<bp::SocketKind>(in[0] % 3);
  int how = (in[0] / 3) % 3;
  size_t step = 1 + in[0] / 9;
  in = in.subspan(1);
  bp::StreamDecoder decoder;
  decoder.set_allowed_flags(allowed_flags);
  size_t pos = 0;
  bool failed = false;
  bool cut_in_payload = false;  // the stream ended inside an external payload
  while (pos < in.size() && !failed) {
    size_t n = std::min(step, in.size() - pos);
    decoder.Feed(in.subspan(pos, n));
    pos += n;
    step = step * 3 + 1;
    for (;;) {
      if (how == 0) {
        auto frame = decoder.Next();
        if (!frame.ok()) failed = true;
        if (failed || !frame->has_value()) break;
        HandleFrame(**frame, socket);
        continue;
      }
      auto frame = decoder.NextView();
      if (!frame.ok()) failed = true;
      if (failed) break;
      if (frame->has_value()) {
        HandleFrame(**frame, socket);
        continue;
      }
      const bp::FrameHeader* pending = decoder.pending_header();
      if (how == 1 || pending == nullptr) break;
      std::vector<uint8_t> payload(pending->payload_length);
      size_t have = decoder.TakePendingPayload(payload);
      Check(have <= payload.size());
      size_t take = std::min(payload.size() - have, in.size() - pos);
      std::copy_n(in.begin() + pos, take, payload.begin() + have);
      pos += take;
      if (have + take < payload.size()) {
        cut_in_payload = true;
        failed = true;
        break;
      }
      auto header = decoder.FinishExternal(payload);
      if (!header.ok()) {
        failed = true;
        break;
      }
      HandleFrame(bp::FrameView{*header, payload}, socket);
    }
  }
  if (!cut_in_payload) (void)decoder.Finish();
}

// Mode 1: one payload straight into the decoder of the type chosen by a byte.
void FuzzPayload(std::span<const uint8_t> in) {
  if (in.empty()) return;
  auto table = bp::DispatchTable();
  const bp::DispatchEntry& entry = table[in[0] % table.size()];
  std::span<const uint8_t> payload = in.subspan(1);
  auto packet = entry.decode(payload);
  if (!packet.ok()) return;
  Check(bp::TypeOf(*packet) == entry.type);
  CheckCanonical(*packet, payload);
  MergeIfBitmap(*packet, 4096);
}

// Mode 2: RLE chunks into a bitmap; accepted runs must set bits only inside the
// chunk's range; and the input as a bitmap must survive encode -> merge.
void FuzzRle(std::span<const uint8_t> in) {
  if (in.size() < 4) return;
  uint64_t total_bits = 1 + (uint64_t{in[0]} << 8 | in[1]);
  bp::BitmapRle chunk;
  chunk.start_bit = (in[2] % 8) * 64;
  chunk.bit_count = 1 + in[3] * 8;
  chunk.first_run_set = in[2] & 0x80;
  chunk.code.assign(in.begin() + 4, in.end());
  std::vector<uint64_t> dest(bp::BitmapWords(total_bits));
  if (bp::MergeBitmapChunk(chunk, dest, total_bits).ok()) {
    uint64_t set = bp::CountSetBits(dest, total_bits);
    Check(set <= chunk.bit_count);
    for (uint64_t bit = 0; bit < total_bits; ++bit) {
      bool inside = bit >= chunk.start_bit && bit < chunk.start_bit + chunk.bit_count;
      if (!inside) Check(!((dest[bit / 64] >> (bit % 64)) & 1));
    }
  }
  // The raw input as a bitmap: round trip through both encodings.
  std::vector<uint64_t> words(bp::BitmapWords(in.size() * 8));
  for (size_t i = 0; i < in.size(); ++i) words[i / 8] |= uint64_t{in[i]} << (8 * (i % 8));
  for (bool rle : {true, false}) {
    std::vector<uint64_t> out(words.size());
    bp::BitmapReceiver rx(out, in.size() * 8);
    for (const auto& c : bp::EncodeBitmap(words, in.size() * 8, rle, 64)) {
      Check(rx.Apply(c).ok());
    }
    Check(rx.done());
    Check(out == words);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::span<const uint8_t> in(data + 1, size - 1);
  switch (data[0] % 3) {
    case 0: FuzzStream(in, (data[0] / 3) & 1 ? bp::kFrameFlagBlockOutsideCrc : 0); break;
    case 1: FuzzPayload(in); break;
    case 2: FuzzRle(in); break;
  }
  return 0;
}
