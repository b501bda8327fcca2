// Settings both builds of the firmware share: the sketch (main.cpp) and the virtual Cortex-M4
// board (qemu/board_main.cc), so that the board's failure paths run the same on both.
#pragma once

#include <stdint.h>

namespace tinymirnet {

// The watchdog resets the board when the main loop stops coming round: a USB write to a host
// that holds the port but stopped reading, a hang in a driver, a model invoke that never
// returns. One loop step is at most one tile (with the frame's context model first): ~110 M
// instructions, under 2 s at 64 MHz and one instruction per cycle
// (docs/reports/device/device_report.md); 16 s leaves room for the real cycles per instruction.
// The nRF52 watchdog cannot be stopped once started.
constexpr uint32_t kWatchdogTimeoutMs = 16000;

}  // namespace tinymirnet
