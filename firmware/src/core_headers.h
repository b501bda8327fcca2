// The core and generated-model headers, included by path relative to this folder.
//
// Why not #include "device.h": the Mbed core adds ~200 include folders with -iwithprefixbefore
// (variants/ARDUINO_NANO33BLE/includes.txt), placed before the library folders on the command
// line. Mbed has its own device.h (in its target folders) and Nanostack its own protocol.h, so
// a plain "device.h" from firmware/src could resolve to Mbed's. A quoted include that starts
// with "../" is looked up next to the including file first, which is unambiguous. The core's own
// headers include each other the same way (same folder first), so they are safe.
// PlatformIO's LDF still sees these includes and builds both libraries.
#pragma once

#include "../lib/tinymirnet_core/device.h"
#include "../lib/tinymirnet_core/ports.h"
#include "../lib/tinymirnet_core/tiler.h"
#include "../lib/tinymirnet_model/model_data.h"
#include "../lib/tinymirnet_model/model_settings.h"
