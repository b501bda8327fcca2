// The simulator: ports backed by C callbacks and one static device, created in place.
#include "sim_api.h"

#include <string.h>

#include <new>

#include "tinymirnet/crc32.h"
#include "tinymirnet/device.h"
#include "tinymirnet/pixels.h"
#include "tinymirnet/protocol.h"
#include "tinymirnet/thumbnail.h"

namespace {

using tinymirnet::Status;

Status to_status(int result) { return result == 0 ? Status::kOk : Status::kError; }

tmn_sim_ports g_ports;

class CallbackLink final : public tinymirnet::Link {
 public:
  size_t read(uint8_t* buffer, size_t capacity) override {
    return g_ports.link_read(g_ports.user, buffer, capacity);
  }
  size_t write(const uint8_t* data, size_t size) override {
    return g_ports.link_write(g_ports.user, data, size);
  }
};

class CallbackCamera final : public tinymirnet::Camera {
 public:
  Status begin() override {
    if (g_ports.camera_capture == nullptr) return Status::kError;
    return g_ports.camera_begin ? to_status(g_ports.camera_begin(g_ports.user)) : Status::kOk;
  }
  // The simulated camera is the board's: YUV422 (the OV7675 adapter's format).
  tinymirnet::PixelFormat pixel_format() const override { return tinymirnet::PixelFormat::kYuv422; }
  Status capture(uint16_t* pixels) override {
    if (g_ports.camera_capture == nullptr) return Status::kError;
    return to_status(g_ports.camera_capture(g_ports.user, pixels, tinymirnet::kFramePixels));
  }
};

class CallbackModel final : public tinymirnet::Model {
 public:
  Status begin() override {
    return g_ports.model_begin ? to_status(g_ports.model_begin(g_ports.user)) : Status::kOk;
  }
  Status invoke_context(const int8_t* thumbnail, int8_t* context) override {
    if (g_ports.model_invoke_context == nullptr) return Status::kError;
    return to_status(g_ports.model_invoke_context(g_ports.user, thumbnail,
                                                  tinymirnet::kThumbnailBytes, context,
                                                  tinymirnet::kContextValues));
  }
  Status invoke(const int8_t* input, const int8_t* context, int8_t* output) override {
    return to_status(g_ports.model_invoke(g_ports.user, input, context,
                                          context ? tinymirnet::kContextValues : 0, output,
                                          tinymirnet::kModelTensorBytes));
  }
  size_t arena_used_bytes() const override {
    return g_ports.model_arena_used_bytes ? g_ports.model_arena_used_bytes(g_ports.user) : 0;
  }
};

class CallbackClock final : public tinymirnet::Clock {
 public:
  uint32_t micros() override { return g_ports.clock_micros(g_ports.user); }
};

CallbackLink g_link;
CallbackCamera g_camera;
CallbackModel g_model;
CallbackClock g_clock;

// Static storage for the one device; tmn_sim_create() constructs it here again.
alignas(tinymirnet::Device) unsigned char g_device_storage[sizeof(tinymirnet::Device)];
tinymirnet::Device* g_device = nullptr;
char g_firmware_version[64];

}  // namespace

