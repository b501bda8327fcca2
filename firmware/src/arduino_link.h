// Link over the board's USB CDC port (`Serial` is SerialUSB on the Nano 33 BLE).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "core_headers.h"

namespace tinymirnet {

class ArduinoSerialLink final : public Link {
 public:
  // Starts USB CDC. Serial.begin() also arms the 1200-baud "touch" that `pio run -t upload`
  // uses to reboot the board into its bootloader, so it must run even without a host.
  void begin(unsigned long baud);

  // Copies the bytes already received (at most `capacity`), never waits.
  size_t read(uint8_t* buffer, size_t capacity) override;
  // Blocks until USB has taken all bytes. Returns 0 when no terminal has the port open
  // (DTR low): the Mbed core drops the data then instead of blocking forever.
  size_t write(const uint8_t* data, size_t size) override;

  // A host program has the port open (it asserted DTR).
  bool connected() const;
};

}  // namespace tinymirnet
