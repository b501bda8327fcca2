// INFO's memory high-water marks on the Nano 33 BLE, from Mbed OS's own statistics (the core's
// mbed_config.h sets MBED_ALL_STATS_ENABLED): the main thread's stack watermark (RTX fills each
// thread's stack with a pattern at its start) and the heap's largest size since boot.
#pragma once

#include "core_headers.h"

namespace tinymirnet {

class MbedMemoryMeter final : public MemoryMeter {
 public:
  uint32_t stack_high_water_bytes() override;
  uint32_t heap_high_water_bytes() override;
};

}  // namespace tinymirnet
