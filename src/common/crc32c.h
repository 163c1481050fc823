// CRC-32C (Castagnoli), the checksum on every on-disk block and wire frame.
// Pure function; any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace bsr {

// Standard CRC-32C (init ~0, final xor ~0): Crc32c("123456789") == 0xE3069283.
// Pass a previous result as `crc` to continue over more data.
uint32_t Crc32c(std::span<const uint8_t> data, uint32_t crc = 0);

}  // namespace bsr
