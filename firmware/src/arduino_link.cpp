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
  // In pieces, each only while a host holds the port open (DTR): a host that closed the port
  // mid-frame costs at most one piece. A host that keeps the port open but stops reading makes
  // USB CDC wait; the watchdog (main.cpp) ends that wait by resetting the board.
  size_t sent = 0;
  while (sent < size && static_cast<bool>(Serial)) {
    const size_t piece = size - sent < kWritePiece ? size - sent : kWritePiece;
    const size_t written = Serial.write(data + sent, piece);
    if (written == 0) break;
    sent += written;
  }
  return sent;
}

// Core 4.x: Serial is arduino::UART (USB CDC underneath); its operator bool() is true while a
// host holds the port open (DTR), which is what the banner logic needs.
bool ArduinoSerialLink::connected() const { return static_cast<bool>(Serial); }

}  // namespace tinymirnet
