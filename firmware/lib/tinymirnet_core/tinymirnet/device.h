// The device side of the serial protocol: owns the frame buffer and the tile buffers, decodes
// commands from the Link, captures with the Camera, runs tiles through the Model and streams
// the results back. Everything is static (no heap); one Device per program.
//
// Usage (Arduino):
//   static tinymirnet::Device device(link, camera, model, clock, "1.0.0");
//   void setup() { device.begin(); }
//   void loop() { device.poll(); }
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "tinymirnet/model_settings.h"
#include "tinymirnet/ports.h"
#include "tinymirnet/protocol.h"
#include "tinymirnet/thumbnail.h"
#include "tinymirnet/tiler.h"

namespace tinymirnet {

// Largest payload the device sends or accepts: a full tile, or 2 KiB of frame data.
constexpr size_t kTilePayloadMaxBytes = protocol::kTileHeaderBytes + kMaxTileRgbBytes;
constexpr size_t kMaxPayload = kTilePayloadMaxBytes > 2048 ? kTilePayloadMaxBytes : 2048;
constexpr size_t kMaxFrameBytes = protocol::kFramingBytes + kMaxPayload;
static_assert(kMaxPayload <= protocol::kMaxPayloadLimit, "tile too large for one frame");

// A frame whose bytes stop arriving for this long is dropped, so a host that vanished
// mid-frame cannot swallow the next command. Hosts wait longer than this before retrying.
constexpr uint32_t kFrameGapTimeoutUs = 200000;

// Static RAM of the Device's buffers (for the RAM budget table).
constexpr size_t kFrameBufferBytes = kFramePixels * sizeof(uint16_t);
constexpr size_t kTileIoBytes = 2 * kModelTensorBytes;                 // model input + output
constexpr size_t kProtocolBufferBytes = kMaxPayload + kMaxFrameBytes;  // receive + transmit
constexpr size_t kExposedTableBytes = sizeof(InputQuantizationTable);  // the frame's gain folded in
// A frame-context network: the int8 thumbnail and the context vector (0 for one model).
constexpr size_t kFrameContextBytes = kFrameContext ? kThumbnailBytes + kContextValues : 0;
constexpr size_t kDeviceBufferBytes = kFrameBufferBytes + kTileIoBytes + kProtocolBufferBytes +
                                      kExposedTableBytes + kFrameContextBytes;

// INFO status flags.
constexpr uint8_t kStatusCameraReady = 0x01;
constexpr uint8_t kStatusModelReady = 0x02;

class Device {
 public:
  Device(Link& link, Camera& camera, Model& model, Clock& clock, const char* firmware_version);
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  // Starts the camera and the model. Call once before poll().
  void begin();
  // The platform's memory meter for INFO's high-water marks (optional; before begin()).
  void set_memory_meter(MemoryMeter* meter) { memory_meter_ = meter; }
  // One bounded step of work: handles the bytes received so far, then advances a running
  // job by one step (the capture, one frame chunk, one tile, or the final DONE).
  void poll();

  // A capture/enhance job is streaming its results.
  bool busy() const { return job_.step != JobStep::kIdle; }
  uint8_t status_flags() const;
  const protocol::FrameDecoder::Stats& link_stats() const { return decoder_.stats(); }

 private:
  enum class JobStep : uint8_t { kIdle, kCapture, kSendFrame, kRunTiles, kSendDone };

  struct Job {
    JobStep step;
    uint16_t seq;  // of the command that started it; its stream messages carry this seq
    bool send_frame;
    bool enhance;
    uint32_t frame_offset;  // next frame byte to stream
    int next_tile;
    uint32_t start_us;
    uint32_t inference_us;
  };

  // Receiving and dispatching commands.
  void receive();
  void on_decoder_event(protocol::FrameDecoder::Event event);
  void dispatch(const protocol::FrameHeader& header, const uint8_t* payload);
  bool is_repeated_command(const protocol::FrameHeader& header) const;
  void accept_command(const protocol::FrameHeader& header);
  bool check_length(const protocol::FrameHeader& header, size_t expected);
  bool check_idle(uint16_t seq);
  bool check_frame_ready(uint16_t seq);
  bool check_model_ready(uint16_t seq);

