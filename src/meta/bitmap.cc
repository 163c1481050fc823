#include "meta/bitmap.h"

#include <algorithm>
#include <bit>

namespace bsr::meta {

Bitmap::Bitmap(uint64_t bits) : bits_(bits) {
  uint64_t blocks = (bits + kBitsPerBitmapBlock - 1) / kBitsPerBitmapBlock;
  words_.assign(blocks * kBitmapWordsPerBlock, 0);
  dirty_.assign(blocks, false);
}

uint64_t Bitmap::Apply(uint64_t first, uint64_t count, bool set) {
  if (first >= bits_) return 0;
  uint64_t end = first + std::min(count, bits_ - first);
  uint64_t changed = 0;
  uint64_t bit = first;
  while (bit < end) {
    uint64_t w = bit >> 6;
    uint64_t lo = bit & 63;
    uint64_t hi = std::min<uint64_t>(64, lo + (end - bit));
    uint64_t mask = (hi - lo == 64) ? ~uint64_t{0} : ((uint64_t{1} << (hi - lo)) - 1) << lo;
    uint64_t old = words_[w];
    uint64_t now = set ? (old | mask) : (old & ~mask);
    if (now != old) {
      changed += static_cast<uint64_t>(std::popcount(old ^ now));
      words_[w] = now;
      dirty_[w / kBitmapWordsPerBlock] = true;
    }
    bit += hi - lo;
  }
  if (set) {
    count_ += changed;
  } else {
    count_ -= changed;
  }
  return changed;
}

uint64_t Bitmap::Set(uint64_t first, uint64_t count) {
  return Apply(first, count, true);
}
uint64_t Bitmap::Clear(uint64_t first, uint64_t count) {
  return Apply(first, count, false);
}

uint64_t Bitmap::FindNextSet(uint64_t from) const {
  if (from >= bits_) return kNoBit;
  uint64_t w = from >> 6;
  uint64_t cur = words_[w] & (~uint64_t{0} << (from & 63));
  while (true) {
    if (cur) {
      uint64_t bit = (w << 6) + static_cast<uint64_t>(std::countr_zero(cur));
      return bit < bits_ ? bit : kNoBit;
    }
    if (++w >= words_.size()) return kNoBit;
    cur = words_[w];
  }
}

uint64_t Bitmap::FindNextClear(uint64_t from) const {
  if (from >= bits_) return kNoBit;
  uint64_t w = from >> 6;
  uint64_t cur = ~words_[w] & (~uint64_t{0} << (from & 63));
  while (true) {
    if (cur) {
      uint64_t bit = (w << 6) + static_cast<uint64_t>(std::countr_zero(cur));
      return bit < bits_ ? bit : kNoBit;
    }
    if (++w >= words_.size()) return kNoBit;
    cur = ~words_[w];
  }
}

uint64_t Bitmap::Merge(std::span<const uint64_t> words) {
  uint64_t before = count_;
  size_t n = std::min(words.size(), words_.size());
  for (size_t i = 0; i < n; ++i) {
    uint64_t now = words_[i] | words[i];
    if (now != words_[i]) {
      words_[i] = now;
      dirty_[i / kBitmapWordsPerBlock] = true;
    }
  }
  MaskTail();
  Recount();
  return count_ - before;
}

void Bitmap::LoadBlock(uint32_t block, std::span<const uint64_t> words) {
  size_t base = size_t{block} * kBitmapWordsPerBlock;
  uint64_t before = 0;
  for (size_t i = 0; i < kBitmapWordsPerBlock; ++i) {
    before += static_cast<uint64_t>(std::popcount(words_[base + i]));
    words_[base + i] = i < words.size() ? words[i] : 0;
  }
  if (block + 1 == dirty_.size()) MaskTail();
  uint64_t after = 0;
  for (size_t i = 0; i < kBitmapWordsPerBlock; ++i) {
    after += static_cast<uint64_t>(std::popcount(words_[base + i]));
  }
  count_ = count_ - before + after;
}

void Bitmap::MaskTail() {
  if (words_.empty()) return;
  uint64_t full = bits_ >> 6;
  if (full < words_.size() && (bits_ & 63)) {
    words_[full] &= (uint64_t{1} << (bits_ & 63)) - 1;
    ++full;
  }
  for (uint64_t i = full; i < words_.size(); ++i) words_[i] = 0;
}

void Bitmap::Recount() {
  uint64_t c = 0;
  for (uint64_t w : words_) c += static_cast<uint64_t>(std::popcount(w));
  count_ = c;
}

}  // namespace bsr::meta
