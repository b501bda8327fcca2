// Clock over Arduino's micros() (32 bits, wraps after about 71.6 minutes; the core only
// compares unsigned differences).
#pragma once

#include <stdint.h>

#include "core_headers.h"

namespace tinymirnet {

class MicrosClock final : public Clock {
 public:
  uint32_t micros() override;
};

}  // namespace tinymirnet
