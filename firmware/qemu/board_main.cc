// The virtual Cortex-M4 board: the firmware's core (tinymirnet::Device) and its TFLM glue
// (firmware/src/tflm_model.cpp, the file the sketch compiles, unchanged) on the board's TFLM
// (Chirale_TensorFlowLite 2.0.0, CMSIS-NN, built for Cortex-M4F by firmware/tflm), running on
// QEMU's mps2-an386. Only the three hardware ports differ from the Nano 33 BLE's:
//   link    UART0, which QEMU connects to a host pseudo-terminal (`-serial pty`);
//   camera  the frames the host loaded at 0x21000000 (mps2_an386.h FrameBlob), cycled;
//   clock   timer0's ticks converted to the board's microseconds at FrameBlob::cpu_hz, one
//           instruction per cycle (instructions are not cycles: a real M4 takes more).
// host/qemu_board.py starts it; `tinymirnet capture --port qemu` and `pytest -m hil --port
// qemu` talk to it exactly as to a board.
#include <stdio.h>

#include "../src/core_headers.h"
#include "../src/tflm_model.h"
#include "mps2_an386.h"

namespace {

class UartLink final : public tinymirnet::Link {
 public:
  size_t read(uint8_t* buffer, size_t capacity) override { return mps2::uart_read(buffer, capacity); }
  size_t write(const uint8_t* data, size_t size) override {
    mps2::uart_write(data, size);
    return size;
  }
};

class BlobCamera final : public tinymirnet::Camera {
 public:
  tinymirnet::Status begin() override {
    return mps2::frame_blob() != nullptr ? tinymirnet::Status::kOk : tinymirnet::Status::kError;
  }
  // The host writes the blob's frames in the OV7675 adapter's format.
  tinymirnet::PixelFormat pixel_format() const override { return tinymirnet::PixelFormat::kYuv422; }
  tinymirnet::Status capture(uint16_t* pixels) override {
    const mps2::FrameBlob* blob = mps2::frame_blob();
    if (blob == nullptr) return tinymirnet::Status::kError;
    const uint16_t* frame = blob->frames + static_cast<size_t>(next_) * tinymirnet::kFramePixels;
    for (size_t i = 0; i < tinymirnet::kFramePixels; ++i) pixels[i] = frame[i];
    next_ = (next_ + 1) % blob->frame_count;
    return tinymirnet::Status::kOk;
  }

 private:
  uint32_t next_ = 0;
};

class BoardClock final : public tinymirnet::Clock {
 public:
  uint32_t micros() override {
    const mps2::FrameBlob* blob = mps2::frame_blob();
    const uint64_t ipk = blob ? blob->instructions_per_kilotick : 40000;
    const uint64_t hz = blob && blob->cpu_hz ? blob->cpu_hz : 64000000;
    const uint64_t instructions = mps2::timer_ticks() * ipk / 1000;
    return static_cast<uint32_t>(instructions * 1000000 / hz);
  }
};

UartLink g_link;
BlobCamera g_camera;
tinymirnet::TflmModel g_model;
BoardClock g_clock;
tinymirnet::Device g_device(g_link, g_camera, g_model, g_clock,
                            "qemu-mps2-an386 (core + tflm_model.cpp + Chirale TFLM 2.0.0)");

}  // namespace

int main() {
  mps2::timer_begin();
  mps2::uart_begin();
  g_device.begin();
  static char line[320];
  snprintf(line, sizeof(line), "tinymirnet virtual Cortex-M4 board: camera %s, model: %s\n",
           mps2::frame_blob() ? "frame blob loaded" : "NO FRAME BLOB at 0x21000000",
           g_model.status_text());
  mps2::host_print(line);
  for (;;) g_device.poll();
}
