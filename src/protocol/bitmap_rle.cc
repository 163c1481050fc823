#include "protocol/bitmap_rle.h"

#include <algorithm>
#include <bit>

namespace bsr::protocol {

size_t PutVarint(std::vector<uint8_t>* out, uint64_t value) {
  size_t n = 0;
  do {
    uint8_t byte = value & 0x7F;
    value >>= 7;
    out->push_back(value ? byte | 0x80 : byte);
    ++n;
  } while (value);
  return n;
}

bool GetVarint(std::span<const uint8_t> in, size_t* pos, uint64_t* value) {
  uint64_t v = 0;
  for (int i = 0; i < 10; ++i) {
    if (*pos >= in.size()) return false;
    uint8_t byte = in[(*pos)++];
    if (i == 9 && byte > 1) return false;  // more than 64 bits
    v |= uint64_t{byte & 0x7Fu} << (7 * i);
    if (!(byte & 0x80)) {
      *value = v;
      return true;
    }
  }
  return false;
}

namespace {

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >>= 7) ++n;
  return n;
}

bool TestBit(std::span<const uint64_t> words, uint64_t bit) {
  return (words[bit / 64] >> (bit % 64)) & 1;
}

// Length of the run of `value` bits starting at pos, stopping at end.
uint64_t RunLength(std::span<const uint64_t> words, uint64_t pos, uint64_t end, bool value) {
  uint64_t start = pos;
  while (pos < end) {
    uint64_t word = words[pos / 64];
    if (value) word = ~word;
    word >>= pos % 64;  // first differing bit is the lowest set bit of `word`
    uint64_t in_word = 64 - pos % 64;
    uint64_t run = word ? static_cast<uint64_t>(std::countr_zero(word)) : in_word;
    if (run > in_word) run = in_word;
    pos += run;
    if (run < in_word) break;
  }
  return std::min(pos, end) - start;
}

void SetBits(std::span<uint64_t> words, uint64_t pos, uint64_t len) {
  while (len > 0) {
    uint64_t offset = pos % 64;
    uint64_t n = std::min<uint64_t>(len, 64 - offset);
    uint64_t mask = n == 64 ? ~uint64_t{0} : ((uint64_t{1} << n) - 1) << offset;
    words[pos / 64] |= mask;
    pos += n;
    len -= n;
  }
}

uint64_t TailMask(uint64_t total_bits) {
  return total_bits % 64 ? (uint64_t{1} << (total_bits % 64)) - 1 : ~uint64_t{0};
}

}  // namespace

uint64_t CountSetBits(std::span<const uint64_t> words, uint64_t total_bits) {
  uint64_t n = BitmapWords(total_bits);
  uint64_t count = 0;
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t w = words[i];
    if (i == n - 1) w &= TailMask(total_bits);
    count += static_cast<uint64_t>(std::popcount(w));
  }
  return count;
}

BitmapEncoder::BitmapEncoder(std::span<const uint64_t> words, uint64_t total_bits, bool use_rle,
                             uint32_t chunk_bytes)
    : words_(words),
      total_bits_(total_bits),
      use_rle_(use_rle),
      window_bits_(std::max<uint64_t>(64, uint64_t{chunk_bytes} / 8 * 64)) {}

BitmapChunk BitmapEncoder::Next() {
  uint64_t start = pos_;
  uint64_t end = std::min(total_bits_, start + window_bits_);
  pos_ = end;
  uint64_t plain_bytes = BitmapWords(end - start) * 8;
  if (use_rle_) {
    BitmapRle rle;
    rle.start_bit = start;
    rle.bit_count = end - start;
    rle.first_run_set = TestBit(words_, start);
    bool value = rle.first_run_set;
    bool fits = true;
    for (uint64_t p = start; p < end;) {
      uint64_t run = RunLength(words_, p, end, value);
      if (rle.code.size() + VarintSize(run) >= plain_bytes) {
        fits = false;
        break;
      }
      PutVarint(&rle.code, run);
      p += run;
      value = !value;
    }
    if (fits) {
      ++rle_chunks_;
      return rle;
    }
  }
  BitmapPlain plain;
  plain.start_bit = start;
  plain.words.assign(words_.begin() + static_cast<ptrdiff_t>(start / 64),
                     words_.begin() + static_cast<ptrdiff_t>(start / 64 + plain_bytes / 8));
  if (end == total_bits_) plain.words.back() &= TailMask(total_bits_);
  ++plain_chunks_;
  return plain;
}

std::vector<BitmapChunk> EncodeBitmap(std::span<const uint64_t> words, uint64_t total_bits,
                                      bool use_rle, uint32_t chunk_bytes) {
  std::vector<BitmapChunk> out;
  BitmapEncoder enc(words, total_bits, use_rle, chunk_bytes);
  while (!enc.done()) out.push_back(enc.Next());
  return out;
}

