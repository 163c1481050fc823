// Big-endian encoding helpers for on-disk and wire structs. ByteReader is
// bounds-checked: every read past the end fails instead of touching memory.
// Plain values; owned by whichever thread holds them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bsr {

inline void StoreBe16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void StoreBe32(uint8_t* p, uint32_t v) {
  for (int i = 3; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
inline void StoreBe64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
inline uint16_t LoadBe16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] << 8 | p[1]);
}
inline uint32_t LoadBe32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}
inline uint64_t LoadBe64(const uint8_t* p) {
  return uint64_t{LoadBe32(p)} << 32 | LoadBe32(p + 4);
}

// Appends big-endian fields to a growing buffer.
class ByteWriter {
 public:
  explicit ByteWriter(std::vector<uint8_t>* out) : out_(out) {}

  void U8(uint8_t v) { out_->push_back(v); }
  void U16(uint16_t v) { StoreBe16(Grow(2), v); }
  void U32(uint32_t v) { StoreBe32(Grow(4), v); }
  void U64(uint64_t v) { StoreBe64(Grow(8), v); }
  void Bytes(std::span<const uint8_t> data) { out_->insert(out_->end(), data.begin(), data.end()); }
  void Zeros(size_t n) { out_->resize(out_->size() + n, 0); }
  // Length-prefixed (u32) string.
  void String(std::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    out_->insert(out_->end(), s.begin(), s.end());
  }
  size_t size() const { return out_->size(); }

 private:
  uint8_t* Grow(size_t n) {
    out_->resize(out_->size() + n);
    return out_->data() + out_->size() - n;
  }
  std::vector<uint8_t>* out_;
};

// Reads big-endian fields; once a read runs past the end, ok() stays false and
// every later read yields zero, so decoders check ok() once at the end.
class ByteReader {
 public:
  explicit ByteReader(std::span<const uint8_t> data) : data_(data) {}

  uint8_t U8() { return Take(1) ? data_[pos_ - 1] : 0; }
  uint16_t U16() { return Take(2) ? LoadBe16(&data_[pos_ - 2]) : 0; }
  uint32_t U32() { return Take(4) ? LoadBe32(&data_[pos_ - 4]) : 0; }
  uint64_t U64() { return Take(8) ? LoadBe64(&data_[pos_ - 8]) : 0; }
  std::span<const uint8_t> Bytes(size_t n) {
    if (!Take(n)) return {};
    return data_.subspan(pos_ - n, n);
  }
  void Skip(size_t n) { Take(n); }
  // Length-prefixed (u32) string, refused when longer than max_len.
  std::string String(size_t max_len) {
    uint32_t n = U32();
    if (n > max_len) {
      ok_ = false;
      return {};
    }
    auto b = Bytes(n);
    return std::string(b.begin(), b.end());
  }

  bool ok() const { return ok_; }
  size_t pos() const { return pos_; }
  size_t remaining() const { return ok_ ? data_.size() - pos_ : 0; }

 private:
  bool Take(size_t n) {
    if (!ok_ || n > data_.size() - pos_) {
      ok_ = false;
      return false;
    }
    pos_ += n;
    return true;
  }
  std::span<const uint8_t> data_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace bsr
