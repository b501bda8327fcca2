// In-memory ports for the device tests: a link with a byte queue in each direction, a camera
// that produces a fixed pattern, a model that copies or inverts its input (and, for a
// frame-context build, a context model that records its thumbnail), a manual clock.
#pragma once

#include <string.h>

#include "tinymirnet/ports.h"
#include "tinymirnet/thumbnail.h"
#include "tinymirnet/tiler.h"

namespace fakes {

// A pseudo-random low-light pixel that differs between nearby positions, so misplaced pixels
// show up: only the low 3/4/3 bits of R/G/B (8-bit values up to 57, mean about 28), so that
// the device's exposure gain is well above one.
inline uint16_t pattern_pixel(int x, int y) {
  return static_cast<uint16_t>((((static_cast<uint32_t>(x) * 2654435761u) ^
                                 (static_cast<uint32_t>(y) * 40503u)) >> 7) & 0x39E7u);
}

class FakeLink final : public tinymirnet::Link {
 public:
  // Host side: queue bytes for the device.
  void host_send(const uint8_t* data, size_t size) {
    if (inbound_read_ == inbound_size_) inbound_read_ = inbound_size_ = 0;
    memcpy(inbound_ + inbound_size_, data, size);
    inbound_size_ += size;
  }
  size_t inbound_pending() const { return inbound_size_ - inbound_read_; }

  // Host side: what the device sent.
  const uint8_t* sent() const { return outbound_; }
  size_t sent_size() const { return outbound_size_; }

  size_t read(uint8_t* buffer, size_t capacity) override {
    const size_t count = inbound_pending() < capacity ? inbound_pending() : capacity;
    memcpy(buffer, inbound_ + inbound_read_, count);
    inbound_read_ += count;
    return count;
  }

  size_t write(const uint8_t* data, size_t size) override {
    memcpy(outbound_ + outbound_size_, data, size);
    outbound_size_ += size;
    return size;
  }

 private:
  uint8_t inbound_[16384] = {};
  size_t inbound_size_ = 0;
  size_t inbound_read_ = 0;
  uint8_t outbound_[262144] = {};  // a whole capture: raw frame plus all tiles
  size_t outbound_size_ = 0;
};

class FakeCamera final : public tinymirnet::Camera {
 public:
  bool fail_begin = false;
  bool fail_capture = false;
  int captures = 0;
  // The pattern below is RGB565; a YUV422 test fills `yuv422` and sets the format.
  tinymirnet::PixelFormat format = tinymirnet::PixelFormat::kRgb565;
  const uint16_t* yuv422 = nullptr;

  tinymirnet::PixelFormat pixel_format() const override { return format; }

  tinymirnet::Status begin() override {
    return fail_begin ? tinymirnet::Status::kError : tinymirnet::Status::kOk;
  }

  tinymirnet::Status capture(uint16_t* pixels) override {
    if (fail_capture) return tinymirnet::Status::kError;
    ++captures;
    if (format == tinymirnet::PixelFormat::kYuv422) {
      for (size_t i = 0; i < tinymirnet::kFramePixels; ++i) pixels[i] = yuv422[i];
      return tinymirnet::Status::kOk;
    }
    for (int y = 0; y < tinymirnet::kFrameHeight; ++y) {
      for (int x = 0; x < tinymirnet::kFrameWidth; ++x) {
        pixels[y * tinymirnet::kFrameWidth + x] = pattern_pixel(x, y);
      }
    }
    return tinymirnet::Status::kOk;
  }
};

class FakeModel final : public tinymirnet::Model {
 public:
  enum class Mode { kCopy, kInvert };
  Mode mode = Mode::kCopy;
  bool fail_begin = false;
  int fail_on_invoke = -1;  // 0-based invoke number that fails, -1 for none
  bool fail_context = false;
  int invokes = 0;
  int context_invokes = 0;
  int tiles_with_wrong_context = 0;  // tile invokes whose context was not the expected one
  int8_t last_thumbnail[tinymirnet::kFrameContext ? tinymirnet::kThumbnailBytes : 1] = {};
  int8_t last_raw_context[tinymirnet::kFrameContext ? tinymirnet::kContextValues : 1] = {};

  tinymirnet::Status begin() override {
    return fail_begin ? tinymirnet::Status::kError : tinymirnet::Status::kOk;
  }

  // The context "model": context value i = thumbnail byte (7 i) minus i, so that every value
  // depends on the thumbnail and the requantization table sees a spread of values.
  int8_t raw_context_value(const int8_t* thumbnail, int i) const {
    const size_t at = (static_cast<size_t>(i) * 7u) % sizeof(last_thumbnail);
    return static_cast<int8_t>(thumbnail[at] - i);
  }

  tinymirnet::Status invoke_context(const int8_t* thumbnail, int8_t* context) override {
    if (!tinymirnet::kFrameContext || fail_context) return tinymirnet::Status::kError;
    ++context_invokes;
    memcpy(last_thumbnail, thumbnail, sizeof(last_thumbnail));
    for (int i = 0; i < tinymirnet::kContextValues; ++i) {
      context[i] = last_raw_context[i] = raw_context_value(thumbnail, i);
    }
    return tinymirnet::Status::kOk;
  }

  tinymirnet::Status invoke(const int8_t* input, const int8_t* context, int8_t* output) override {
    if (invokes++ == fail_on_invoke) return tinymirnet::Status::kError;
    if (tinymirnet::kFrameContext) {
      bool right = context != nullptr;
      for (int i = 0; right && i < tinymirnet::kContextValues; ++i) {
        right = context[i] == tinymirnet::kContextRequantizationTable.values[last_raw_context[i] + 128];
      }
      if (!right) ++tiles_with_wrong_context;
    } else if (context != nullptr) {
      ++tiles_with_wrong_context;
    }
    for (size_t i = 0; i < tinymirnet::kModelTensorBytes; ++i) output[i] = apply(input[i]);
    return tinymirnet::Status::kOk;
  }

  int8_t apply(int8_t value) const {
    return mode == Mode::kCopy ? value : static_cast<int8_t>(~value);
  }

  size_t arena_used_bytes() const override { return 12345; }
  bool ready() const override { return !broken; }
  const char* status_text() const override { return broken ? "FAILED: fake cause" : "ok"; }

  bool broken = false;  // failed for good after start (as TflmModel after a failed Invoke())
};

// Advances by a few microseconds on every read, so durations are never zero.
class FakeClock final : public tinymirnet::Clock {
 public:
  uint32_t now_us = 1000;

  uint32_t micros() override {
    now_us += 3;
    return now_us;
  }
  void advance(uint32_t us) { now_us += us; }
};

class FakeMemoryMeter final : public tinymirnet::MemoryMeter {
 public:
  uint32_t stack = 0, heap = 0;
  uint32_t stack_high_water_bytes() override { return stack; }
  uint32_t heap_high_water_bytes() override { return heap; }
};

}  // namespace fakes
