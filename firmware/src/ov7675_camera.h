// Camera over the Arduino_OV767X library: the OV7675 of the Tiny ML Kit shield, QQVGA
// (160x120) YUV422 (Y0 U Y1 V per pixel pair, stored as the bytes arrive; ports.h).
#pragma once

#include <stdint.h>

#include "core_headers.h"

namespace tinymirnet {

// The adapter asks the camera for QQVGA; the model's frame must be that size.
static_assert(kFrameWidth == 160 && kFrameHeight == 120,
              "ov7675_camera captures QQVGA 160x120: model_settings.h has another frame size "
              "(re-run `tinymirnet quantize` with a 160x120 frame, or extend the adapter)");

class Ov7675Camera final : public Camera {
 public:
  // Starts the camera (about 1 s: the library waits for the sensor). Returns kError, never
  // hangs, when the sensor does not answer on I2C or reports another frame size; the core
  // then answers CAPTURE with ERROR CAMERA_FAILED. Cheap once it has succeeded.
  Status begin() override;
  PixelFormat pixel_format() const override { return PixelFormat::kYuv422; }
  // Reads one frame into `pixels` (kFrameWidth * kFrameHeight values).
  Status capture(uint16_t* pixels) override;

  // One line for the boot banner: "ok, ..." or what failed and what to check.
  const char* status_text() const { return status_; }

 private:
  bool vsync_running() const;

  bool ready_ = false;
  char status_[192] = "not started";
};

}  // namespace tinymirnet
