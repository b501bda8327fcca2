// A tiny test framework that runs the same on the host and on a Cortex-M4 under QEMU:
// no heap, no exceptions, no stdio (platform_*.cc provide write_text()).
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace tmtest {

// Writes text to the test output (stdout on the host, semihosting under QEMU).
void write_text(const char* text);

void write_number(long long value);

// Each CHECK counts as one passed or failed check; failures print where and what.
bool check(bool passed, const char* expression, const char* file, int line);
bool check_equal(long long actual, long long expected, const char* expression,
                 const char* file, int line);

void run_suite(const char* name, void (*suite)());

// Prints "<N> passed, <M> failed" and returns the exit code: 0 only when nothing failed.
int finish();

}  // namespace tmtest

#define CHECK(condition) ::tmtest::check((condition), #condition, __FILE__, __LINE__)
#define CHECK_EQ(actual, expected)                                                         \
  ::tmtest::check_equal(static_cast<long long>(actual), static_cast<long long>(expected), \
                        #actual " == " #expected, __FILE__, __LINE__)
