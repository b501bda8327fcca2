#include "tinymirnet/crc32.h"

namespace tinymirnet {
namespace {

struct Crc32Table {
  uint32_t entries[256];
};

// The byte-at-a-time table, computed by the compiler (1 KiB in flash, no RAM).
constexpr Crc32Table make_crc32_table() {
  Crc32Table table{};
  for (uint32_t byte = 0; byte < 256; ++byte) {
    uint32_t crc = byte;
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 1u) ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
    }
    table.entries[byte] = crc;
  }
  return table;
}

constexpr Crc32Table kCrc32Table = make_crc32_table();

}  // namespace

uint32_t crc32_update(uint32_t crc, const uint8_t* data, size_t size) {
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) {
    crc = kCrc32Table.entries[(crc ^ data[i]) & 0xFFu] ^ (crc >> 8);
  }
  return ~crc;
}

uint32_t crc32(const uint8_t* data, size_t size) { return crc32_update(0, data, size); }

}  // namespace tinymirnet
