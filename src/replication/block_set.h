// BlockSet: a set of whole 4 KiB blocks (the bitmap's granularity) kept as a bitmap that
// grows with the device; used for the Primary's writes a SyncTarget must not take from
// another peer (resync.cc). Owned by one Connection, io thread only.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace bsr::replication {

class BlockSet {
 public:
  static constexpr uint64_t kBlock = 4096;

  // Adds the blocks that [offset, offset + length) covers whole; a range that reaches
  // `size` (the device's bytes now, `bits` its blocks) also covers the partial last one,
  // as Device::SetPeerInSync does.
  void AddCovered(uint64_t offset, uint64_t length, uint64_t bits, uint64_t size) {
    uint64_t first = (offset + kBlock - 1) / kBlock;
    uint64_t end = offset + length >= size ? bits : std::min((offset + length) / kBlock, bits);
    if (first >= end) return;
    if (words_.size() * 64 < bits) words_.resize((bits + 63) / 64, 0);
    for (uint64_t b = first; b < end; ++b) words_[b / 64] |= uint64_t{1} << (b % 64);
  }

  // f(first_block, count) for each run of blocks in the set below `limit` blocks.
  template <typename F>
  void ForEachRun(uint64_t limit, F f) const {
    const uint64_t bits = std::min<uint64_t>(words_.size() * 64, limit);
    uint64_t b = 0;
    while (b < bits) {
      if (b % 64 == 0 && words_[b / 64] == 0) {
        b += 64;
        continue;
      }
      if (!Has(b)) {
        ++b;
        continue;
      }
      uint64_t start = b;
      while (b < bits && Has(b)) ++b;
      f(start, b - start);
    }
  }

  bool empty() const { return words_.empty(); }
  void clear() { words_.clear(); }

 private:
  bool Has(uint64_t b) const { return (words_[b / 64] >> (b % 64)) & 1; }
  std::vector<uint64_t> words_;
};

}  // namespace bsr::replication
