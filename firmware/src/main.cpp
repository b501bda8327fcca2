// tinymirnet firmware for the Arduino Nano 33 BLE Sense + OV7675 (Tiny ML Kit).
//
// Thin glue: the serial protocol, the tiling and the pixel conversions live in the portable core
// (firmware/lib/tinymirnet_core, tinymirnet::Device); this file wires the four Arduino ports
// into it and prints a short text banner.
//
// The banner and the binary protocol share the USB serial port. PROTOCOL.md defines no text or
// log message, and a receiver "scans for the sync marker, skipping everything else": the host's
// decoder (host/protocol/frames.py, FrameDecoder) drops any byte outside a good frame. So the banner is
// plain text sent between frames, never inside one: it is written from loop() while no frame is
// being written (the core sends each frame with one blocking write), and it is printable ASCII
// only, so it cannot contain the first sync byte 0xA5. It is printed each time a program opens
// the port (DTR rising), because the Mbed core drops output while no terminal is attached and
// does not reset the board when the port opens.
#include <Arduino.h>
// The TFLM library's main header, as in its examples; tflm_model.cpp itself includes only TFLM's
// own headers, so it also builds for the virtual Cortex-M4 board (firmware/qemu).
#include <Chirale_TensorFlowLite.h>
#include <drivers/Watchdog.h>
#include <stdarg.h>
#include <stdio.h>

#include "arduino_link.h"
#include "board_settings.h"
#include "core_headers.h"
#include "mbed_memory_meter.h"
#include "micros_clock.h"
#include "ov7675_camera.h"
#include "ram_stats.h"
#include "tflm_model.h"

#ifndef TINYMIRNET_FIRMWARE_VERSION
#define TINYMIRNET_FIRMWARE_VERSION "0.0.0-dev"
#endif

namespace {

constexpr unsigned long kSerialBaud = 115200;  // ignored by USB CDC
// At boot, wait this long for a terminal (e.g. `pio device monitor` right after an upload) so
// that TFLM's own messages from AllocateTensors() are seen; a board without a host goes on.
constexpr unsigned long kTerminalWaitMs = 2000;

tinymirnet::ArduinoSerialLink g_link;
tinymirnet::Ov7675Camera g_camera;
tinymirnet::TflmModel g_model;
tinymirnet::MicrosClock g_clock;
tinymirnet::MbedMemoryMeter g_memory;
tinymirnet::Device g_device(g_link, g_camera, g_model, g_clock, TINYMIRNET_FIRMWARE_VERSION);

bool g_terminal_was_connected = false;
bool g_led_on = false;

// Formats one banner line and sends it as printable ASCII + CRLF.
void print_line(const char* format, ...) __attribute__((format(printf, 1, 2)));
void print_line(const char* format, ...) {
  static char line[256];
  va_list args;
  va_start(args, format);
  const int length = vsnprintf(line, sizeof(line) - 2, format, args);
  va_end(args);
  size_t size = length < 0 ? 0 : static_cast<size_t>(length);
  if (size > sizeof(line) - 3) size = sizeof(line) - 3;
  for (size_t i = 0; i < size; ++i) {
    const unsigned char c = static_cast<unsigned char>(line[i]);
    if (c < 0x20 || c > 0x7E) line[i] = '?';  // never a sync byte, never a control byte
  }
  line[size++] = '\r';
  line[size++] = '\n';
  g_link.write(reinterpret_cast<const uint8_t*>(line), size);
}

void print_banner() {
  const tinymirnet::RamStats ram = tinymirnet::read_ram_stats();
  print_line("tinymirnet firmware %s, protocol v%u (binary frames follow; hosts skip text)",
             TINYMIRNET_FIRMWARE_VERSION, static_cast<unsigned>(tinymirnet::protocol::kVersion));
  print_line("model sha256 %.16s, %lu B flatbuffer, %d tiles of %dx%d (+%d halo), frame %dx%d",
             tinymirnet::kModelSha256, static_cast<unsigned long>(tinymirnet::kModelBytes),
             tinymirnet::kTileCount, tinymirnet::kTileSize, tinymirnet::kTileSize,
             tinymirnet::kHalo, tinymirnet::kFrameWidth, tinymirnet::kFrameHeight);
  if (tinymirnet::kFrameContext) {
    print_line("context model sha256 %.16s, %lu B flatbuffer, %dx%d thumbnail -> %d values, once per frame",
               tinymirnet::kContextModelSha256,
               static_cast<unsigned long>(tinymirnet::kContextModelBytes),
               tinymirnet::kThumbnailWidth, tinymirnet::kThumbnailHeight,
               tinymirnet::kContextValues);
  }
  print_line("tensor arena %lu / %lu B used (host-measured %lu B)",
             static_cast<unsigned long>(g_model.arena_used_bytes()),
             static_cast<unsigned long>(tinymirnet::kArenaSize),
             static_cast<unsigned long>(tinymirnet::kArenaMeasuredBytes));
  print_line("RAM: static %lu B (device buffers %lu B + arena), heap free %lu of %lu B",
             static_cast<unsigned long>(ram.static_bytes),
             static_cast<unsigned long>(tinymirnet::kDeviceBufferBytes),
             static_cast<unsigned long>(ram.heap_free), static_cast<unsigned long>(ram.heap_bytes));
  print_line("camera: %s", g_camera.status_text());
  print_line("model: %s", g_model.status_text());
}

}  // namespace

void setup() {
  pinMode(LED_BUILTIN, OUTPUT);
  digitalWrite(LED_BUILTIN, LOW);
  g_link.begin(kSerialBaud);
  const unsigned long start_ms = millis();
  while (!g_link.connected() && millis() - start_ms < kTerminalWaitMs) delay(10);
  g_device.set_memory_meter(&g_memory);
  g_device.begin();  // camera (about 1 s) and model; failures are reported, never fatal
  mbed::Watchdog::get_instance().start(tinymirnet::kWatchdogTimeoutMs);
}

void loop() {
  mbed::Watchdog::get_instance().kick();
  const bool connected = g_link.connected();
  if (connected && !g_terminal_was_connected) print_banner();
  g_terminal_was_connected = connected;

  g_device.poll();

  const bool busy = g_device.busy();  // LED on while a capture/enhance job streams
  if (busy != g_led_on) {
    digitalWrite(LED_BUILTIN, busy ? HIGH : LOW);
    g_led_on = busy;
  }
}
