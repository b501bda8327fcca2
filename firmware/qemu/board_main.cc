// The virtual Cortex-M4 board: the firmware's core (tinymirnet::Device) and its TFLM glue
// (firmware/src/tflm_model.cpp, the file the sketch compiles, unchanged) on the board's TFLM
// (Chirale_TensorFlowLite 2.0.0, CMSIS-NN, built for Cortex-M4F by firmware/tflm), running on
// QEMU's mps2-an386. Only the hardware ports differ from the Nano 33 BLE's:
//   link    UART0, which QEMU connects to a host pseudo-terminal (`-serial pty`);
//   camera  the frames the host loaded at 0x21000000 (mps2_an386.h FrameBlob), cycled;
//   clock   timer0's ticks converted to the board's microseconds at FrameBlob::cpu_hz, one
//           instruction per cycle (instructions are not cycles: a real M4 takes more);
//   memory  the stack painted at boot and scanned for the deepest use, newlib's heap;
// and the watchdog is the CMSDK one of mps2-an386, with the sketch's timeout in board time
// (board_settings.h): an invoke that never returns resets the machine as it resets the board.
// For the soak (host/soak.py) the model port takes one test request from the host: a file
// named kStallRequest in QEMU's working folder makes the next invoke never return.
// host/qemu_board.py starts it; `tinymirnet capture --port qemu` and `pytest -m hil --port
// qemu` talk to it exactly as to a board.
#include <malloc.h>
#include <stdio.h>

#include "../src/board_settings.h"
#include "../src/core_headers.h"
#include "../src/tflm_model.h"
#include "mps2_an386.h"

extern "C" {
extern uint32_t __stack_limit[];
extern uint32_t __stack_top[];
// The watchdog's warning: wait for the reset that follows it.
void nmi_handler() {
  for (;;) {
  }
}
}

namespace {

constexpr const char* kStallRequest = "tinymirnet-stall";
constexpr uint32_t kStackPaint = 0xC0FFEE11u;

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

// The board's time: timer0 ticks -> instructions (the host's -icount, in the frame blob) -> the
// board's clock at one instruction per cycle.
struct BoardTime {
  uint64_t instructions_per_kilotick;
  uint64_t cpu_hz;
};

BoardTime board_time() {
  const mps2::FrameBlob* blob = mps2::frame_blob();
  return {blob ? blob->instructions_per_kilotick : 40000, blob && blob->cpu_hz ? blob->cpu_hz : 64000000};
}

class BoardClock final : public tinymirnet::Clock {
 public:
  uint32_t micros() override {
    const BoardTime time = board_time();
    const uint64_t instructions = mps2::timer_ticks() * time.instructions_per_kilotick / 1000;
    return static_cast<uint32_t>(instructions * 1000000 / time.cpu_hz);
  }
};

// The stack below main()'s frame is painted at boot; the lowest word no longer painted is the
// deepest the stack has been.
class PaintedStackMeter final : public tinymirnet::MemoryMeter {
 public:
  void paint() {
    uint32_t* sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (uint32_t* word = __stack_limit; word < sp - 16; ++word) *word = kStackPaint;
  }
  uint32_t stack_high_water_bytes() override {
    const uint32_t* word = __stack_limit;
    while (word < __stack_top && *word == kStackPaint) ++word;
    return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(__stack_top) - reinterpret_cast<uintptr_t>(word));
  }
  uint32_t heap_high_water_bytes() override { return static_cast<uint32_t>(mallinfo().arena); }
};

// The sketch's model port, with the soak's stall request in front of it.
class StallableModel final : public tinymirnet::Model {
 public:
  explicit StallableModel(tinymirnet::TflmModel& model) : model_(model) {}
  tinymirnet::Status begin() override { return model_.begin(); }
  tinymirnet::Status invoke_context(const int8_t* thumbnail, int8_t* context) override {
    stall_if_asked();
    return model_.invoke_context(thumbnail, context);
  }
  tinymirnet::Status invoke(const int8_t* input, const int8_t* context, int8_t* output) override {
    stall_if_asked();
    return model_.invoke(input, context, output);
  }
  size_t arena_used_bytes() const override { return model_.arena_used_bytes(); }
  bool ready() const override { return model_.ready(); }
  const char* status_text() const override { return model_.status_text(); }

 private:
  static void stall_if_asked() {
    if (!mps2::host_take_file(kStallRequest)) return;
    mps2::host_print("tinymirnet virtual Cortex-M4 board: stalling in invoke (soak test request)\n");
    for (;;) {
    }
  }
  tinymirnet::TflmModel& model_;
};

// The watchdog's timeout in timer ticks, in the board's time as the Clock port counts it.
uint32_t watchdog_half_period_ticks() {
  const BoardTime time = board_time();
  return static_cast<uint32_t>(uint64_t{tinymirnet::kWatchdogTimeoutMs} * time.cpu_hz /
                               time.instructions_per_kilotick / 2);
}

UartLink g_link;
BlobCamera g_camera;
tinymirnet::TflmModel g_tflm_model;
StallableModel g_model(g_tflm_model);
BoardClock g_clock;
PaintedStackMeter g_memory;
tinymirnet::Device g_device(g_link, g_camera, g_model, g_clock,
                            "qemu-mps2-an386 (core + tflm_model.cpp + Chirale TFLM 2.0.0)");

}  // namespace

int main() {
  g_memory.paint();
  mps2::timer_begin();
  mps2::uart_begin();
  g_device.set_memory_meter(&g_memory);
  g_device.begin();
  static char line[320];
  snprintf(line, sizeof(line), "tinymirnet virtual Cortex-M4 board: camera %s, model: %s\n",
           mps2::frame_blob() ? "frame blob loaded" : "NO FRAME BLOB at 0x21000000",
           g_model.status_text());
  mps2::host_print(line);
  mps2::watchdog_start(watchdog_half_period_ticks());  // warning after half, reset after all
  for (;;) {
    mps2::watchdog_kick();
    g_device.poll();
  }
}
