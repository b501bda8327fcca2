#include "tinymirnet/device.h"

#include <string.h>

namespace tinymirnet {

using protocol::FrameDecoder;
using protocol::FrameHeader;
using protocol::PayloadReader;
using protocol::PayloadWriter;

// The frame buffer is sent and received as its memory image: little-endian u16 per pixel.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "wire frames are the LE memory image");
static_assert(protocol::kPixelFormatRgb565 == static_cast<uint8_t>(PixelFormat::kRgb565) &&
                  protocol::kPixelFormatYuv422 == static_cast<uint8_t>(PixelFormat::kYuv422),
              "the protocol's pixel formats are pixels.h's");
static_assert(sizeof(kModelSha256) == 65, "kModelSha256 must be 64 hex characters");
static_assert(sizeof(kContextModelSha256) == 65, "kContextModelSha256 must be 64 hex characters");

namespace {

constexpr size_t kFrameChunkMaxData = kMaxPayload - protocol::kFrameChunkHeaderBytes;
constexpr uint8_t kKnownCaptureFlags = protocol::kCaptureSendFrame | protocol::kCaptureEnhance;

void append_text(PayloadWriter& writer, const char* text) { writer.text(text); }
void append_text(PayloadWriter& writer, uint32_t value) { writer.decimal(value); }

uint8_t hex_digit_value(char digit) {
  if (digit >= '0' && digit <= '9') return static_cast<uint8_t>(digit - '0');
  if (digit >= 'a' && digit <= 'f') return static_cast<uint8_t>(digit - 'a' + 10);
  if (digit >= 'A' && digit <= 'F') return static_cast<uint8_t>(digit - 'A' + 10);
  return 0;
}

void write_sha256(PayloadWriter& writer, const char* hex) {
  for (size_t i = 0; i < 32; ++i) {
    writer.u8(static_cast<uint8_t>((hex_digit_value(hex[2 * i]) << 4) |
                                   hex_digit_value(hex[2 * i + 1])));
  }
}

const char* message_name(uint8_t type) {
  switch (type) {
    case protocol::kHello: return "HELLO";
    case protocol::kCapture: return "CAPTURE";
    case protocol::kEnhance: return "ENHANCE";
    case protocol::kUploadChunk: return "UPLOAD_CHUNK";
    case protocol::kRun: return "RUN";
    case protocol::kReadFrame: return "READ_FRAME";
    case protocol::kRunTile: return "RUN_TILE";
    default: return "message";
  }
}

}  // namespace

// ERROR payload: u16 code, then the text parts (strings and numbers) concatenated.
template <typename... TextParts>
void Device::send_error(uint16_t seq, uint16_t code, TextParts... text) {
  PayloadWriter writer = start_payload();
  writer.u16(code);
  const int appended[] = {0, (append_text(writer, text), 0)...};  // each part in order (C++14)
  (void)appended;
  send(protocol::kError, seq, writer.size());
}

Device::Device(Link& link, Camera& camera, Model& model, Clock& clock,
               const char* firmware_version)
    : link_(link),
      camera_(camera),
      model_(model),
      clock_(clock),
      firmware_version_(firmware_version),
      frame_(),
      model_input_(),
      model_output_(),
      thumbnail_(),
      context_(),
      rx_payload_(),
      tx_frame_(),
      decoder_(rx_payload_, sizeof(rx_payload_)) {}

void Device::begin() {
  camera_ready_ = camera_.begin() == Status::kOk;
  model_ready_ = model_.begin() == Status::kOk;
  last_byte_us_ = clock_.micros();
  uptime_mark_us_ = last_byte_us_;
}

uint32_t Device::uptime_ms() {
  const uint32_t now = clock_.micros();
  uptime_us_ += static_cast<uint32_t>(now - uptime_mark_us_);
  uptime_mark_us_ = now;
  return static_cast<uint32_t>(uptime_us_ / 1000);
}

void Device::poll() {
  uptime_ms();  // at least once per clock wrap
  receive();
  step_job();
}

uint8_t Device::status_flags() const {
  return static_cast<uint8_t>((camera_ready_ ? kStatusCameraReady : 0) |
                              (model_ready_ && model_.ready() ? kStatusModelReady : 0));
}

// ---------------------------------------------------------------------------------------
// Receiving

void Device::receive() {
  uint8_t chunk[64];
  // Bounded, so that a host that keeps sending cannot starve a running job.
  size_t budget = kMaxFrameBytes;
  while (budget > 0) {
    const size_t count = link_.read(chunk, budget < sizeof(chunk) ? budget : sizeof(chunk));
    if (count == 0) break;
    last_byte_us_ = clock_.micros();
    budget -= count;
    for (size_t i = 0; i < count; ++i) on_decoder_event(decoder_.feed(chunk[i]));
  }
  if (decoder_.mid_frame() && clock_.micros() - last_byte_us_ > kFrameGapTimeoutUs) {
    decoder_.reset();
  }
}

void Device::on_decoder_event(FrameDecoder::Event event) {
  const FrameHeader& header = decoder_.header();
  switch (event) {
    case FrameDecoder::Event::kNone:
      break;
    case FrameDecoder::Event::kFrame:
      dispatch(header, decoder_.payload());
      break;
    case FrameDecoder::Event::kBadPayloadCrc: {
      PayloadWriter writer = start_payload();
      writer.u8(header.type);
      send(protocol::kNak, header.seq, writer.size());
      break;
    }
    case FrameDecoder::Event::kOversize:
      send_error(header.seq, protocol::kErrorPayloadTooLarge, "payload of ",
                 uint32_t{header.length}, " bytes exceeds the device maximum of ",
                 uint32_t{kMaxPayload});
      break;
  }
}

void Device::dispatch(const FrameHeader& header, const uint8_t* payload) {
  if (header.version != protocol::kVersion) {
    send_error(header.seq, protocol::kErrorBadVersion, "protocol version ",
               uint32_t{header.version}, " not supported; the device speaks version ",
               uint32_t{protocol::kVersion});
    return;
  }
  if (is_repeated_command(header)) {  // our ACK was lost and the host sent it again
    send_ack(header.seq, header.type);
    return;
  }
  switch (header.type) {
    case protocol::kHello: handle_hello(header, payload); break;
    case protocol::kCapture: handle_capture(header, payload); break;
    case protocol::kEnhance: handle_enhance(header, payload); break;
    case protocol::kUploadChunk: handle_upload_chunk(header, payload); break;
    case protocol::kRun: handle_run(header); break;
    case protocol::kReadFrame: handle_read_frame(header, payload); break;
    case protocol::kRunTile: handle_run_tile(header, payload); break;
    default:
      send_error(header.seq, protocol::kErrorUnknownType, "unknown message type ",
                 uint32_t{header.type});
  }
}

// Commands answered with ACK are executed once; a retransmission (same seq and type as the
// last acknowledged command) is only acknowledged again.
bool Device::is_repeated_command(const FrameHeader& header) const {
  return last_command_valid_ && header.seq == last_command_seq_ &&
         header.type == last_command_type_;
}

void Device::accept_command(const FrameHeader& header) {
  last_command_valid_ = true;
  last_command_seq_ = header.seq;
  last_command_type_ = header.type;
  send_ack(header.seq, header.type);
}

bool Device::check_length(const FrameHeader& header, size_t expected) {
  if (header.length == expected) return true;
  send_error(header.seq, protocol::kErrorBadLength, message_name(header.type), " payload is ",
             uint32_t{header.length}, " bytes, expected ", uint32_t(expected));
  return false;
}

bool Device::check_idle(uint16_t seq) {
  if (!busy()) return true;
  send_error(seq, protocol::kErrorBusy, "busy streaming a job; wait for DONE or send HELLO");
  return false;
}

bool Device::check_frame_ready(uint16_t seq) {
  if (frame_valid_) return true;
  if (upload_active_) {
    send_error(seq, protocol::kErrorNoFrame, "upload incomplete: ", upload_received_, " of ",
               uint32_t{kFrameBufferBytes}, " bytes received");
  } else {
    send_error(seq, protocol::kErrorNoFrame, "no frame in the buffer; CAPTURE or upload one");
  }
  return false;
}

bool Device::check_model_ready(uint16_t seq) {
  if (model_ready_ && model_.ready()) return true;
  send_error(seq, protocol::kErrorModelFailed,
             model_ready_ ? "model failed after start: " : "model did not initialize: ",
             model_.status_text());
  return false;
}

// HELLO starts a session: it aborts a running job and forgets the last command.
void Device::handle_hello(const FrameHeader& header, const uint8_t* payload) {
  if (header.length != 0 && !check_length(header, 4)) return;
  if (header.length == 4) {
    PayloadReader reader(payload, header.length);
    session_token_ = reader.u32();
  }
  job_.step = JobStep::kIdle;
  last_command_valid_ = false;
  send_info(header.seq);
}

void Device::handle_capture(const FrameHeader& header, const uint8_t* payload) {
  if (!check_length(header, 1) || !check_idle(header.seq)) return;
  const uint8_t flags = payload[0];
  if ((flags & ~kKnownCaptureFlags) != 0) {
    send_error(header.seq, protocol::kErrorBadArgument, "unknown CAPTURE flags ",
               uint32_t{flags});
    return;
  }
  const bool enhance = (flags & protocol::kCaptureEnhance) != 0;
  if (enhance && !check_model_ready(header.seq)) return;
  accept_command(header);
  start_job(header.seq, JobStep::kCapture, (flags & protocol::kCaptureSendFrame) != 0, enhance);
}

void Device::handle_enhance(const FrameHeader& header, const uint8_t* payload) {
  if (!check_length(header, 5) || !check_idle(header.seq)) return;
  PayloadReader reader(payload, header.length);
  const uint8_t format = reader.u8();
  const uint16_t width = reader.u16();
  const uint16_t height = reader.u16();
  if (format != protocol::kPixelFormatRgb565 && format != protocol::kPixelFormatYuv422) {
    send_error(header.seq, protocol::kErrorBadArgument, "pixel format ", uint32_t{format},
               " not supported; send RGB565 (0) or YUV422 (1)");
    return;
  }
  if (width != kFrameWidth || height != kFrameHeight) {
    send_error(header.seq, protocol::kErrorBadArgument, "frame ", uint32_t{width}, "x",
               uint32_t{height}, " does not match the device frame ", uint32_t{kFrameWidth},
               "x", uint32_t{kFrameHeight});
    return;
  }
  frame_valid_ = false;
  frame_format_ = static_cast<PixelFormat>(format);
  upload_active_ = true;
  upload_received_ = 0;
  accept_command(header);
}

// Chunks must continue the upload without a gap; overlapping (resent) data is fine.
void Device::handle_upload_chunk(const FrameHeader& header, const uint8_t* payload) {
  if (header.length <= protocol::kUploadChunkHeaderBytes) {
    send_error(header.seq, protocol::kErrorBadLength, "UPLOAD_CHUNK payload is ",
               uint32_t{header.length}, " bytes, expected more than 4");
    return;
  }
  if (!check_idle(header.seq)) return;
  if (!upload_active_) {
    send_error(header.seq, protocol::kErrorNoUpload, "no upload in progress; send ENHANCE first");
    return;
  }
  PayloadReader reader(payload, header.length);
  const uint32_t offset = reader.u32();
  const uint32_t size = static_cast<uint32_t>(reader.remaining());
  if (offset > upload_received_ || size > kFrameBufferBytes - offset) {
    send_error(header.seq, protocol::kErrorBadArgument, "chunk of ", size, " bytes at offset ",
               offset, " does not continue the upload (", upload_received_, " of ",
               uint32_t{kFrameBufferBytes}, " bytes received)");
    return;
  }
  memcpy(frame_bytes() + offset, reader.rest(), size);
  if (offset + size > upload_received_) upload_received_ = offset + size;
  if (upload_received_ == kFrameBufferBytes) {
    upload_active_ = false;
    frame_ready();
  }
  accept_command(header);
}

void Device::handle_run(const FrameHeader& header) {
  if (!check_length(header, 0) || !check_idle(header.seq) || !check_frame_ready(header.seq) ||
      !check_model_ready(header.seq)) {
    return;
  }
  accept_command(header);
  start_job(header.seq, JobStep::kRunTiles, false, true);
}

void Device::handle_read_frame(const FrameHeader& header, const uint8_t* payload) {
  if (!check_length(header, 6) || !check_idle(header.seq) || !check_frame_ready(header.seq)) {
    return;
  }
  PayloadReader reader(payload, header.length);
  const uint32_t offset = reader.u32();
  const uint16_t length = reader.u16();
  if (length == 0 || length > kFrameChunkMaxData || offset > kFrameBufferBytes - length) {
    send_error(header.seq, protocol::kErrorBadArgument, "cannot read ", uint32_t{length},
               " bytes at offset ", offset, " (frame ", uint32_t{kFrameBufferBytes},
               " bytes, at most ", uint32_t{kFrameChunkMaxData}, " per chunk)");
    return;
  }
  send_frame_chunk(header.seq, offset, length);
}

void Device::handle_run_tile(const FrameHeader& header, const uint8_t* payload) {
  if (!check_length(header, 2) || !check_idle(header.seq)) return;
  const uint16_t index = PayloadReader(payload, header.length).u16();
  if (index >= kTileCount) {
    send_error(header.seq, protocol::kErrorBadArgument, "tile index ", uint32_t{index},
               " out of range (", uint32_t{kTileCount}, " tiles)");
    return;
  }
  if (!check_frame_ready(header.seq) || !check_model_ready(header.seq)) return;
  uint32_t invoke_us = 0;
  send_tile(header.seq, index, &invoke_us);
}

// ---------------------------------------------------------------------------------------
// The running job

void Device::start_job(uint16_t seq, JobStep first_step, bool send_frame, bool enhance) {
  job_ = Job{};
  job_.step = first_step;
  job_.seq = seq;
  job_.send_frame = send_frame;
  job_.enhance = enhance;
  job_.start_us = clock_.micros();
}

void Device::step_job() {
  switch (job_.step) {
    case JobStep::kIdle: break;
    case JobStep::kCapture: step_capture(); break;
    case JobStep::kSendFrame: step_send_frame(); break;
    case JobStep::kRunTiles: step_run_tile(); break;
    case JobStep::kSendDone: step_send_done(); break;
  }
}

void Device::step_capture() {
  upload_active_ = false;
  frame_valid_ = false;
  if (!camera_ready_) camera_ready_ = camera_.begin() == Status::kOk;
  if (!camera_ready_) {
    job_.step = JobStep::kIdle;
    send_error(job_.seq, protocol::kErrorCameraFailed, "camera did not start");
    return;
  }
  frame_format_ = camera_.pixel_format();
  if (camera_.capture(frame_) != Status::kOk) {
    job_.step = JobStep::kIdle;
    send_error(job_.seq, protocol::kErrorCameraFailed, "camera capture failed");
    return;
  }
  frame_ready();
  job_.step = job_.send_frame ? JobStep::kSendFrame : step_after_frame();
}

void Device::frame_ready() {
  exposure_gain_q8_ = exposure_gain_q8(frame_, frame_format_, kFrameWidth, kFrameHeight, kExposureTarget);
  make_exposed_input_table(exposure_gain_q8_, &input_table_);
  context_valid_ = false;  // computed with the frame's first tile
  frame_valid_ = true;
}

Device::JobStep Device::step_after_frame() const {
  return job_.enhance ? JobStep::kRunTiles : JobStep::kSendDone;
}

void Device::step_send_frame() {
  const size_t left = kFrameBufferBytes - job_.frame_offset;
  const size_t length = left < kFrameChunkMaxData ? left : kFrameChunkMaxData;
  send_frame_chunk(job_.seq, job_.frame_offset, length);
  job_.frame_offset += static_cast<uint32_t>(length);
  if (job_.frame_offset == kFrameBufferBytes) job_.step = step_after_frame();
}

void Device::step_run_tile() {
  uint32_t invoke_us = 0;
  if (!send_tile(job_.seq, job_.next_tile, &invoke_us)) {
    job_.step = JobStep::kIdle;
    return;
  }
  job_.inference_us += invoke_us;
  if (++job_.next_tile == kTileCount) job_.step = JobStep::kSendDone;
}

void Device::step_send_done() {
  PayloadWriter writer = start_payload();
  writer.u16(static_cast<uint16_t>(job_.enhance ? kTileCount : 0));
  writer.u32(job_.inference_us);
  writer.u32(clock_.micros() - job_.start_us);
  job_.step = JobStep::kIdle;
  send(protocol::kDone, job_.seq, writer.size());
}

// ---------------------------------------------------------------------------------------
// Replies

PayloadWriter Device::start_payload() {
  return PayloadWriter(tx_frame_ + protocol::kHeaderBytes, kMaxPayload);
}

void Device::send(uint8_t type, uint16_t seq, size_t payload_size) {
  const size_t size = protocol::finish_frame(tx_frame_, type, seq, payload_size);
  link_.write(tx_frame_, size);
}

void Device::send_ack(uint16_t seq, uint8_t type) {
  PayloadWriter writer = start_payload();
  writer.u8(type);
  send(protocol::kAck, seq, writer.size());
}

void Device::send_info(uint16_t seq) {
  PayloadWriter writer = start_payload();
  writer.u8(protocol::kVersion);
  writer.u8(status_flags());
  writer.u16(static_cast<uint16_t>(kMaxPayload));
  writer.u16(static_cast<uint16_t>(kTileSize));
  writer.u16(static_cast<uint16_t>(kHalo));
  writer.u16(static_cast<uint16_t>(kModelInputSize));
  writer.u16(static_cast<uint16_t>(kFrameWidth));
  writer.u16(static_cast<uint16_t>(kFrameHeight));
  writer.u16(static_cast<uint16_t>(kTileCount));
  writer.f32(kInputScale);
  writer.i32(kInputZeroPoint);
  writer.f32(kOutputScale);
  writer.i32(kOutputZeroPoint);
  writer.u32(static_cast<uint32_t>(kArenaSize));
  writer.u32(static_cast<uint32_t>(model_.arena_used_bytes()));
  writer.u32(static_cast<uint32_t>(kModelBytes));
  write_sha256(writer, kModelSha256);
  write_sha256(writer, kContextModelSha256);  // all zero for a one-model network
  writer.u8(static_cast<uint8_t>(camera_.pixel_format()));
  writer.u32(uptime_ms());
  writer.u32(memory_meter_ != nullptr ? memory_meter_->stack_high_water_bytes() : 0);
  writer.u32(memory_meter_ != nullptr ? memory_meter_->heap_high_water_bytes() : 0);
  writer.u32(session_token_);
  writer.text(firmware_version_);
  send(protocol::kInfo, seq, writer.size());
}

void Device::send_frame_chunk(uint16_t seq, uint32_t offset, size_t length) {
  PayloadWriter writer = start_payload();
  writer.u32(offset);
  writer.u32(static_cast<uint32_t>(kFrameBufferBytes));
  writer.bytes(frame_bytes() + offset, length);
  send(protocol::kFrameChunk, seq, writer.size());
}

bool Device::ensure_frame_context(uint16_t seq, uint32_t* invoke_us) {
  *invoke_us = 0;
  if (!kFrameContext || context_valid_) return true;
  make_thumbnail_input(frame_, frame_format_, exposure_gain_q8_, thumbnail_);
  const uint32_t start_us = clock_.micros();
  const Status status = model_.invoke_context(thumbnail_, context_);
  *invoke_us = clock_.micros() - start_us;
  if (status != Status::kOk) {
    send_error(seq, protocol::kErrorModelFailed, "context model invoke failed: ",
               model_.status_text());
    return false;
  }
  requantize_context(context_, kContextValues);
  context_valid_ = true;
  return true;
}

bool Device::send_tile(uint16_t seq, int index, uint32_t* invoke_us) {
  const TileRect tile = tile_rect(index);
  uint32_t context_us = 0;
  if (!ensure_frame_context(seq, &context_us)) return false;
  extract_model_input(frame_, frame_format_, tile, input_table_, model_input_);
  const uint32_t start_us = clock_.micros();
  const Status status = model_.invoke(model_input_, kFrameContext ? context_ : nullptr, model_output_);
  const uint32_t tile_us = clock_.micros() - start_us;
  *invoke_us = tile_us + context_us;
  if (status != Status::kOk) {
    send_error(seq, protocol::kErrorModelFailed, "model invoke failed on tile ",
               uint32_t(index), ": ", model_.status_text());
    return false;
  }
  PayloadWriter writer = start_payload();
  writer.u16(static_cast<uint16_t>(tile.index));
  writer.u16(static_cast<uint16_t>(tile.x));
  writer.u16(static_cast<uint16_t>(tile.y));
  writer.u16(static_cast<uint16_t>(tile.width));
  writer.u16(static_cast<uint16_t>(tile.height));
  writer.u32(tile_us);  // the tile model only; DONE's total includes the context model
  // Always fits: kMaxPayload >= kTilePayloadMaxBytes.
  crop_model_output(model_output_, frame_, frame_format_, tile, writer.reserve(static_cast<size_t>(tile.width) *
                                                        tile.height * kChannels));
  send(protocol::kTile, seq, writer.size());
  return true;
}

}  // namespace tinymirnet
