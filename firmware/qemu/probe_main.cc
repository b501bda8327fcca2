// The device report's probe: what the board pays, counted on the virtual Cortex-M4 under
// `qemu-system-arm -M mps2-an386 -icount shift=0` (one instruction = 1 ns of virtual time, so
// timer0's 25 MHz tick is 40 instructions). It runs the firmware's own code: TflmModel
// (firmware/src/tflm_model.cpp) behind a timing wrapper, inside tinymirnet::Device, which is
// fed CAPTURE commands as the host sends them; the replies are counted and dropped.
// Ticks fit 32 bits (a 2.5 G-instruction frame is 64 M ticks): newlib-nano prints no %llu.
// Prints one line "TMREPORT {json}" on QEMU's stderr (semihosting) and exits 0, or 1 on a
// failure. host/device_report.py runs it and writes the report.
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../src/core_headers.h"
#include "../src/tflm_model.h"
#include "mps2_an386.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#include "tinymirnet/protocol.h"

extern "C" void semihosting_exit(int code);
extern "C" uint32_t __stack_limit;

namespace {

constexpr int kFrames = 2;
constexpr uint32_t kStackPaint = 0xA5A5A5A5u;

uint64_t ticks() { return mps2::timer_ticks(); }

// Per-op ticks of one model, as TFLM's profiler reports them (the tag is the op's name).
class OpProfiler final : public tflite::MicroProfilerInterface {
 public:
  struct Entry {
    const char* tag;
    uint64_t ticks;
    uint32_t count;
  };
  uint32_t BeginEvent(const char* tag) override {
    tag_[depth_] = tag;
    start_[depth_] = ticks();
    return depth_++;
  }
  void EndEvent(uint32_t handle) override {
    depth_ = handle;
    if (!enabled) return;
    add(tag_[handle], ticks() - start_[handle]);
  }
  void reset() { entries_used = 0; }
  bool enabled = false;
  Entry entries[40] = {};
  int entries_used = 0;

 private:
  void add(const char* tag, uint64_t t) {
    for (int i = 0; i < entries_used; ++i) {
      if (strcmp(entries[i].tag, tag) == 0) {
        entries[i].ticks += t;
        entries[i].count += 1;
        return;
      }
    }
    if (entries_used < 40) entries[entries_used++] = {tag, t, 1};
  }
  const char* tag_[8] = {};
  uint64_t start_[8] = {};
  uint32_t depth_ = 0;
};

// The Model port the Device sees: TflmModel, with the ticks of each call recorded.
struct CallStats {
  uint64_t context_ticks, tile_ticks, tile_max, tile_min;
  uint32_t context_calls, tile_calls;
};

class TimedModel final : public tinymirnet::Model {
 public:
  explicit TimedModel(tinymirnet::TflmModel& model) : model_(model) {}
  tinymirnet::Status begin() override { return model_.begin(); }
  tinymirnet::Status invoke_context(const int8_t* thumbnail, int8_t* context) override {
    const uint64_t t0 = ticks();
    const tinymirnet::Status s = model_.invoke_context(thumbnail, context);
    context_ticks += ticks() - t0;
    context_calls += 1;
    return s;
  }
  tinymirnet::Status invoke(const int8_t* input, const int8_t* context, int8_t* output) override {
    const uint64_t t0 = ticks();
    const tinymirnet::Status s = model_.invoke(input, context, output);
    const uint64_t t = ticks() - t0;
    tile_ticks += t;
    if (tile_calls == 0 || t > tile_max) tile_max = t;
    if (tile_calls == 0 || t < tile_min) tile_min = t;
    tile_calls += 1;
    return s;
  }
  size_t arena_used_bytes() const override { return model_.arena_used_bytes(); }
  bool ready() const override { return model_.ready(); }
  const char* status_text() const override { return model_.status_text(); }
  void reset() { context_ticks = tile_ticks = tile_max = tile_min = 0; context_calls = tile_calls = 0; }
  CallStats stats() const {
    return {context_ticks, tile_ticks, tile_max, tile_min, context_calls, tile_calls};
  }
  uint64_t context_ticks = 0, tile_ticks = 0, tile_max = 0, tile_min = 0;
  uint32_t context_calls = 0, tile_calls = 0;

