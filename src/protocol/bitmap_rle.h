// Bitmap exchange: splits a bitmap (1 bit per 4 KiB block) into BitmapPlain or
// BitmapRle chunks, and validates and OR-merges received chunks into a destination
// bitmap. Plain values owned by the caller's strand; no internal locking.
//
// Bit i of a bitmap is bit (i % 64) of words[i / 64]. Chunking: the bitmap is cut into
// windows of chunk_bytes * 8 bits; each window is sent as one chunk, RLE when its run
// code is smaller than the plain words, plain otherwise.
// RLE code: run lengths as unsigned LEB128 varints (7 bits per byte, low groups first,
// high bit = more bytes follow, at most 10 bytes), alternating clear/set starting with
// first_run_set; every run is >= 1 and the runs add up to exactly bit_count.
#pragma once

#include <cstdint>
#include <span>
#include <variant>
#include <vector>

#include "common/status.h"
#include "protocol/io_packets.h"

namespace bsr::protocol {

// Appends `value` as an LEB128 varint; returns the bytes written.
size_t PutVarint(std::vector<uint8_t>* out, uint64_t value);
// Reads one varint at *pos; false when truncated or longer than 10 bytes / 64 bits.
bool GetVarint(std::span<const uint8_t> in, size_t* pos, uint64_t* value);

using BitmapChunk = std::variant<BitmapPlain, BitmapRle>;

// Words a bitmap of total_bits needs.
inline uint64_t BitmapWords(uint64_t total_bits) {
  return (total_bits + 63) / 64;
}
// Set bits among the first total_bits.
uint64_t CountSetBits(std::span<const uint64_t> words, uint64_t total_bits);

class BitmapEncoder {
 public:
  // `words` must hold BitmapWords(total_bits) words and outlive the encoder.
  // use_rle false (the use-rle option off) sends plain chunks only.
  BitmapEncoder(std::span<const uint64_t> words, uint64_t total_bits, bool use_rle,
                uint32_t chunk_bytes = kBitmapChunkBytes);

  bool done() const { return pos_ >= total_bits_; }
  // The next chunk; call only while !done().
  BitmapChunk Next();

  uint64_t plain_chunks() const { return plain_chunks_; }
  uint64_t rle_chunks() const { return rle_chunks_; }

 private:
  std::span<const uint64_t> words_;
  uint64_t total_bits_;
  bool use_rle_;
  uint64_t window_bits_;
  uint64_t pos_ = 0;
  uint64_t plain_chunks_ = 0;
  uint64_t rle_chunks_ = 0;
};

// Every chunk of a whole bitmap, in order.
std::vector<BitmapChunk> EncodeBitmap(std::span<const uint64_t> words, uint64_t total_bits,
                                      bool use_rle, uint32_t chunk_bytes = kBitmapChunkBytes);

// Validate one chunk against a bitmap of total_bits, then OR it into dest (which
// must hold BitmapWords(total_bits) words). On error dest is unchanged.
Status MergeBitmapChunk(const BitmapPlain& chunk, std::span<uint64_t> dest, uint64_t total_bits);
Status MergeBitmapChunk(const BitmapRle& chunk, std::span<uint64_t> dest, uint64_t total_bits);

// Receives one bitmap exchange: chunks must arrive in order and cover the bitmap
// exactly once; each is validated and OR-merged (the received bits add to ours).
class BitmapReceiver {
 public:
  BitmapReceiver(std::span<uint64_t> dest, uint64_t total_bits)
      : dest_(dest), total_bits_(total_bits) {}

  Status Apply(const BitmapPlain& chunk);
  Status Apply(const BitmapRle& chunk);
  Status Apply(const BitmapChunk& chunk);
  bool done() const { return next_bit_ >= total_bits_; }
  uint64_t next_bit() const { return next_bit_; }

 private:
  Status CheckOrder(uint64_t start_bit) const;

  std::span<uint64_t> dest_;
  uint64_t total_bits_;
  uint64_t next_bit_ = 0;
};

}  // namespace bsr::protocol
