// Dispatcher flows through fake ports: the test plays the host, encoding commands into the
// fake link and decoding the device's replies with the same codec.
#include <string.h>

#include <new>

#include "tinymirnet/crc32.h"
#include "tinymirnet/device.h"
#include "fake_ports.h"
#include "tinymirnet/pixels.h"
#include "tinymirnet/protocol.h"
#include "test_framework.h"

using namespace tinymirnet;
using namespace tinymirnet::protocol;
using fakes::FakeModel;

namespace {

constexpr size_t kImageBytes = kFramePixels * 3;
constexpr size_t kChunkData = kMaxPayload - kUploadChunkHeaderBytes;

struct Message {
  uint8_t type;
  uint16_t seq;
  size_t size;
  uint8_t payload[kMaxPayload];
};

uint16_t read_u16(const uint8_t* in) { return static_cast<uint16_t>(in[0] | (in[1] << 8)); }

uint32_t read_u32(const uint8_t* in) {
  return read_u16(in) | (static_cast<uint32_t>(read_u16(in + 2)) << 16);
}

// The device under test with its fake ports, and the host side of the link.
class Bench {
 public:
  fakes::FakeLink link;
  fakes::FakeCamera camera;
  fakes::FakeModel model;
  fakes::FakeClock clock;
  Device device{link, camera, model, clock, "test-1.0"};

  Bench() : decoder_(payload_, sizeof(payload_)) {}

  void send(uint8_t type, uint16_t seq, const uint8_t* payload = nullptr, size_t size = 0) {
    uint8_t frame[kMaxFrameBytes];
    send_bytes(frame, encode_frame(type, seq, payload, size, frame, sizeof(frame)));
  }

  void send_bytes(const uint8_t* data, size_t size) { link.host_send(data, size); }

  // Polls until the device has read everything and finished its job (bounded).
  void run_until_idle() {
    for (int i = 0; i < 10000 && (device.busy() || link.inbound_pending() > 0); ++i) {
      device.poll();
    }
    device.poll();
  }

  // Decodes the next message the device sent; false when there is none.
  bool next(Message* message) {
    while (read_position_ < link.sent_size()) {
      const FrameDecoder::Event event = decoder_.feed(link.sent()[read_position_++]);
      if (event == FrameDecoder::Event::kFrame) {
        message->type = decoder_.header().type;
        message->seq = decoder_.header().seq;
        message->size = decoder_.payload_size();
        memcpy(message->payload, decoder_.payload(), message->size);
        return true;
      }
      if (event != FrameDecoder::Event::kNone) return false;  // a corrupt reply: fail below
    }
    return false;
  }

  bool nothing_more() {
    Message message;
    return !next(&message);
  }