 private:
  tinymirnet::TflmModel& model_;
};

// A Link that hands the Device one command and swallows everything it sends.
class ScriptLink final : public tinymirnet::Link {
 public:
  void send_command(uint8_t type, uint16_t seq, const uint8_t* payload, size_t size) {
    pending_ = tinymirnet::protocol::encode_frame(type, seq, payload, size, command_, sizeof(command_));
    offset_ = 0;
  }
  size_t read(uint8_t* buffer, size_t capacity) override {
    size_t n = pending_ - offset_;
    if (n > capacity) n = capacity;
    memcpy(buffer, command_ + offset_, n);
    offset_ += n;
    return n;
  }
  size_t write(const uint8_t*, size_t size) override {
    bytes_sent += size;
    return size;
  }
  uint64_t bytes_sent = 0;

 private:
  uint8_t command_[64] = {};
  size_t pending_ = 0, offset_ = 0;
};

class ZeroClock final : public tinymirnet::Clock {
 public:
  uint32_t micros() override { return static_cast<uint32_t>(ticks() * 40 / 64); }  // 64 MHz
};

OpProfiler g_profiler;
tinymirnet::TflmModel g_tflm;
TimedModel g_model(g_tflm);
ScriptLink g_link;
ZeroClock g_clock;

class BlobCamera final : public tinymirnet::Camera {
 public:
  tinymirnet::Status begin() override { return tinymirnet::Status::kOk; }
  // The board's camera format, so that the probe counts the board's pixel conversion.
  tinymirnet::PixelFormat pixel_format() const override { return tinymirnet::PixelFormat::kYuv422; }
  tinymirnet::Status capture(uint16_t* pixels) override {
    const mps2::FrameBlob* blob = mps2::frame_blob();
    for (size_t i = 0; i < tinymirnet::kFramePixels; ++i) {
      // The loaded frame, or a gradient when the probe runs without one.
      pixels[i] = blob ? blob->frames[i] : static_cast<uint16_t>(i * 37u);
    }
    return tinymirnet::Status::kOk;
  }
} g_camera;

tinymirnet::Device g_device(g_link, g_camera, g_model, g_clock, "probe");

char g_json[6144];
size_t g_used = 0;
void out(const char* format, ...) __attribute__((format(printf, 1, 2)));
void out(const char* format, ...) {
  va_list args;
  va_start(args, format);
  const int n = vsnprintf(g_json + g_used, sizeof(g_json) - g_used, format, args);
  va_end(args);
  if (n > 0) g_used += static_cast<size_t>(n) < sizeof(g_json) - g_used ? n : 0;
}

void fail(const char* what) {
  static char line[300];
  snprintf(line, sizeof(line), "TMREPORT-FAILED %s: %s\n", what, g_tflm.status_text());
  mps2::host_print(line);
  semihosting_exit(1);
}

void profile_json(const char* name) {
  out("\"%s\":[", name);
  for (int i = 0; i < g_profiler.entries_used; ++i) {
    const OpProfiler::Entry& e = g_profiler.entries[i];
    out("%s{\"op\":\"%s\",\"ticks\":%lu,\"calls\":%lu}", i ? "," : "", e.tag,
        static_cast<unsigned long>(e.ticks), static_cast<unsigned long>(e.count));
  }
  out("]");
}

uint32_t stack_untouched_bytes() {
  const uint32_t* p = &__stack_limit;
  uint32_t n = 0;
  while (p[n] == kStackPaint) ++n;
  return n * 4;
}

}  // namespace

// The cycle model (cycle_model.c, a QEMU plugin) counts only what runs between these two calls:
// the whole frames. Without the plugin they are two empty calls.
extern "C" __attribute__((noinline, used)) void cycle_window_open() { __asm__ volatile(""); }
extern "C" __attribute__((noinline, used)) void cycle_window_close() { __asm__ volatile(""); }

