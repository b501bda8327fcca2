// Kept apart from Arduino.h and Mbed headers so that the linker-symbol declarations below cannot
// collide with declarations of the same symbols there.
#include "ram_stats.h"

#include <malloc.h>

// Defined by the Nano 33 BLE linker script of the Mbed core
// (variants/ARDUINO_NANO33BLE/linker_script.ld): .data starts at __data_start__, .bss ends at
// __bss_end__, and the .heap section runs from __end__ to __HeapLimit (RAM end - 2 KiB boot
// stack). Mbed's _sbrk hands out exactly that region: malloc/new, including the stacks of
// threads started at run time (Serial's event thread).
extern "C" {
extern char __data_start__[];
extern char __bss_end__[];
extern char __end__[];
extern char __HeapLimit[];
}

namespace tinymirnet {

RamStats read_ram_stats() {
  RamStats stats{};
  stats.static_bytes = static_cast<size_t>(__bss_end__ - __data_start__);
  stats.heap_bytes = static_cast<size_t>(__HeapLimit - __end__);
  // mallinfo(): arena = bytes obtained from sbrk so far, fordblks = free bytes inside them.
  const struct mallinfo info = mallinfo();
  const size_t taken = static_cast<size_t>(info.arena);
  const size_t untouched = taken < stats.heap_bytes ? stats.heap_bytes - taken : 0;
  stats.heap_free = untouched + static_cast<size_t>(info.fordblks);
  return stats;
}

}  // namespace tinymirnet
