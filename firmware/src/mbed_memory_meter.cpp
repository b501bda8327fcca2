#include "mbed_memory_meter.h"

#include <cmsis_os2.h>
#include <platform/mbed_stats.h>

namespace tinymirnet {

uint32_t MbedMemoryMeter::stack_high_water_bytes() {
  const osThreadId_t self = osThreadGetId();  // loop() runs in Mbed's main thread
  return osThreadGetStackSize(self) - osThreadGetStackSpace(self);
}

uint32_t MbedMemoryMeter::heap_high_water_bytes() {
  mbed_stats_heap_t heap = {};
  mbed_stats_heap_get(&heap);
  return heap.max_size;
}

}  // namespace tinymirnet
