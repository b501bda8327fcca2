#include "ov7675_camera.h"

#include <stdio.h>

#include <type_traits>
#include <utility>

#include <Arduino.h>
#include <Arduino_OV767X.h>

// Frame rate asked from the camera. Arduino_OV767X accepts 1 or 5 fps on the Nano 33 BLE.
// readFrame() runs with interrupts off for up to two frame periods, so 5 fps keeps USB and the
// RTOS waiting less (at most about 0.4 s per capture).
#ifndef TINYMIRNET_CAMERA_FPS
#define TINYMIRNET_CAMERA_FPS 5
#endif

namespace tinymirnet {
namespace {

constexpr int kCameraFps = TINYMIRNET_CAMERA_FPS;
static_assert(kCameraFps == 1 || kCameraFps == 5,
              "Arduino_OV767X on the Nano 33 BLE accepts 1 or 5 fps");
static_assert(kFramePixels * sizeof(uint16_t) == 160u * 120u * 2u,
              "readFrame() writes 160 x 120 x 2 bytes into the frame buffer");

// Arduino_OV767X's enum values, spelled out: the library declares them as unscoped enums
// (YUV422 = 0; QQVGA = 4 = 160x120, absent from its earliest sources), and a version without
// one of them should still build and fail at run time with a message (begin() returns 0),
// not stop the whole firmware from compiling.
// YUV422, not RGB565: the same 2 bytes per pixel, but 8 bits of luma per pixel where RGB565
// keeps 5 bits of red and blue. A dark frame has a handful of RGB565 levels, and the exposure
// gain (about 10x on a dim room) turns them into visible steps; on LoL's validation pairs the
// float network scores 1.2 dB more from YUV422 frames than from RGB565 ones.
// The library's register table (ov7670.c: TSLB 0x04, COM13 without UVSWAP, COM15 00-FF) gives
// full-range YUYV: Y0 U Y1 V per pixel pair, luma first, as its GRAYSCALE mode relies on.
constexpr int kFormatYuv422 = 0;      // YUV422
constexpr int kResolutionQqvga = 4;   // QQVGA
// Camera-model argument of begin(resolution, format, fps, camera) in the versions that have it
// (enum { OV7670 = 0, OV7675 = 1 }, upstream PR #30). The sources without it (0.0.2 and
// earlier, as far as found) have only begin(resolution, format, fps); picked at compile time.
constexpr int kCameraModelOv7675 = 1;  // OV7675

template <typename...>
using VoidT = void;  // std::void_t is C++17; the board builds C++14

template <typename Cam, typename = void>
struct HasCameraModelParameter : std::false_type {};
template <typename Cam>
struct HasCameraModelParameter<
    Cam, VoidT<decltype(std::declval<Cam&>().begin(0, 0, 0, kCameraModelOv7675))>>
    : std::true_type {};

template <typename Cam>
int start_camera(Cam& camera, int resolution, int format, int fps, std::true_type) {
  return camera.begin(resolution, format, fps, kCameraModelOv7675);
}
template <typename Cam>
int start_camera(Cam& camera, int resolution, int format, int fps, std::false_type) {
  return camera.begin(resolution, format, fps);
}
template <typename Cam>
int start_camera(Cam& camera, int resolution, int format, int fps) {
  return start_camera(camera, resolution, format, fps, HasCameraModelParameter<Cam>{});
}

constexpr bool kSelectsOv7675 = HasCameraModelParameter<OV767X>::value;

}  // namespace

Status Ov7675Camera::begin() {
  if (ready_) return Status::kOk;
  // ::Camera is the library's global OV767X object (tinymirnet::Camera is the port interface).
  if (start_camera(::Camera, kResolutionQqvga, kFormatYuv422, kCameraFps) == 0) {
    // No Camera.end() here: the library already cleaned up after a failed begin().
    snprintf(status_, sizeof(status_),
             "FAILED: Camera.begin(QQVGA, YUV422, %d) returned 0: no OV767x answered on I2C "
             "(seat the Tiny ML Kit shield and the camera), or this Arduino_OV767X lacks QQVGA",
             kCameraFps);
    return Status::kError;
  }
  const int width = ::Camera.width();
  const int height = ::Camera.height();
  const int bits = ::Camera.bitsPerPixel();
  if (width != kFrameWidth || height != kFrameHeight || bits != 16) {
    ::Camera.end();
    snprintf(status_, sizeof(status_),
             "FAILED: camera delivers %dx%d at %d bits per pixel, the model needs %dx%d YUV422",
             width, height, bits, kFrameWidth, kFrameHeight);
    return Status::kError;
  }
  ready_ = true;
  snprintf(status_, sizeof(status_), "ok, %s, QQVGA %dx%d YUV422, %d fps",
           kSelectsOv7675 ? "OV7675 selected"
                          : "Arduino_OV767X without camera-model argument (OV7670 registers)",
           width, height, kCameraFps);
  return Status::kOk;
}

// readFrame() waits for VSYNC with interrupts disabled and no timeout, so a sensor that has
// stopped would freeze the board. Look for one VSYNC edge first (the pulse spans a few lines,
// much longer than this loop's period).
bool Ov7675Camera::vsync_running() const {
  const uint32_t timeout_us = 3u * 1000000u / static_cast<uint32_t>(kCameraFps);
  const uint32_t start_us = static_cast<uint32_t>(::micros());
  const auto first = digitalRead(OV7670_VSYNC);
  while (static_cast<uint32_t>(::micros()) - start_us < timeout_us) {
    if (digitalRead(OV7670_VSYNC) != first) return true;
  }
  return false;
}

Status Ov7675Camera::capture(uint16_t* pixels) {
  if (!ready_) return Status::kError;
  if (!vsync_running()) {
    snprintf(status_, sizeof(status_),
             "FAILED: no VSYNC from the camera for %d ms (camera unplugged after start?)",
             3000 / kCameraFps);
    return Status::kError;
  }
  // The bytes arrive Y0 U Y1 V and land in memory in that order: the frame buffer's YUV422.
  ::Camera.readFrame(pixels);
  return Status::kOk;
}

}  // namespace tinymirnet
