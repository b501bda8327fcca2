#include "micros_clock.h"

#include <Arduino.h>

namespace tinymirnet {

uint32_t MicrosClock::micros() { return static_cast<uint32_t>(::micros()); }

}  // namespace tinymirnet
