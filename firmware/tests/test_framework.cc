#include "test_framework.h"

namespace tmtest {
namespace {

long g_passed = 0;
long g_failed = 0;

void report_failure(const char* expression, const char* file, int line) {
  write_text("FAIL ");
  write_text(file);
  write_text(":");
  write_number(line);
  write_text(": ");
  write_text(expression);
  write_text("\n");
}

}  // namespace

void write_number(long long value) {
  char text[24];
  char* end = text + sizeof(text) - 1;
  char* cursor = end;
  *cursor = '\0';
  const bool negative = value < 0;
  unsigned long long magnitude =
      negative ? 0ull - static_cast<unsigned long long>(value) : static_cast<unsigned long long>(value);
  do {
    *--cursor = static_cast<char>('0' + magnitude % 10);
    magnitude /= 10;
  } while (magnitude != 0);
  if (negative) *--cursor = '-';
  write_text(cursor);
}

bool check(bool passed, const char* expression, const char* file, int line) {
  if (passed) {
    ++g_passed;
  } else {
    ++g_failed;
    report_failure(expression, file, line);
  }
  return passed;
}

bool check_equal(long long actual, long long expected, const char* expression,
                 const char* file, int line) {
  if (!check(actual == expected, expression, file, line)) {
    write_text("     actual ");
    write_number(actual);
    write_text(", expected ");
    write_number(expected);
    write_text("\n");
    return false;
  }
  return true;
}

void run_suite(const char* name, void (*suite)()) {
  const long failed_before = g_failed;
  suite();
  write_text(g_failed == failed_before ? "ok   " : "FAIL ");
  write_text(name);
  write_text("\n");
}

int finish() {
  write_number(g_passed);
  write_text(" passed, ");
  write_number(g_failed);
  write_text(" failed\n");
  return g_failed == 0 ? 0 : 1;
}

}  // namespace tmtest
