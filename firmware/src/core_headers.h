// The core's and the generated model's headers, all under the "tinymirnet/" prefix.
//
// The prefix is what keeps them apart from Mbed's: the Mbed core adds ~290 include folders
// (variants/ARDUINO_NANO33BLE/includes.txt), and Mbed has its own device.h (its HAL includes
// "device.h" to get gpio_t), Cordio its own crc32.h and Nanostack its own protocol.h. A
// library folder given with -I is searched before those, so an unprefixed core header named
// like one of them would hijack Mbed's own #include. tests/test_board_compile.py compiles every
// file here against the real headers.
#pragma once

#include "tinymirnet/device.h"
#include "tinymirnet/model_data.h"
#include "tinymirnet/model_settings.h"
#include "tinymirnet/ports.h"
#include "tinymirnet/tiler.h"