 private:
  uint8_t payload_[kMaxPayload];
  FrameDecoder decoder_;
  size_t read_position_ = 0;
};

// Each test gets a fresh bench, constructed in static storage (it is too big for a stack).
alignas(Bench) unsigned char g_bench_storage[sizeof(Bench)];
Bench* g_bench = nullptr;

Bench& new_bench() {
  if (g_bench != nullptr) g_bench->~Bench();
  g_bench = new (g_bench_storage) Bench();
  return *g_bench;
}

Bench& started_bench() {
  Bench& bench = new_bench();
  bench.device.begin();
  return bench;
}

// Reads the next message and checks its type and seq.
bool expect(Bench& bench, uint8_t type, uint16_t seq, Message* message) {
  if (!CHECK(bench.next(message))) return false;
  const bool type_ok = CHECK_EQ(message->type, type);
  const bool seq_ok = CHECK_EQ(message->seq, seq);
  return type_ok && seq_ok;
}

void expect_ack(Bench& bench, uint16_t seq, uint8_t command) {
  Message message;
  if (expect(bench, kAck, seq, &message)) {
    CHECK_EQ(message.size, 1u);
    CHECK_EQ(message.payload[0], command);
  }
}

void expect_error(Bench& bench, uint16_t seq, uint16_t code) {
  Message message;
  if (expect(bench, kError, seq, &message)) {
    CHECK(message.size > 2);  // code and some text
    CHECK_EQ(read_u16(message.payload), code);
  }
}

void command(Bench& bench, uint8_t type, uint16_t seq, const uint8_t* payload = nullptr,
             size_t size = 0) {
  bench.send(type, seq, payload, size);
  bench.run_until_idle();
}

void hello_expect_info(Bench& bench, uint16_t seq) {
  command(bench, kHello, seq);
  Message message;
  expect(bench, kInfo, seq, &message);
}

void upload_frame(Bench& bench, uint16_t* seq, const uint16_t* frame,
                  uint8_t pixel_format = kPixelFormatRgb565) {
  const uint8_t enhance[] = {pixel_format, uint8_t(kFrameWidth), uint8_t(kFrameWidth >> 8),
                             uint8_t(kFrameHeight), uint8_t(kFrameHeight >> 8)};
  command(bench, kEnhance, *seq, enhance, sizeof(enhance));
  expect_ack(bench, (*seq)++, kEnhance);
  const uint8_t* bytes = reinterpret_cast<const uint8_t*>(frame);
  uint8_t chunk[kMaxPayload];
  for (uint32_t offset = 0; offset < kFrameBufferBytes; offset += kChunkData) {
    const size_t size = kFrameBufferBytes - offset < kChunkData ? kFrameBufferBytes - offset
                                                                : kChunkData;
    PayloadWriter writer(chunk, sizeof(chunk));
    writer.u32(offset);
    writer.bytes(bytes + offset, size);
    command(bench, kUploadChunk, *seq, chunk, writer.size());
    expect_ack(bench, (*seq)++, kUploadChunk);
  }
}

struct StreamOutcome {
  int tiles = 0;
  bool done = false;
  uint16_t done_tile_count = 0;
  uint32_t done_inference_us = 0;
  uint32_t tile_inference_us = 0;  // sum over the TILE messages
  uint16_t error_code = 0;
  bool raw_frame_complete = false;
};

uint8_t g_image[kImageBytes];
uint16_t g_raw_frame[kFramePixels];
uint16_t g_pattern_frame[kFramePixels];
uint8_t g_expected[kImageBytes];

void stitch_tile(const Message& message) {
  const int x = read_u16(message.payload + 2), y = read_u16(message.payload + 4);
  const int width = read_u16(message.payload + 6), height = read_u16(message.payload + 8);
  const uint8_t* rgb = message.payload + kTileHeaderBytes;
  for (int row = 0; row < height; ++row) {
    memcpy(g_image + ((y + row) * kFrameWidth + x) * 3, rgb + row * width * 3, width * 3);
  }
}

// Reads stream messages (FRAME_CHUNK, TILE) until DONE or ERROR, reassembling both images.
StreamOutcome read_stream(Bench& bench, uint16_t seq) {
  StreamOutcome outcome;
  memset(g_image, 0, sizeof(g_image));
  uint32_t raw_received = 0;
  Message message;
  while (bench.next(&message)) {
    CHECK_EQ(message.seq, seq);
    if (message.type == kFrameChunk) {
      const uint32_t offset = read_u32(message.payload);
      CHECK_EQ(read_u32(message.payload + 4), kFrameBufferBytes);
      CHECK_EQ(offset, raw_received);  // in order, no gaps
      const size_t size = message.size - kFrameChunkHeaderBytes;
      memcpy(reinterpret_cast<uint8_t*>(g_raw_frame) + offset,
             message.payload + kFrameChunkHeaderBytes, size);
      raw_received += static_cast<uint32_t>(size);
    } else if (message.type == kTile) {
      CHECK_EQ(read_u16(message.payload), outcome.tiles);  // row-major order
      CHECK_EQ(message.size, kTileHeaderBytes + read_u16(message.payload + 6) *
                                                    read_u16(message.payload + 8) * 3u);
      outcome.tile_inference_us += read_u32(message.payload + 10);
      stitch_tile(message);
      ++outcome.tiles;
    } else if (message.type == kDone) {
      CHECK_EQ(message.size, kDoneBytes);
      outcome.done = true;
      outcome.done_tile_count = read_u16(message.payload);
      outcome.done_inference_us = read_u32(message.payload + 2);
      break;
    } else if (message.type == kError) {
      outcome.error_code = read_u16(message.payload);
      break;
    } else {
      CHECK_EQ(message.type, -1);  // unexpected message type
    }
  }
  outcome.raw_frame_complete = raw_received == kFrameBufferBytes;
  return outcome;
}

// RUN on the frame the device holds (uploaded or captured): its ACK, then the stream it answers with.
StreamOutcome run_frame(Bench& bench, uint16_t seq) {
  command(bench, kRun, seq);
  expect_ack(bench, seq, kRun);
  return read_stream(bench, seq);
}

void fill_pattern_frame() {
  for (int y = 0; y < kFrameHeight; ++y) {
    for (int x = 0; x < kFrameWidth; ++x) {
      g_pattern_frame[y * kFrameWidth + x] = fakes::pattern_pixel(x, y);
    }
  }
}

// What the device should return for a frame: every channel through the frame's exposure
// gain, the input table, the fake model and the output table, then the colour and highlight
// guards against the camera pixel.
void compute_expected_image(const uint16_t* frame, const FakeModel& model,
                            PixelFormat format = PixelFormat::kRgb565) {
  const uint32_t gain = exposure_gain_q8(frame, format, kFrameWidth, kFrameHeight, kExposureTarget);
  for (size_t i = 0; i < kFramePixels; ++i) {
    const Rgb888 rgb = row_pixel(frame + i / kFrameWidth * kFrameWidth, static_cast<int>(i % kFrameWidth),
                                     kFrameWidth, format);
    const uint8_t channels[3] = {rgb.r, rgb.g, rgb.b};
    uint8_t out[3];
    for (int c = 0; c < 3; ++c) {
      const int8_t q = quantize_input(apply_gain_q8(channels[c], gain));
      out[c] = dequantize_output(model.apply(q));
    }
    keep_colour(rgb, out);
    for (int c = 0; c < 3; ++c) g_expected[i * 3 + c] = keep_highlight(out[c], channels[c]);
  }
}

// The thumbnail the device must give the context model (model/thumbnail.py), computed here
// pixel by pixel: each frame pixel is added to the box that holds it, and each box counts
// its own pixels.
int8_t g_expected_thumbnail[kFrameContext ? kThumbnailBytes : 1];

void compute_expected_thumbnail(const uint16_t* frame, PixelFormat format = PixelFormat::kRgb565) {
  constexpr int kBoxesX = kThumbnailWidth > 0 ? kThumbnailWidth : 1;  // (one-model builds)
  constexpr int kBoxesY = kThumbnailHeight > 0 ? kThumbnailHeight : 1;
  static uint32_t sums[kFrameContext ? kThumbnailBytes : 1];
  static uint32_t counts[kFrameContext ? kThumbnailBytes / 3 : 1];
  memset(sums, 0, sizeof(sums));
  memset(counts, 0, sizeof(counts));
  const uint32_t gain = exposure_gain_q8(frame, format, kFrameWidth, kFrameHeight, kExposureTarget);
  for (int y = 0; y < kFrameHeight; ++y) {
    int j = 0;
    while ((j + 1) * kFrameHeight / kBoxesY <= y) ++j;
    for (int x = 0; x < kFrameWidth; ++x) {
      int i = 0;
      while ((i + 1) * kFrameWidth / kBoxesX <= x) ++i;
      const Rgb888 rgb = row_pixel(frame + static_cast<size_t>(y) * kFrameWidth, x, kFrameWidth, format);
      const int box = j * kBoxesX + i;
      sums[box * 3 + 0] += apply_gain_q8(rgb.r, gain);
      sums[box * 3 + 1] += apply_gain_q8(rgb.g, gain);
      sums[box * 3 + 2] += apply_gain_q8(rgb.b, gain);
      ++counts[box];
    }
  }
  for (size_t v = 0; v < kThumbnailBytes; ++v) {
    const uint32_t count = counts[v / 3];
    g_expected_thumbnail[v] = kThumbnailInputTable.values[(sums[v] + count / 2) / count];
  }
}

// ---------------------------------------------------------------------------------------

void check_hello_returns_info() {
  Bench& bench = started_bench();
  command(bench, kHello, 0x4242);
  Message info;
  if (!expect(bench, kInfo, 0x4242, &info)) return;
  CHECK(info.size > kInfoFixedBytes);
  PayloadReader reader(info.payload, info.size);
  CHECK_EQ(reader.u8(), kVersion);
  CHECK_EQ(reader.u8(), kStatusCameraReady | kStatusModelReady);
  CHECK_EQ(reader.u16(), kMaxPayload);
  CHECK_EQ(reader.u16(), kTileSize);
  CHECK_EQ(reader.u16(), kHalo);
  CHECK_EQ(reader.u16(), kModelInputSize);
  CHECK_EQ(reader.u16(), kFrameWidth);
  CHECK_EQ(reader.u16(), kFrameHeight);
  CHECK_EQ(reader.u16(), kTileCount);
  const uint32_t input_scale_bits = reader.u32();
  float input_scale;
  memcpy(&input_scale, &input_scale_bits, 4);
  CHECK(input_scale == kInputScale);
  CHECK_EQ(static_cast<int32_t>(reader.u32()), kInputZeroPoint);
  reader.u32();  // output scale
  CHECK_EQ(static_cast<int32_t>(reader.u32()), kOutputZeroPoint);
  CHECK_EQ(reader.u32(), kArenaSize);
  CHECK_EQ(reader.u32(), 12345u);  // FakeModel::arena_used_bytes
  CHECK_EQ(reader.u32(), kModelBytes);
  // two SHA-256, the camera's pixel format, uptime, stack and heap high-water, then the version
  CHECK_EQ(reader.remaining(), 64u + 1u + 16u + strlen("test-1.0"));
  bool context_sha_is_zero = true;
  for (size_t i = 44 + 32; i < 44 + 64; ++i) context_sha_is_zero &= info.payload[i] == 0;
  CHECK_EQ(context_sha_is_zero, !kFrameContext);
  CHECK_EQ(info.payload[108], kPixelFormatRgb565);  // the fake camera's format
  PayloadReader tail(info.payload + 109, 12);
  tail.u32();                 // uptime: the fake clock's
  CHECK_EQ(tail.u32(), 0u);   // no memory meter: not measured
  CHECK_EQ(tail.u32(), 0u);
  CHECK_EQ(tail.u32(), 0u);   // no session token since boot
  CHECK(memcmp(info.payload + kInfoFixedBytes, "test-1.0", 8) == 0);
  CHECK(bench.nothing_more());
}

// INFO's uptime keeps counting across the Clock's 32-bit wrap, and the memory meter's marks
// reach the host as they are.
void check_info_reports_uptime_and_high_water_marks() {
  Bench& bench = new_bench();
  fakes::FakeMemoryMeter meter;
  meter.stack = 5120;
  meter.heap = 2048;
  bench.device.set_memory_meter(&meter);
  bench.clock.now_us = 0xFFFFFFFFu - 500000u;  // half a second before the clock wraps
  bench.device.begin();
  bench.clock.advance(2000000);  // wraps
  bench.device.poll();
  command(bench, kHello, 7);
  Message info;
  if (!expect(bench, kInfo, 7, &info)) return;
  PayloadReader tail(info.payload + 109, 16);
  const uint32_t uptime_ms = tail.u32();
  CHECK(uptime_ms >= 2000 && uptime_ms < 2100);
  CHECK_EQ(tail.u32(), 5120u);
  CHECK_EQ(tail.u32(), 2048u);
  CHECK_EQ(tail.u32(), 0u);
}

// A HELLO with a session token: INFO echoes it, and keeps it for token-less HELLOs; a device
// that boots again has forgotten it (the host's sign of a reset).
void check_hello_session_token() {
  Bench& bench = started_bench();
  const uint8_t token[4] = {0x78, 0x56, 0x34, 0x12};
  command(bench, kHello, 8, token, 4);
  Message info;
  if (!expect(bench, kInfo, 8, &info)) return;
  PayloadReader first(info.payload + 121, 4);
  CHECK_EQ(first.u32(), 0x12345678u);
  command(bench, kHello, 9);
  if (!expect(bench, kInfo, 9, &info)) return;
  PayloadReader again(info.payload + 121, 4);
  CHECK_EQ(again.u32(), 0x12345678u);
  const uint8_t odd[2] = {1, 2};
  command(bench, kHello, 10, odd, 2);
  expect_error(bench, 10, kErrorBadLength);
}

void check_upload_and_run_streams_tiles() {
  Bench& bench = started_bench();
  fill_pattern_frame();
  uint16_t seq = 100;
  upload_frame(bench, &seq, g_pattern_frame);
  const StreamOutcome outcome = run_frame(bench, seq);
  CHECK_EQ(outcome.tiles, kTileCount);
  CHECK(outcome.done);
  CHECK_EQ(outcome.done_tile_count, kTileCount);
  // DONE's total adds the context model's time to the tiles' (a frame-context network).
  if (kFrameContext) {
    CHECK(outcome.done_inference_us > outcome.tile_inference_us);
  } else {
    CHECK_EQ(outcome.done_inference_us, outcome.tile_inference_us);
  }
  CHECK(outcome.tile_inference_us > 0);
  CHECK_EQ(bench.model.invokes, kTileCount);
  compute_expected_image(g_pattern_frame, bench.model);
  CHECK(memcmp(g_image, g_expected, kImageBytes) == 0);
}

void check_capture_streams_frame_then_tiles() {
  Bench& bench = started_bench();
  bench.model.mode = FakeModel::Mode::kInvert;
  const uint8_t flags = kCaptureSendFrame | kCaptureEnhance;
  command(bench, kCapture, 7, &flags, 1);
  expect_ack(bench, 7, kCapture);
  const StreamOutcome outcome = read_stream(bench, 7);
  fill_pattern_frame();
  CHECK(outcome.raw_frame_complete);
  CHECK(memcmp(g_raw_frame, g_pattern_frame, kFrameBufferBytes) == 0);
  CHECK_EQ(outcome.tiles, kTileCount);
  CHECK(outcome.done);
  compute_expected_image(g_pattern_frame, bench.model);
  CHECK(memcmp(g_image, g_expected, kImageBytes) == 0);
  CHECK_EQ(bench.camera.captures, 1);
}

// A YUV422 frame (the OV7675 adapter's format), uploaded and captured: every pixel is
// converted as pixels.h says, INFO names the camera's format, and the raw frame comes back as
// the camera gave it. The pattern's u16 values read as YUV422 are another picture than as
// RGB565, so a device that ignored the format would fail here.
void check_yuv422_frames() {
  Bench& bench = started_bench();
  bench.model.mode = FakeModel::Mode::kInvert;
  fill_pattern_frame();
  uint16_t seq = 1;
  upload_frame(bench, &seq, g_pattern_frame, kPixelFormatYuv422);
  StreamOutcome outcome = run_frame(bench, seq++);
  CHECK_EQ(outcome.tiles, kTileCount);
  compute_expected_image(g_pattern_frame, bench.model, PixelFormat::kRgb565);
  CHECK(memcmp(g_image, g_expected, kImageBytes) != 0);
  compute_expected_image(g_pattern_frame, bench.model, PixelFormat::kYuv422);
  CHECK(memcmp(g_image, g_expected, kImageBytes) == 0);
  if (kFrameContext) {
    compute_expected_thumbnail(g_pattern_frame, PixelFormat::kYuv422);
    CHECK(memcmp(bench.model.last_thumbnail, g_expected_thumbnail, kThumbnailBytes) == 0);
  }
  bench.camera.format = PixelFormat::kYuv422;
  bench.camera.yuv422 = g_pattern_frame;
  command(bench, kHello, seq);
  Message info;
  if (expect(bench, kInfo, seq++, &info)) CHECK_EQ(info.payload[108], kPixelFormatYuv422);
  const uint8_t flags = kCaptureSendFrame | kCaptureEnhance;
  command(bench, kCapture, seq, &flags, 1);
  expect_ack(bench, seq, kCapture);
  outcome = read_stream(bench, seq++);
  CHECK(outcome.raw_frame_complete);
  CHECK(memcmp(g_raw_frame, g_pattern_frame, kFrameBufferBytes) == 0);
  CHECK(memcmp(g_image, g_expected, kImageBytes) == 0);
  // A later RGB565 upload is read as RGB565 again.
  upload_frame(bench, &seq, g_pattern_frame, kPixelFormatRgb565);
  outcome = run_frame(bench, seq++);
  compute_expected_image(g_pattern_frame, bench.model, PixelFormat::kRgb565);
  CHECK(memcmp(g_image, g_expected, kImageBytes) == 0);
  bench.camera.format = PixelFormat::kRgb565;
  bench.camera.yuv422 = nullptr;
  CHECK(bench.nothing_more());
}

void check_capture_raw_only_then_read_frame_and_run_tile() {
  Bench& bench = started_bench();
  const uint8_t flags = kCaptureSendFrame;
  command(bench, kCapture, 1, &flags, 1);
  expect_ack(bench, 1, kCapture);
  StreamOutcome outcome = read_stream(bench, 1);
  CHECK(outcome.raw_frame_complete);
  CHECK(outcome.done);
  CHECK_EQ(outcome.done_tile_count, 0);
  CHECK_EQ(bench.model.invokes, 0);

  // READ_FRAME returns any part of the frame buffer again.
  const uint8_t read_request[] = {0x10, 0x00, 0x00, 0x00, 0x20, 0x00};  // 32 bytes at 16
  command(bench, kReadFrame, 2, read_request, sizeof(read_request));
  Message chunk;
  if (expect(bench, kFrameChunk, 2, &chunk)) {
    CHECK_EQ(read_u32(chunk.payload), 16u);
    CHECK_EQ(chunk.size, kFrameChunkHeaderBytes + 32);
    fill_pattern_frame();
    CHECK(memcmp(chunk.payload + kFrameChunkHeaderBytes,
                 reinterpret_cast<uint8_t*>(g_pattern_frame) + 16, 32) == 0);
  }
  const uint8_t past_end[] = {0xFF, 0x95, 0x00, 0x00, 0x02, 0x00};  // 2 bytes at 38399
  command(bench, kReadFrame, 3, past_end, sizeof(past_end));
  expect_error(bench, 3, kErrorBadArgument);

  // RUN_TILE enhances one tile of the frame buffer.
  const uint8_t tile_request[] = {kTileCount - 1, 0};
  command(bench, kRunTile, 4, tile_request, sizeof(tile_request));
  Message tile;
  if (expect(bench, kTile, 4, &tile)) {
    memset(g_image, 0, sizeof(g_image));
    stitch_tile(tile);
    compute_expected_image(g_pattern_frame, bench.model);
    const TileRect rect = tile_rect(kTileCount - 1);
    const size_t start = (rect.y * kFrameWidth + rect.x) * 3;
    CHECK(memcmp(g_image + start, g_expected + start, rect.width * 3) == 0);
  }
  const uint8_t bad_tile[] = {kTileCount, 0};
  command(bench, kRunTile, 5, bad_tile, sizeof(bad_tile));
  expect_error(bench, 5, kErrorBadArgument);
  CHECK(bench.nothing_more());
}

void check_bad_commands_get_errors_and_device_recovers() {
  Bench& bench = started_bench();
  command(bench, 0x42, 1);
  expect_error(bench, 1, kErrorUnknownType);
  const uint8_t extra[] = {1, 2};
  command(bench, kHello, 2, extra, 1);
  expect_error(bench, 2, kErrorBadLength);
  command(bench, kCapture, 3, extra, 2);
  expect_error(bench, 3, kErrorBadLength);
  const uint8_t unknown_flags = 0x80;
  command(bench, kCapture, 4, &unknown_flags, 1);
  expect_error(bench, 4, kErrorBadArgument);
  command(bench, kRun, 5);
  expect_error(bench, 5, kErrorNoFrame);
  command(bench, kUploadChunk, 6, extra, 2);
  expect_error(bench, 6, kErrorBadLength);
  const uint8_t chunk[] = {0, 0, 0, 0, 9};
  command(bench, kUploadChunk, 7, chunk, sizeof(chunk));
  expect_error(bench, 7, kErrorNoUpload);
  const uint8_t wrong_size[] = {kPixelFormatRgb565, 64, 0, 64, 0};
  command(bench, kEnhance, 8, wrong_size, sizeof(wrong_size));
  expect_error(bench, 8, kErrorBadArgument);
  const uint8_t unknown_format[] = {2, uint8_t(kFrameWidth), uint8_t(kFrameWidth >> 8),
                                    uint8_t(kFrameHeight), uint8_t(kFrameHeight >> 8)};
  command(bench, kEnhance, 9, unknown_format, sizeof(unknown_format));
  expect_error(bench, 9, kErrorBadArgument);
  hello_expect_info(bench, 10);
  CHECK(bench.nothing_more());
}

void check_upload_gap_is_refused() {
  Bench& bench = started_bench();
  const uint8_t enhance[] = {kPixelFormatRgb565, uint8_t(kFrameWidth), uint8_t(kFrameWidth >> 8),
                             uint8_t(kFrameHeight), uint8_t(kFrameHeight >> 8)};
  command(bench, kEnhance, 1, enhance, sizeof(enhance));
  expect_ack(bench, 1, kEnhance);
  const uint8_t gap_chunk[] = {0x10, 0, 0, 0, 1, 2, 3, 4};  // offset 16, nothing received yet
  command(bench, kUploadChunk, 2, gap_chunk, sizeof(gap_chunk));
  expect_error(bench, 2, kErrorBadArgument);
  command(bench, kRun, 3);
  expect_error(bench, 3, kErrorNoFrame);
}

// A frame with another version but a valid header check is answered, not ignored.
void check_unsupported_version() {
  Bench& bench = started_bench();
  uint8_t frame[kFramingBytes];
  encode_frame(kHello, 5, nullptr, 0, frame, sizeof(frame));
  frame[2] = kVersion + 1;
  const uint32_t check = crc32(frame, 8);
  frame[8] = static_cast<uint8_t>(check);
  frame[9] = static_cast<uint8_t>(check >> 8);
  bench.send_bytes(frame, sizeof(frame));
  bench.run_until_idle();
  expect_error(bench, 5, kErrorBadVersion);
}

void check_corrupted_command_gets_nak_and_retransmission_works() {
  Bench& bench = started_bench();
  const uint8_t flags = kCaptureEnhance;
  uint8_t frame[kFramingBytes + 1];
  encode_frame(kCapture, 33, &flags, 1, frame, sizeof(frame));
  frame[kHeaderBytes] ^= 0x40;  // payload byte
  bench.send_bytes(frame, sizeof(frame));
  bench.run_until_idle();
  Message nak;
  if (expect(bench, kNak, 33, &nak)) CHECK_EQ(nak.payload[0], kCapture);
  CHECK(!bench.device.busy());
  command(bench, kCapture, 33, &flags, 1);
  expect_ack(bench, 33, kCapture);
  const StreamOutcome outcome = read_stream(bench, 33);
  CHECK_EQ(outcome.tiles, kTileCount);
  CHECK(outcome.done);
}

// A retransmitted command (its ACK was lost) is acknowledged again but runs only once.
void check_retransmitted_command_runs_once() {
  Bench& bench = started_bench();
  const uint8_t flags = kCaptureEnhance;
  bench.send(kCapture, 9, &flags, 1);
  bench.send(kCapture, 9, &flags, 1);
  bench.run_until_idle();
  expect_ack(bench, 9, kCapture);
  expect_ack(bench, 9, kCapture);
  const StreamOutcome outcome = read_stream(bench, 9);
  CHECK_EQ(outcome.tiles, kTileCount);
  CHECK(bench.nothing_more());
  CHECK_EQ(bench.camera.captures, 1);
  CHECK_EQ(bench.model.invokes, kTileCount);
}

void check_busy_and_hello_aborts_job() {
  Bench& bench = started_bench();
  const uint8_t flags = kCaptureEnhance;
  bench.send(kCapture, 1, &flags, 1);
  for (int i = 0; i < 3; ++i) bench.device.poll();  // ACK and capture, tile 0, tile 1
  CHECK(bench.device.busy());
  bench.send(kCapture, 2, &flags, 1);
  bench.device.poll();  // refuses the command, then runs tile 2
  bench.send(kHello, 3);
  bench.run_until_idle();
  CHECK(!bench.device.busy());
  expect_ack(bench, 1, kCapture);
  Message message;
  expect(bench, kTile, 1, &message);
  expect(bench, kTile, 1, &message);
  expect_error(bench, 2, kErrorBusy);
  expect(bench, kTile, 1, &message);
  expect(bench, kInfo, 3, &message);
  CHECK(bench.nothing_more());  // no more tiles and no DONE after the abort
  CHECK_EQ(run_frame(bench, 4).tiles, kTileCount);  // the captured frame is still there
}

void check_camera_failures() {
  Bench& bench = new_bench();
  bench.camera.fail_begin = true;
  bench.device.begin();
  CHECK_EQ(bench.device.status_flags(), kStatusModelReady);
  const uint8_t flags = kCaptureSendFrame | kCaptureEnhance;
  command(bench, kCapture, 1, &flags, 1);
  expect_ack(bench, 1, kCapture);
  expect_error(bench, 1, kErrorCameraFailed);
  command(bench, kRun, 2);
  expect_error(bench, 2, kErrorNoFrame);

  bench.camera.fail_begin = false;  // begin() is retried on the next capture...
  bench.camera.fail_capture = true;  // ...but the capture itself fails
  command(bench, kCapture, 3, &flags, 1);
  expect_ack(bench, 3, kCapture);
  expect_error(bench, 3, kErrorCameraFailed);
  CHECK_EQ(bench.device.status_flags(), kStatusCameraReady | kStatusModelReady);

  bench.camera.fail_capture = false;
  command(bench, kCapture, 4, &flags, 1);
  expect_ack(bench, 4, kCapture);
  CHECK(read_stream(bench, 4).done);
}

void check_model_failures() {
  Bench& bench = started_bench();
  bench.model.fail_on_invoke = 3;
  const uint8_t flags = kCaptureEnhance;
  command(bench, kCapture, 1, &flags, 1);
  expect_ack(bench, 1, kCapture);
  const StreamOutcome failed = read_stream(bench, 1);
  CHECK_EQ(failed.tiles, 3);
  CHECK_EQ(failed.error_code, kErrorModelFailed);
  CHECK(!bench.device.busy());
  CHECK_EQ(run_frame(bench, 2).tiles, kTileCount);

  Bench& no_model = new_bench();
  no_model.model.fail_begin = true;
  no_model.device.begin();
  command(no_model, kCapture, 1, &flags, 1);
  expect_error(no_model, 1, kErrorModelFailed);
  const uint8_t raw_only = kCaptureSendFrame;
  command(no_model, kCapture, 2, &raw_only, 1);
  expect_ack(no_model, 2, kCapture);
  CHECK(read_stream(no_model, 2).raw_frame_complete);
}

// A model that fails for good after a good start: INFO stops saying it is ready, and the
// ERROR of every enhance job carries the model's own words.
void check_model_failure_after_start_is_reported() {
  Bench& bench = started_bench();
  CHECK(bench.device.status_flags() & kStatusModelReady);
  bench.model.broken = true;
  CHECK(!(bench.device.status_flags() & kStatusModelReady));
  const uint8_t flags = kCaptureEnhance;
  command(bench, kCapture, 1, &flags, 1);
  Message message;
  if (expect(bench, kError, 1, &message)) {
    CHECK_EQ(read_u16(message.payload), kErrorModelFailed);
    const char* text = reinterpret_cast<const char*>(message.payload + 2);
    const size_t length = message.size - 2;
    static const char kCause[] = "FAILED: fake cause";
    bool found = false;
    for (size_t i = 0; i + sizeof(kCause) - 1 <= length && !found; ++i) {
      found = memcmp(text + i, kCause, sizeof(kCause) - 1) == 0;
    }
    CHECK(found);
  }
  bench.model.broken = false;
}

// The host vanishes in the middle of an upload, leaving half a frame in the decoder. After
// the inter-byte timeout the device accepts a new session and a new upload.
void check_recovery_after_truncated_upload() {
  Bench& bench = started_bench();
  const uint8_t enhance[] = {kPixelFormatRgb565, uint8_t(kFrameWidth), uint8_t(kFrameWidth >> 8),
                             uint8_t(kFrameHeight), uint8_t(kFrameHeight >> 8)};
  command(bench, kEnhance, 1, enhance, sizeof(enhance));
  expect_ack(bench, 1, kEnhance);
  uint8_t chunk[kMaxPayload] = {};
  command(bench, kUploadChunk, 2, chunk, kMaxPayload);
  expect_ack(bench, 2, kUploadChunk);
  uint8_t frame[kMaxFrameBytes];
  const size_t frame_size = encode_frame(kUploadChunk, 3, chunk, kMaxPayload, frame,
                                         sizeof(frame));
  bench.send_bytes(frame, frame_size / 2);
  bench.run_until_idle();
  CHECK(bench.nothing_more());

  bench.clock.advance(kFrameGapTimeoutUs + 1);
  bench.device.poll();
  CHECK_EQ(bench.device.link_stats().resets, 1u);
  hello_expect_info(bench, 500);
  command(bench, kRun, 501);
  expect_error(bench, 501, kErrorNoFrame);
  fill_pattern_frame();
  uint16_t seq = 502;
  upload_frame(bench, &seq, g_pattern_frame);
  CHECK_EQ(run_frame(bench, seq).tiles, kTileCount);
  CHECK(bench.nothing_more());
}

void check_garbage_and_oversize_frames() {
  Bench& bench = started_bench();
  const uint8_t garbage[] = {0x00, 0xA5, 0x5A, 0x01, 0x02, 0x03, 0xFF, 0xA5, 0x13};
  bench.send_bytes(garbage, sizeof(garbage));
  hello_expect_info(bench, 1);

  // A valid header announcing more than kMaxPayload: refused, then skipped.
  uint8_t header[kHeaderBytes] = {kSync0, kSync1, kVersion, kUploadChunk, 2, 0};
  header[6] = static_cast<uint8_t>((kMaxPayload + 1) & 0xFF);
  header[7] = static_cast<uint8_t>((kMaxPayload + 1) >> 8);
  const uint32_t check = crc32(header, 8);
  header[8] = static_cast<uint8_t>(check);
  header[9] = static_cast<uint8_t>(check >> 8);
  bench.send_bytes(header, sizeof(header));
  static uint8_t filler[kMaxPayload + 1 + kTrailerBytes];
  bench.send_bytes(filler, sizeof(filler));
  bench.run_until_idle();
  expect_error(bench, 2, kErrorPayloadTooLarge);
  hello_expect_info(bench, 3);
  CHECK(bench.nothing_more());
}

// The context model runs once per frame, on the frame's thumbnail, before the frame's first
// tile; every tile gets its output through the requantization table (FakeModel counts the
// tiles that got anything else). A one-model build never calls it and passes no context.
void check_frame_context_runs_once_per_frame() {
  Bench& bench = started_bench();
  fill_pattern_frame();
  uint16_t seq = 1;
  upload_frame(bench, &seq, g_pattern_frame);
  StreamOutcome outcome = run_frame(bench, seq++);
  CHECK(outcome.done);
  CHECK_EQ(bench.model.context_invokes, kFrameContext ? 1 : 0);
  CHECK_EQ(bench.model.tiles_with_wrong_context, 0);
  if (kFrameContext) {
    compute_expected_thumbnail(g_pattern_frame);
    CHECK(memcmp(bench.model.last_thumbnail, g_expected_thumbnail, kThumbnailBytes) == 0);
  }
  // The same frame again (RUN, then RUN_TILE): the context is kept.
  outcome = run_frame(bench, seq++);
  CHECK(outcome.done);
  const uint8_t tile[] = {5, 0};
  command(bench, kRunTile, seq, tile, sizeof(tile));
  Message message;
  expect(bench, kTile, seq++, &message);
  CHECK_EQ(bench.model.context_invokes, kFrameContext ? 1 : 0);
  // A new frame (the pattern, brighter at the top left): a new context, from its thumbnail.
  for (int y = 0; y < kFrameHeight / 2; ++y) {
    for (int x = 0; x < kFrameWidth / 2; ++x) g_pattern_frame[y * kFrameWidth + x] |= 0xC618u;
  }
  upload_frame(bench, &seq, g_pattern_frame);
  command(bench, kRunTile, seq, tile, sizeof(tile));
  expect(bench, kTile, seq++, &message);
  CHECK_EQ(bench.model.context_invokes, kFrameContext ? 2 : 0);
  CHECK_EQ(bench.model.tiles_with_wrong_context, 0);
  if (kFrameContext) {
    compute_expected_thumbnail(g_pattern_frame);
    CHECK(memcmp(bench.model.last_thumbnail, g_expected_thumbnail, kThumbnailBytes) == 0);
  }
  CHECK(bench.nothing_more());
}

// A failing context model ends the job with ERROR MODEL_FAILED before any tile; the next
// RUN tries again.
void check_context_model_failure() {
  if (!kFrameContext) return;
  Bench& bench = started_bench();
  fill_pattern_frame();
  uint16_t seq = 1;
  upload_frame(bench, &seq, g_pattern_frame);
  bench.model.fail_context = true;
  StreamOutcome outcome = run_frame(bench, seq++);
  CHECK_EQ(outcome.error_code, kErrorModelFailed);
  CHECK_EQ(outcome.tiles, 0);
  CHECK_EQ(bench.model.invokes, 0);
  bench.model.fail_context = false;
  outcome = run_frame(bench, seq);
  CHECK(outcome.done);
  CHECK_EQ(outcome.tiles, kTileCount);
  CHECK_EQ(bench.model.context_invokes, 1);
}

void check_requantization_tables() {
  // Same quantization on both sides: the identity.
  constexpr RequantizationTable same = make_requantization_table(0.02f, 3, 0.02f, 3);
  int identical = 0;
  for (int q = -128; q < 128; ++q) identical += same.values[q + 128] == q;
  CHECK_EQ(identical, 256);
  // Half the scale: values double (+ the zero points), rounding half away, saturating.
  constexpr RequantizationTable doubled = make_requantization_table(0.02f, 0, 0.01f, -5);
  CHECK_EQ(doubled.values[10 + 128], 15);
  CHECK_EQ(doubled.values[-10 + 128], -25);
  CHECK_EQ(doubled.values[100 + 128], 127);
  CHECK_EQ(doubled.values[-100 + 128], -128);
  constexpr RequantizationTable halved = make_requantization_table(0.01f, 0, 0.02f, 0);
  CHECK_EQ(halved.values[3 + 128], 2);    // 1.5 -> 2
  CHECK_EQ(halved.values[-3 + 128], -2);  // -1.5 -> -2
}

void check_buffer_sizes() {
  CHECK_EQ(kFrameBufferBytes, static_cast<size_t>(kFrameWidth) * kFrameHeight * 2);
  CHECK(sizeof(Device) >= kDeviceBufferBytes);
  CHECK(sizeof(Device) <= kDeviceBufferBytes + 256);  // the buffers are nearly everything
  CHECK(kMaxPayload >= kTilePayloadMaxBytes);
}

}  // namespace

void device_tests() {
  check_hello_returns_info();
  check_info_reports_uptime_and_high_water_marks();
  check_hello_session_token();
  check_upload_and_run_streams_tiles();
  check_capture_streams_frame_then_tiles();
  check_capture_raw_only_then_read_frame_and_run_tile();
  check_yuv422_frames();
  check_bad_commands_get_errors_and_device_recovers();
  check_upload_gap_is_refused();
  check_unsupported_version();
  check_corrupted_command_gets_nak_and_retransmission_works();
  check_retransmitted_command_runs_once();
  check_busy_and_hello_aborts_job();
  check_camera_failures();
  check_model_failures();
  check_model_failure_after_start_is_reported();
  check_recovery_after_truncated_upload();
  check_garbage_and_oversize_frames();
  check_frame_context_runs_once_per_frame();
  check_context_model_failure();
  check_requantization_tables();
  check_buffer_sizes();
}
