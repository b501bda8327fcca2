// CRC-32 as used by the serial protocol.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace tinymirnet {

// CRC-32/ISO-HDLC (the IEEE 802.3 CRC that zlib.crc32 computes): reflected polynomial
// 0xEDB88320, initial value and final xor 0xFFFFFFFF. crc32("123456789") == 0xCBF43926.
uint32_t crc32(const uint8_t* data, size_t size);

// Continues a CRC over more data, like zlib.crc32(data, crc):
// crc32_update(crc32(a), b) == crc32(a followed by b), and crc32_update(0, a) == crc32(a).
uint32_t crc32_update(uint32_t crc, const uint8_t* data, size_t size);

}  // namespace tinymirnet