extern "C" {

void tmn_sim_get_config(tmn_sim_config* config) {
  config->protocol_version = tinymirnet::protocol::kVersion;
  config->frame_width = tinymirnet::kFrameWidth;
  config->frame_height = tinymirnet::kFrameHeight;
  config->tile_size = tinymirnet::kTileSize;
  config->halo = tinymirnet::kHalo;
  config->model_input_size = tinymirnet::kModelInputSize;
  config->tile_count = tinymirnet::kTileCount;
  config->max_payload = tinymirnet::kMaxPayload;
  config->frame_gap_timeout_us = tinymirnet::kFrameGapTimeoutUs;
  config->frame_buffer_bytes = tinymirnet::kFrameBufferBytes;
  config->tile_io_bytes = tinymirnet::kTileIoBytes;
  config->protocol_buffer_bytes = tinymirnet::kProtocolBufferBytes;
  config->device_object_bytes = sizeof(tinymirnet::Device);
  config->exposure_target = tinymirnet::kExposureTarget;
  config->frame_context = tinymirnet::kFrameContext ? 1 : 0;
  config->thumbnail_width = tinymirnet::kThumbnailWidth;
  config->thumbnail_height = tinymirnet::kThumbnailHeight;
  config->context_values = tinymirnet::kContextValues;
  config->frame_context_bytes = tinymirnet::kFrameContextBytes;
}

int tmn_sim_create(const tmn_sim_ports* ports, const char* firmware_version) {
  if (ports == nullptr || ports->link_read == nullptr || ports->link_write == nullptr ||
      ports->model_invoke == nullptr || ports->clock_micros == nullptr) {
    return -1;
  }
  tmn_sim_destroy();
  g_ports = *ports;
  strncpy(g_firmware_version, firmware_version ? firmware_version : "sim",
          sizeof(g_firmware_version) - 1);
  g_firmware_version[sizeof(g_firmware_version) - 1] = '\0';
  g_device = new (g_device_storage)
      tinymirnet::Device(g_link, g_camera, g_model, g_clock, g_firmware_version);
  g_device->begin();
  return 0;
}

int tmn_sim_poll(void) {
  if (g_device == nullptr) return -1;
  g_device->poll();
  return g_device->busy() ? 1 : 0;
}

void tmn_sim_destroy(void) {
  if (g_device != nullptr) g_device->~Device();
  g_device = nullptr;
}

uint32_t tmn_crc32(const uint8_t* data, size_t size) { return tinymirnet::crc32(data, size); }

size_t tmn_encode_frame(uint8_t type, uint16_t seq, const uint8_t* payload, size_t payload_size,
                        uint8_t* out, size_t capacity) {
  return tinymirnet::protocol::encode_frame(type, seq, payload, payload_size, out, capacity);
}

long tmn_decode_frame(const uint8_t* data, size_t size, uint8_t* type, uint16_t* seq,
                      uint8_t* payload, size_t capacity) {
  tinymirnet::protocol::FrameDecoder decoder(payload, capacity);
  for (size_t i = 0; i < size; ++i) {
    if (decoder.feed(data[i]) == tinymirnet::protocol::FrameDecoder::Event::kFrame) {
      *type = decoder.header().type;
      *seq = decoder.header().seq;
      return static_cast<long>(decoder.payload_size());
    }
  }
  return -1;
}

void tmn_input_table(int8_t table[256]) {
  memcpy(table, tinymirnet::kInputTable.values, 256);
}

uint32_t tmn_exposure_gain_q8(const uint16_t* frame, uint32_t pixel_format, uint32_t width,
                              uint32_t height, uint32_t target) {
  return tinymirnet::exposure_gain_q8(frame, static_cast<tinymirnet::PixelFormat>(pixel_format),
                                      static_cast<int>(width), static_cast<int>(height), target);
}

void tmn_frame_to_rgb888(const uint16_t* frame, uint32_t pixel_format, uint32_t width,
                         uint32_t height, uint8_t* rgb) {
  const auto format = static_cast<tinymirnet::PixelFormat>(pixel_format);
  for (uint32_t y = 0; y < height; ++y) {
    const uint16_t* row = frame + static_cast<size_t>(y) * width;
    for (uint32_t x = 0; x < width; ++x) {
      const tinymirnet::Rgb888 p = tinymirnet::row_pixel(row, static_cast<int>(x), static_cast<int>(width), format);
      uint8_t* out = rgb + 3 * (static_cast<size_t>(y) * width + x);
      out[0] = p.r;
      out[1] = p.g;
      out[2] = p.b;
    }
  }
}

void tmn_exposed_input_table(uint32_t gain_q8, int8_t table[256]) {
  tinymirnet::InputQuantizationTable exposed;
  tinymirnet::make_exposed_input_table(gain_q8, &exposed);
  memcpy(table, exposed.values, 256);
}

void tmn_output_table(uint8_t table[256]) {
  memcpy(table, tinymirnet::kOutputTable.values, 256);
}

void tmn_thumbnail_input(const uint16_t* frame, uint32_t pixel_format, uint32_t gain_q8,
                         int8_t* thumbnail) {
  tinymirnet::make_thumbnail_input(frame, static_cast<tinymirnet::PixelFormat>(pixel_format),
                                   gain_q8, thumbnail);
}

void tmn_context_requantization_table(int8_t table[256]) {
  memcpy(table, tinymirnet::kContextRequantizationTable.values, 256);
}

}  // extern "C"
