#include "arduino_link.h"

#include <Arduino.h>

namespace tinymirnet {

void ArduinoSerialLink::begin(unsigned long baud) { Serial.begin(baud); }

size_t ArduinoSerialLink::read(uint8_t* buffer, size_t capacity) {
  size_t count = 0;
  while (count < capacity && Serial.available() > 0) {
    const int value = Serial.read();
    if (value < 0) break;
    buffer[count++] = static_cast<uint8_t>(value);
  }
  return count;
}

size_t ArduinoSerialLink::write(const uint8_t* data, size_t size) {
  return Serial.write(data, size);
}

// Core 4.x: Serial is arduino::UART (USB CDC underneath); its operator bool() is true while a
// host holds the port open (DTR), which is what the banner logic needs.
bool ArduinoSerialLink::connected() const { return static_cast<bool>(Serial); }

}  // namespace tinymirnet
