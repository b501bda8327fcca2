#include "test_framework.h"

void crc32_tests();
void codec_tests();
void pixel_tests();
void tiler_tests();
void device_tests();

int main() {
  tmtest::run_suite("crc32", crc32_tests);
  tmtest::run_suite("frame codec", codec_tests);
  tmtest::run_suite("pixel conversion", pixel_tests);
  tmtest::run_suite("tiler", tiler_tests);
  tmtest::run_suite("device", device_tests);
#ifdef TMTEST_FORCE_FAILURE
  // Built only by `make qemu-forced-failure`, to prove that a failing check fails the run.
  CHECK_EQ(1 + 1, 3);
#endif
  return tmtest::finish();
}
