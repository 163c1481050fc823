// In-memory bitmap of one peer slot (1 bit per 4 KiB block) with per-bitmap-block dirty
// tracking for write-back. Owned by Metadata, i.e. by the device's metadata strand.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "meta/format.h"

namespace bsr::meta {

inline constexpr uint64_t kNoBit = ~uint64_t{0};

class Bitmap {
 public:
  Bitmap() = default;
  explicit Bitmap(uint64_t bits);

  uint64_t bits() const { return bits_; }
  uint32_t blocks() const { return static_cast<uint32_t>(dirty_.size()); }
  uint64_t count() const { return count_; }

  bool Test(uint64_t bit) const { return bit < bits_ && (words_[bit >> 6] >> (bit & 63)) & 1; }
  // Set / clear [first, first+count) clamped to bits(); return how many bits changed.
  // Changed bitmap blocks become dirty.
  uint64_t Set(uint64_t first, uint64_t count);
  uint64_t Clear(uint64_t first, uint64_t count);
  // First set (clear) bit at or after `from`, or kNoBit.
  uint64_t FindNextSet(uint64_t from) const;
  uint64_t FindNextClear(uint64_t from) const;

  // Whole words; the tail beyond bits() is always zero.
  std::span<const uint64_t> words() const { return words_; }
  // ORs `words` in (bits beyond bits() ignored); returns bits newly set.
  uint64_t Merge(std::span<const uint64_t> words);

  // Words of bitmap block `block` (kBitmapWordsPerBlock of them).
  std::span<const uint64_t> BlockWords(uint32_t block) const {
    return std::span<const uint64_t>(words_).subspan(size_t{block} * kBitmapWordsPerBlock,
                                                     kBitmapWordsPerBlock);
  }
  // Replaces a block's words from disk (bits beyond bits() are dropped); not dirty after.
  void LoadBlock(uint32_t block, std::span<const uint64_t> words);

  bool dirty(uint32_t block) const { return dirty_[block]; }
  void MarkDirty(uint32_t block) { dirty_[block] = true; }
  void MarkClean(uint32_t block) { dirty_[block] = false; }
  // Bitmap block holding `bit`.
  static uint32_t BlockOf(uint64_t bit) { return static_cast<uint32_t>(bit / kBitsPerBitmapBlock); }

 private:
  uint64_t Apply(uint64_t first, uint64_t count, bool set);
  void MaskTail();
  void Recount();

  uint64_t bits_ = 0;
  uint64_t count_ = 0;
  std::vector<uint64_t> words_;
  std::vector<bool> dirty_;
};

}  // namespace bsr::meta