  void handle_hello(const protocol::FrameHeader& header, const uint8_t* payload);
  void handle_capture(const protocol::FrameHeader& header, const uint8_t* payload);
  void handle_enhance(const protocol::FrameHeader& header, const uint8_t* payload);
  void handle_upload_chunk(const protocol::FrameHeader& header, const uint8_t* payload);
  void handle_run(const protocol::FrameHeader& header);
  void handle_read_frame(const protocol::FrameHeader& header, const uint8_t* payload);
  void handle_run_tile(const protocol::FrameHeader& header, const uint8_t* payload);

  // The running job.
  void start_job(uint16_t seq, JobStep first_step, bool send_frame, bool enhance);
  void step_job();
  void step_capture();
  void step_send_frame();
  void step_run_tile();
  void step_send_done();
  JobStep step_after_frame() const;

  // Replies. Payloads are built in place inside the transmit frame.
  protocol::PayloadWriter start_payload();
  void send(uint8_t type, uint16_t seq, size_t payload_size);
  void send_ack(uint16_t seq, uint8_t type);
  void send_info(uint16_t seq);
  void send_frame_chunk(uint16_t seq, uint32_t offset, size_t length);
  // Runs one tile on the frame buffer and sends it as TILE (or ERROR on a model failure).
  // `invoke_us`: the tile model's time, plus the context model's when this tile ran it.
  bool send_tile(uint16_t seq, int index, uint32_t* invoke_us);
  // A frame-context network: runs the context model on this frame's thumbnail unless it
  // already has (once per frame). Sends ERROR and returns false on a model failure.
  bool ensure_frame_context(uint16_t seq, uint32_t* invoke_us);
  template <typename... TextParts>
  void send_error(uint16_t seq, uint16_t code, TextParts... text);

  uint8_t* frame_bytes() { return reinterpret_cast<uint8_t*>(frame_); }
  // frame_ is complete: measures its exposure gain and builds its input table.
  void frame_ready();
  // Milliseconds since begin() (the Clock's micros wrap after 71.6 minutes; this does not).
  uint32_t uptime_ms();

  Link& link_;
  Camera& camera_;
  Model& model_;
  Clock& clock_;
  const char* firmware_version_;
  MemoryMeter* memory_meter_ = nullptr;
  uint64_t uptime_us_ = 0;  // since begin(), summed over the clock's wraps
  uint32_t uptime_mark_us_ = 0;
  uint32_t session_token_ = 0;  // the host's, from its last HELLO with one; 0 since boot

  bool camera_ready_ = false;
  bool model_ready_ = false;
  bool frame_valid_ = false;       // frame_ holds a complete captured or uploaded frame
  bool upload_active_ = false;
  uint32_t upload_received_ = 0;   // bytes of the upload received so far (no gaps)
  bool last_command_valid_ = false;
  uint8_t last_command_type_ = 0;  // last acknowledged command, to spot retransmissions
  uint16_t last_command_seq_ = 0;
  uint32_t last_byte_us_ = 0;
  Job job_ = {};

  uint16_t frame_[kFramePixels];
  PixelFormat frame_format_ = PixelFormat::kRgb565;  // of the frame in frame_
  uint32_t exposure_gain_q8_ = kGainOneQ8;  // of the frame in frame_ (pixels.h)
  InputQuantizationTable input_table_ = {};  // kInputTable with that gain folded in
  bool context_valid_ = false;               // context_ belongs to the frame in frame_
  int8_t model_input_[kModelTensorBytes];
  int8_t model_output_[kModelTensorBytes];
  // A frame-context network's per-frame buffers (one byte each in a one-model build).
  int8_t thumbnail_[kFrameContext ? kThumbnailBytes : 1];
  int8_t context_[kFrameContext ? kContextValues : 1];
  uint8_t rx_payload_[kMaxPayload];
  uint8_t tx_frame_[kMaxFrameBytes];
  protocol::FrameDecoder decoder_;
};

}  // namespace tinymirnet