namespace {

Status CheckDest(std::span<uint64_t> dest, uint64_t total_bits) {
  if (dest.size() < BitmapWords(total_bits)) {
    return Error(Errc::kInvalidArgument, "bitmap of {} bits needs {} words, destination has {}",
                 total_bits, BitmapWords(total_bits), dest.size());
  }
  return Status::Ok();
}

}  // namespace

Status MergeBitmapChunk(const BitmapPlain& chunk, std::span<uint64_t> dest, uint64_t total_bits) {
  BSR_RETURN_IF_ERROR(CheckDest(dest, total_bits));
  if (chunk.start_bit % 64 != 0) {
    return Error(Errc::kProtocol, "BitmapPlain: start bit {} is not word aligned", chunk.start_bit);
  }
  uint64_t first_word = chunk.start_bit / 64;
  uint64_t total_words = BitmapWords(total_bits);
  if (first_word > total_words || chunk.words.size() > total_words - first_word) {
    return Error(Errc::kProtocol,
                 "BitmapPlain: {} words at bit {} run past the end of a {}-bit bitmap",
                 chunk.words.size(), chunk.start_bit, total_bits);
  }
  if (!chunk.words.empty() && first_word + chunk.words.size() == total_words &&
      (chunk.words.back() & ~TailMask(total_bits)) != 0) {
    return Error(Errc::kProtocol, "BitmapPlain: bits set beyond the end of a {}-bit bitmap",
                 total_bits);
  }
  for (size_t i = 0; i < chunk.words.size(); ++i) dest[first_word + i] |= chunk.words[i];
  return Status::Ok();
}

Status MergeBitmapChunk(const BitmapRle& chunk, std::span<uint64_t> dest, uint64_t total_bits) {
  BSR_RETURN_IF_ERROR(CheckDest(dest, total_bits));
  if (chunk.start_bit % 64 != 0) {
    return Error(Errc::kProtocol, "BitmapRle: start bit {} is not word aligned", chunk.start_bit);
  }
  if (chunk.start_bit > total_bits || chunk.bit_count > total_bits - chunk.start_bit) {
    return Error(Errc::kProtocol,
                 "BitmapRle: {} bits at bit {} run past the end of a {}-bit bitmap",
                 chunk.bit_count, chunk.start_bit, total_bits);
  }
  // Pass 1 validates every run, pass 2 applies: a bad chunk changes nothing.
  for (int pass = 0; pass < 2; ++pass) {
    size_t pos = 0;
    uint64_t covered = 0;
    bool value = chunk.first_run_set;
    while (pos < chunk.code.size()) {
      uint64_t run = 0;
      size_t at = pos;
      if (!GetVarint(chunk.code, &pos, &run)) {
        return Error(Errc::kProtocol, "BitmapRle: bad run-length code at byte {}", at);
      }
      if (run == 0) return Error(Errc::kProtocol, "BitmapRle: zero-length run at byte {}", at);
      if (run > chunk.bit_count - covered) {
        return Error(Errc::kProtocol,
                     "BitmapRle: run of {} bits at byte {} exceeds the chunk's {} bits "
                     "({} already covered)",
                     run, at, chunk.bit_count, covered);
      }
      if (pass == 1 && value) SetBits(dest, chunk.start_bit + covered, run);
      covered += run;
      value = !value;
    }
    if (covered != chunk.bit_count) {
      return Error(Errc::kProtocol, "BitmapRle: runs cover {} bits, the chunk claims {}", covered,
                   chunk.bit_count);
    }
  }
  return Status::Ok();
}

Status BitmapReceiver::CheckOrder(uint64_t start_bit) const {
  if (done()) {
    return Error(Errc::kProtocol, "bitmap chunk at bit {} after the bitmap of {} bits was complete",
                 start_bit, total_bits_);
  }
  if (start_bit != next_bit_) {
    return Error(Errc::kProtocol, "bitmap chunk starts at bit {}, expected bit {}", start_bit,
                 next_bit_);
  }
  return Status::Ok();
}

Status BitmapReceiver::Apply(const BitmapPlain& chunk) {
  BSR_RETURN_IF_ERROR(CheckOrder(chunk.start_bit));
  if (chunk.words.empty()) return Error(Errc::kProtocol, "BitmapPlain: empty chunk");
  BSR_RETURN_IF_ERROR(MergeBitmapChunk(chunk, dest_, total_bits_));
  next_bit_ = std::min(total_bits_, chunk.start_bit + chunk.words.size() * 64);
  return Status::Ok();
}

Status BitmapReceiver::Apply(const BitmapRle& chunk) {
  BSR_RETURN_IF_ERROR(CheckOrder(chunk.start_bit));
  BSR_RETURN_IF_ERROR(MergeBitmapChunk(chunk, dest_, total_bits_));
  next_bit_ = chunk.start_bit + chunk.bit_count;
  return Status::Ok();
}

Status BitmapReceiver::Apply(const BitmapChunk& chunk) {
  return std::visit([this](const auto& c) { return Apply(c); }, chunk);
}

}  // namespace bsr::protocol
