#include "common/crc32c.h"

#include <array>

#if defined(__x86_64__)
#include <cpuid.h>
#include <nmmintrin.h>
#endif

namespace bsr {
namespace {

constexpr uint32_t kPoly = 0x82F63B78;  // reflected Castagnoli polynomial

// Slice-by-8 tables: portable fallback when SSE4.2 is absent.
constexpr std::array<std::array<uint32_t, 256>, 8> MakeTables() {
  std::array<std::array<uint32_t, 256>, 8> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    t[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; ++i) {
    for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
  }
  return t;
}
constexpr auto kTables = MakeTables();

uint32_t Software(const uint8_t* p, size_t n, uint32_t c) {
  while (n >= 8) {
    uint32_t lo =
        c ^ (uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24);
    c = kTables[7][lo & 0xFF] ^ kTables[6][(lo >> 8) & 0xFF] ^ kTables[5][(lo >> 16) & 0xFF] ^
        kTables[4][lo >> 24] ^ kTables[3][p[4]] ^ kTables[2][p[5]] ^ kTables[1][p[6]] ^
        kTables[0][p[7]];
    p += 8;
    n -= 8;
  }
  while (n--) c = (c >> 8) ^ kTables[0][(c ^ *p++) & 0xFF];
  return c;
}

#if defined(__x86_64__)
// The crc32 instruction has a latency of 3 cycles and a throughput of 1, so one
// dependency chain uses a third of it. Large inputs run three chains over three
// adjacent blocks and join them: crc(A|B) = shift(crc(A), |B|) ^ crc0(B), where
// shift() appends |B| zero bytes (a linear map, applied with 4 x 256 tables) and
// crc0(B) starts from 0 (Mark Adler's crc32c.c does the same).
constexpr size_t kLong = 1024;  // bytes per chain in the big loop
constexpr size_t kShort = 128;  // bytes per chain for the remainder

struct ShiftTables {
  std::array<std::array<uint32_t, 256>, 4> by_long;
  std::array<std::array<uint32_t, 256>, 4> by_short;
};

// GF(2) 32x32 matrix (column i = image of bit i) times vector.
uint32_t MatrixTimes(const std::array<uint32_t, 32>& m, uint32_t v) {
  uint32_t out = 0;
  for (int i = 0; v != 0; ++i, v >>= 1) {
    if (v & 1) out ^= m[i];
  }
  return out;
}

std::array<uint32_t, 32> MatrixSquare(const std::array<uint32_t, 32>& m) {
  std::array<uint32_t, 32> sq{};
  for (int i = 0; i < 32; ++i) sq[i] = MatrixTimes(m, m[i]);
  return sq;
}

// Tables that apply `bytes` zero bytes to a raw (not inverted) CRC register.
std::array<std::array<uint32_t, 256>, 4> ZerosTables(size_t bytes) {
  // One zero bit: shift right, folding in the polynomial when bit 0 falls out.
  std::array<uint32_t, 32> op{};
  op[0] = kPoly;
  for (int i = 1; i < 32; ++i) op[i] = uint32_t{1} << (i - 1);
  for (int i = 0; i < 3; ++i) op = MatrixSquare(op);  // one zero byte = 8 bits
  // op^bytes by square-and-multiply.
  std::array<uint32_t, 32> result{};
  for (int i = 0; i < 32; ++i) result[i] = uint32_t{1} << i;
  for (size_t n = bytes; n != 0; n >>= 1) {
    if (n & 1) {
      std::array<uint32_t, 32> next{};
      for (int i = 0; i < 32; ++i) next[i] = MatrixTimes(op, result[i]);
      result = next;
    }
    op = MatrixSquare(op);
  }
  std::array<std::array<uint32_t, 256>, 4> t{};
  for (uint32_t b = 0; b < 256; ++b) {
    for (int k = 0; k < 4; ++k) t[k][b] = MatrixTimes(result, b << (8 * k));
  }
  return t;
}

const ShiftTables& Tables() {
  static const ShiftTables tables{ZerosTables(kLong), ZerosTables(kShort)};
  return tables;
}

inline uint32_t Shift(const std::array<std::array<uint32_t, 256>, 4>& t, uint32_t c) {
  return t[0][c & 0xFF] ^ t[1][(c >> 8) & 0xFF] ^ t[2][(c >> 16) & 0xFF] ^ t[3][c >> 24];
}

inline uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  __builtin_memcpy(&v, p, 8);
  return v;
}

template <size_t kBlock>
__attribute__((target("sse4.2"))) inline uint32_t ThreeWay(
    const uint8_t*& p, size_t& n, uint32_t c, const std::array<std::array<uint32_t, 256>, 4>& t) {
  while (n >= 3 * kBlock) {
    uint64_t c0 = c, c1 = 0, c2 = 0;
    for (size_t i = 0; i < kBlock; i += 8) {
      c0 = _mm_crc32_u64(c0, Load64(p + i));
      c1 = _mm_crc32_u64(c1, Load64(p + kBlock + i));
      c2 = _mm_crc32_u64(c2, Load64(p + 2 * kBlock + i));
    }
    c = Shift(t, static_cast<uint32_t>(c0)) ^ static_cast<uint32_t>(c1);
    c = Shift(t, c) ^ static_cast<uint32_t>(c2);
    p += 3 * kBlock;
    n -= 3 * kBlock;
  }
  return c;
}

__attribute__((target("sse4.2"))) uint32_t Hardware(const uint8_t* p, size_t n, uint32_t c) {
  if (n >= 3 * kShort) {
    const ShiftTables& t = Tables();
    c = ThreeWay<kLong>(p, n, c, t.by_long);
    c = ThreeWay<kShort>(p, n, c, t.by_short);
  }
  uint64_t c64 = c;
  while (n >= 8) {
    c64 = _mm_crc32_u64(c64, Load64(p));
    p += 8;
    n -= 8;
  }
  c = static_cast<uint32_t>(c64);
  while (n--) c = _mm_crc32_u8(c, *p++);
  return c;
}

bool HasSse42() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  return (c & bit_SSE4_2) != 0;
}
#endif

}  // namespace

uint32_t Crc32c(std::span<const uint8_t> data, uint32_t crc) {
  uint32_t c = ~crc;
#if defined(__x86_64__)
  static const bool hw = HasSse42();
  if (hw) return ~Hardware(data.data(), data.size(), c);
#endif
  return ~Software(data.data(), data.size(), c);
}

}  // namespace bsr
