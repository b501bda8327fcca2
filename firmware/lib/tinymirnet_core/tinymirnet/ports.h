// The narrow platform interface of the core. The Arduino sketch, the host unit tests and the
// host simulator each implement these four ports (and, where the platform can measure its
// memory, the optional MemoryMeter); the core never touches hardware directly.
// Sizes come from model_settings.h. The destructors are protected and non-virtual: ports are
// never deleted through these interfaces (and there is no heap to delete them from).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "tinymirnet/pixels.h"

namespace tinymirnet {

enum class Status : uint8_t { kOk = 0, kError = 1 };

// The byte stream to the host (USB CDC serial on the board).
class Link {
 public:
  // Copies up to `capacity` already received bytes into `buffer` without waiting.
  // Returns how many were copied (0 when none are available).
  virtual size_t read(uint8_t* buffer, size_t capacity) = 0;
  // Sends `size` bytes, blocking until the transport has taken them. Returns bytes sent.
  virtual size_t write(const uint8_t* data, size_t size) = 0;

 protected:
  ~Link() = default;
};

class Camera {
 public:
  virtual Status begin() = 0;
  // The format of the frames capture() writes (pixels.h): RGB565 as native uint16 values
  // (bits 15-11 red, 10-5 green, 4-0 blue), or YUV422 as the camera's bytes Y0 U Y1 V per
  // pixel pair in memory order. The OV7675 adapter captures YUV422: 8 bits of luma per pixel.
  virtual PixelFormat pixel_format() const = 0;
  // Captures one kFrameWidth x kFrameHeight frame, row-major, in pixel_format().
  virtual Status capture(uint16_t* pixels) = 0;

 protected:
  ~Camera() = default;
};

class Model {
 public:
  virtual Status begin() = 0;
  // A frame-context network (kFrameContext) only: runs the context model once per frame on
  // the thumbnail (kThumbnailHeight x kThumbnailWidth x kChannels int8, HWC, quantized with
  // kContextInputScale/ZeroPoint) and writes its kContextValues int8 outputs (quantized with
  // kContextOutputScale/ZeroPoint). The device calls it before the frame's first tile.
  virtual Status invoke_context(const int8_t* thumbnail, int8_t* context) = 0;
  // Runs the tile model on one tile. `input` and `output` are kModelInputSize x
  // kModelInputSize x kChannels int8 values, row-major HWC, quantized as in model_settings.h.
  // `context`: the frame's kContextValues int8 values for the tile model's context input
  // (kTileContextScale/ZeroPoint); nullptr for a one-model network.
  virtual Status invoke(const int8_t* input, const int8_t* context, int8_t* output) = 0;
  // Tensor arena bytes the interpreter actually uses (0 if unknown).
  virtual size_t arena_used_bytes() const = 0;
  // False once the model has failed for good (e.g. TFLM could not invoke it): INFO then
  // reports it not ready, and every enhance job is refused with the cause.
  virtual bool ready() const { return true; }
  // What the model last reported, e.g. the cause of a failure ("" when it has nothing to say).
  virtual const char* status_text() const { return ""; }

 protected:
  ~Model() = default;
};

class Clock {
 public:
  // Free-running microseconds; wraps after about 71.6 minutes. Compare times only through
  // unsigned differences (now - then).
  virtual uint32_t micros() = 0;

 protected:
  ~Clock() = default;
};

// Memory use the platform can measure, for INFO (optional: a Device without one reports 0,
// "not measured"). High-water marks only grow; a board whose marks grow from frame to frame
// leaks.
class MemoryMeter {
 public:
  // The deepest the stack has been since boot, in bytes.
  virtual uint32_t stack_high_water_bytes() = 0;
  // The most heap taken from the system since boot, in bytes.
  virtual uint32_t heap_high_water_bytes() = 0;

 protected:
  ~MemoryMeter() = default;
};

}  // namespace tinymirnet
