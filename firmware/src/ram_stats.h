// RAM figures for the boot banner, from the linker script's symbols and newlib's mallinfo().
#pragma once

#include <stddef.h>

namespace tinymirnet {

struct RamStats {
  size_t static_bytes;  // .data + .noinit + .bss (every static buffer, the arena included)
  size_t heap_bytes;    // the heap region: end of .bss up to the 2 KiB boot stack
  size_t heap_free;     // heap not yet taken by sbrk, plus freed blocks inside it
};

RamStats read_ram_stats();

}  // namespace tinymirnet
