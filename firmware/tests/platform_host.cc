// Test output on the host.
#include <stdio.h>

#include "test_framework.h"

void tmtest::write_text(const char* text) { fputs(text, stdout); }