int main() {
  // Paint the stack below the current frame so its high-water mark can be read at the end.
  {
    uint32_t* p = &__stack_limit;
    uint32_t* sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    while (p < sp - 64) *p++ = kStackPaint;
  }
  mps2::timer_begin();
  g_tflm.set_profiler(&g_profiler);

  uint64_t t0 = ticks();
  g_device.begin();  // camera, TflmModel::begin(): both interpreters created and allocated once
  const uint64_t begin_ticks = ticks() - t0;
  if (!g_tflm.ready()) fail("begin");

  // Whole frames, as the host asks for them: CAPTURE with the enhance flag.
  uint64_t frame_ticks[kFrames] = {};
  uint64_t bytes[kFrames] = {};
  CallStats frame_calls[kFrames] = {};
  cycle_window_open();
  for (int f = 0; f < kFrames; ++f) {
    g_model.reset();
    g_link.bytes_sent = 0;
    const uint8_t flags = tinymirnet::protocol::kCaptureEnhance;
    g_link.send_command(tinymirnet::protocol::kCapture, static_cast<uint16_t>(100 + f), &flags, 1);
    t0 = ticks();
    g_device.poll();
    if (!g_device.busy()) fail("CAPTURE was not accepted");
    while (g_device.busy()) g_device.poll();
    frame_ticks[f] = ticks() - t0;
    bytes[f] = g_link.bytes_sent;
    frame_calls[f] = g_model.stats();
    if (g_model.tile_calls != static_cast<uint32_t>(tinymirnet::kTileCount)) fail("frame");
  }
  cycle_window_close();

  // One call at a time, to split a switch from an invoke: the first call after the other
  // model ran creates this model's interpreter (and allocates its tensors), the second does not.
  static int8_t thumbnail[tinymirnet::kFrameContext ? tinymirnet::kThumbnailBytes : 1] = {};
  static int8_t context[tinymirnet::kFrameContext ? tinymirnet::kContextValues : 1] = {};
  static int8_t tile_in[tinymirnet::kModelTensorBytes] = {};
  static int8_t tile_out[tinymirnet::kModelTensorBytes] = {};
  uint64_t c[2] = {}, t[2] = {};
  for (int i = 0; i < 2 && tinymirnet::kFrameContext; ++i) {
    t0 = ticks();
    if (g_tflm.invoke_context(thumbnail, context) != tinymirnet::Status::kOk) fail("context invoke");
    c[i] = ticks() - t0;
  }
  for (int i = 0; i < 2; ++i) {  // the profile keeps the second, switch-free invoke's ops
    g_profiler.reset();
    g_profiler.enabled = i == 1;
    t0 = ticks();
    if (g_tflm.invoke(tile_in, tinymirnet::kFrameContext ? context : nullptr, tile_out) !=
        tinymirnet::Status::kOk) {
      fail("tile invoke");
    }
    t[i] = ticks() - t0;
  }
  g_profiler.enabled = false;
  out("{\"instructions_per_tick\":40,\"begin_ticks\":%lu,", static_cast<unsigned long>(begin_ticks));
  profile_json("tile_ops");
  out(",");
  g_profiler.reset();
  for (int i = 0; i < 2 && tinymirnet::kFrameContext; ++i) {  // the same for the context model
    g_profiler.reset();
    g_profiler.enabled = i == 1;
    g_tflm.invoke_context(thumbnail, context);
  }
  g_profiler.enabled = false;
  profile_json("context_ops");
  out(",\"context_first_ticks\":%lu,\"context_again_ticks\":%lu,\"tile_first_ticks\":%lu,"
      "\"tile_again_ticks\":%lu,",
      static_cast<unsigned long>(c[0]), static_cast<unsigned long>(c[1]),
      static_cast<unsigned long>(t[0]), static_cast<unsigned long>(t[1]));
  out("\"frames\":[");
  for (int f = 0; f < kFrames; ++f) {
    const CallStats& m = frame_calls[f];
    out("%s{\"ticks\":%lu,\"context_ticks\":%lu,\"tile_ticks\":%lu,\"tile_min_ticks\":%lu,"
        "\"tile_max_ticks\":%lu,\"tiles\":%lu,\"bytes_sent\":%lu}",
        f ? "," : "", static_cast<unsigned long>(frame_ticks[f]),
        static_cast<unsigned long>(m.context_ticks), static_cast<unsigned long>(m.tile_ticks),
        static_cast<unsigned long>(m.tile_min), static_cast<unsigned long>(m.tile_max),
        static_cast<unsigned long>(m.tile_calls), static_cast<unsigned long>(bytes[f]));
  }
  out("],\"arena_size\":%lu,\"arena_used_tile\":%lu,\"arena_used_context\":%lu,"
      "\"stack_reserved\":%lu,\"stack_unused\":%lu,\"frame_context\":%s,\"tile_count\":%d}",
      static_cast<unsigned long>(tinymirnet::kArenaSize),
      static_cast<unsigned long>(g_tflm.arena_used_bytes(false)),
      static_cast<unsigned long>(g_tflm.arena_used_bytes(true)),
      static_cast<unsigned long>(16 * 1024), static_cast<unsigned long>(stack_untouched_bytes()),
      tinymirnet::kFrameContext ? "true" : "false", tinymirnet::kTileCount);
  mps2::host_print("TMREPORT ");
  mps2::host_print(g_json);
  mps2::host_print("\n");
  semihosting_exit(0);
  return 0;
}
