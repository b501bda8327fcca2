// Test output under QEMU: semihosting SYS_WRITE0 prints a NUL-terminated string.
#include "test_framework.h"

extern "C" int semihosting_call(int operation, const void* argument);

namespace {
constexpr int kSysWrite0 = 0x04;
}

void tmtest::write_text(const char* text) { semihosting_call(kSysWrite0, text); }
