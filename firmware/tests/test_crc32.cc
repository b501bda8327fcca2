#include <string.h>

#include "tinymirnet/crc32.h"
#include "test_framework.h"

using tinymirnet::crc32;
using tinymirnet::crc32_update;

namespace {

const uint8_t* bytes_of(const char* text) { return reinterpret_cast<const uint8_t*>(text); }

void check_known_vectors() {
  CHECK_EQ(crc32(bytes_of("123456789"), 9), 0xCBF43926u);
  CHECK_EQ(crc32(bytes_of(""), 0), 0u);
  CHECK_EQ(crc32(bytes_of("a"), 1), 0xE8B7BE43u);
  const char* fox = "The quick brown fox jumps over the lazy dog";
  CHECK_EQ(crc32(bytes_of(fox), strlen(fox)), 0x414FA339u);
}

void check_incremental_update_matches_one_shot() {
  const uint8_t* data = bytes_of("123456789");
  for (size_t split = 0; split <= 9; ++split) {
    CHECK_EQ(crc32_update(crc32(data, split), data + split, 9 - split), 0xCBF43926u);
  }
}

}  // namespace

void crc32_tests() {
  check_known_vectors();
  check_incremental_update_matches_one_shot();
}
