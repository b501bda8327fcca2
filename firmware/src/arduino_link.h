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
  // Blocks until USB has taken the bytes, 64 at a time while a host holds the port open
  // (DTR); returns how many were sent (fewer when the host closed the port).
  size_t write(const uint8_t* data, size_t size) override;

  // A host program has the port open (it asserted DTR).
  bool connected() const;

 private:
  static constexpr size_t kWritePiece = 64;  // one USB full-speed bulk packet
};

}  // namespace tinymirnet
