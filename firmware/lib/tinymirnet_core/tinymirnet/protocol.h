// Serial protocol v5: frame layout, message types, payload helpers and the frame codec.
// Versioning: fields are only appended, receivers ignore trailing bytes, and kVersion changes
// only for a change an old receiver would misread (firmware/PROTOCOL.md).
// firmware/PROTOCOL.md is the specification; host/protocol/ is the Python side.
//
// Frame (all integers little-endian):
//   offset  size  field
//   0       2     sync marker 0xA5 0x5A
//   2       1     protocol version (1)
//   3       1     message type
//   4       2     sequence number
//   6       2     payload length N
//   8       2     header check: low 16 bits of CRC-32 over bytes 0..7
//   10      N     payload
//   10+N    4     CRC-32 of the payload
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace tinymirnet {
namespace protocol {

constexpr uint8_t kSync0 = 0xA5;
constexpr uint8_t kSync1 = 0x5A;
constexpr uint8_t kVersion = 5;  // 2: INFO carries the context model's SHA-256; 3: and the camera's pixel format;
                                 // 4: payloads up to 8192 bytes (one 40 px tile's RGB);
                                 // 5: HELLO may carry a session token, INFO echoes it (0 after a
                                 //    reset) with the uptime and the stack and heap high-water marks
constexpr size_t kHeaderBytes = 10;
constexpr size_t kTrailerBytes = 4;
constexpr size_t kFramingBytes = kHeaderBytes + kTrailerBytes;
// No v5 frame carries a longer payload; a device announces its own (smaller) limit in INFO.
constexpr size_t kMaxPayloadLimit = 8192;

// Host-to-device commands have the high bit clear, device-to-host messages have it set.
enum MessageType : uint8_t {
  kHello = 0x01,        // (empty)                          -> INFO
  kCapture = 0x02,      // u8 flags                         -> ACK, [FRAME_CHUNK...], [TILE...], DONE
  kEnhance = 0x03,      // u8 format, u16 width, u16 height -> ACK (an upload of the frame follows)
  kUploadChunk = 0x04,  // u32 offset, bytes                -> ACK
  kRun = 0x05,          // (empty)                          -> ACK, TILE..., DONE
  kReadFrame = 0x06,    // u32 offset, u16 length           -> FRAME_CHUNK
  kRunTile = 0x07,      // u16 index                        -> TILE
  kInfo = 0x81,
  kAck = 0x82,          // u8 type of the acknowledged command
  kNak = 0x83,          // u8 type of the frame whose payload CRC failed
  kError = 0x84,        // u16 code, utf-8 text
  kFrameChunk = 0x85,   // u32 offset, u32 total bytes, bytes
  kTile = 0x86,         // u16 index, x, y, width, height, u32 invoke us, RGB888 bytes
  kDone = 0x87,         // u16 tile count, u32 inference us, u32 elapsed us
};

enum ErrorCode : uint16_t {
  kErrorUnknownType = 1,
  kErrorBadLength = 2,
  kErrorBadVersion = 3,
  kErrorBusy = 4,
  kErrorCameraFailed = 5,
  kErrorModelFailed = 6,
  kErrorBadArgument = 7,
  kErrorNoFrame = 8,
  kErrorPayloadTooLarge = 9,
  kErrorNoUpload = 10,
};

// CAPTURE flags.
constexpr uint8_t kCaptureSendFrame = 0x01;  // stream the raw frame (camera format) as FRAME_CHUNKs
constexpr uint8_t kCaptureEnhance = 0x02;    // then enhance it and stream TILEs

// Frame pixel formats (ENHANCE, INFO), one little-endian u16 per pixel, row-major: RGB565, or
// YUV422 as the camera's bytes Y0 U Y1 V per pixel pair (pixels.h).
constexpr uint8_t kPixelFormatRgb565 = 0;
constexpr uint8_t kPixelFormatYuv422 = 1;

// Fixed payload sizes.
constexpr size_t kInfoFixedBytes = 125;  // followed by the firmware version text
constexpr size_t kTileHeaderBytes = 14;
constexpr size_t kFrameChunkHeaderBytes = 8;
constexpr size_t kUploadChunkHeaderBytes = 4;
constexpr size_t kDoneBytes = 10;

struct FrameHeader {
  uint8_t version;
  uint8_t type;
  uint16_t seq;
  uint16_t length;
};

// Writes the header and trailer around a payload already placed at frame + kHeaderBytes.
// Returns the frame size (kFramingBytes + payload_size).
size_t finish_frame(uint8_t* frame, uint8_t type, uint16_t seq, size_t payload_size);

// Encodes a frame into `out`. Returns its size, or 0 when it does not fit in `capacity`
// or the payload is longer than kMaxPayloadLimit.
size_t encode_frame(uint8_t type, uint16_t seq, const uint8_t* payload, size_t payload_size,
                    uint8_t* out, size_t capacity);

// Streaming decoder fed one byte at a time. It hunts for the sync marker, checks the header,
// stores the payload in a caller-provided buffer and checks the payload CRC. Garbage and
// frames with a bad header check are skipped (scanning resumes one byte after the false
// sync marker), so it resynchronizes on the next good frame.
class FrameDecoder {
 public:
  enum class Event : uint8_t {
    kNone,           // need more bytes
    kFrame,          // header() and payload() hold a complete, checked frame
    kBadPayloadCrc,  // header() is valid but the payload was corrupted (answer with NAK)
    kOversize,       // header() is valid but its length exceeds the buffer; the frame is skipped
  };

  struct Stats {
    uint32_t frames;
    uint32_t skipped_bytes;  // bytes outside any frame (garbage, false sync markers)
    uint32_t header_errors;
    uint32_t crc_errors;
    uint32_t oversize;
    uint32_t resets;
  };

  FrameDecoder(uint8_t* payload_buffer, size_t capacity);

  Event feed(uint8_t byte);
  // Drops a partially received frame (the receiver calls this after an inter-byte timeout).
  void reset();
  // True while a frame has started (sync seen) but not ended.
  bool mid_frame() const { return state_ != State::kSync0; }

  const FrameHeader& header() const { return header_; }
  const uint8_t* payload() const { return payload_; }
  size_t payload_size() const { return header_.length; }
  const Stats& stats() const { return stats_; }

 private:
  enum class State : uint8_t { kSync0, kSync1, kHeader, kPayload, kTrailer, kDiscard };

  Event on_header_complete();
  Event on_trailer_complete();
  void rescan_header_bytes();

  uint8_t* payload_;
  size_t capacity_;
  State state_ = State::kSync0;
  uint8_t header_bytes_[kHeaderBytes] = {};
  uint8_t trailer_bytes_[kTrailerBytes] = {};
  size_t fill_ = 0;       // bytes received of the current header, payload or trailer
  size_t discarding_ = 0; // bytes left to skip of an oversize frame
  FrameHeader header_ = {};
  Stats stats_ = {};
};

// Little-endian payload builder over a fixed buffer. Writes past the end are dropped and
// flagged, so a long error text is truncated instead of overflowing.
class PayloadWriter {
 public:
  PayloadWriter(uint8_t* buffer, size_t capacity) : buffer_(buffer), capacity_(capacity) {}

  void u8(uint8_t value);
  void u16(uint16_t value);
  void u32(uint32_t value);
  void i32(int32_t value) { u32(static_cast<uint32_t>(value)); }
  void f32(float value);
  void bytes(const uint8_t* data, size_t size);
  void text(const char* text);
  void decimal(uint32_t value);
  // Reserves `size` bytes for the caller to fill in place; returns nullptr if they don't fit.
  uint8_t* reserve(size_t size);

  size_t size() const { return size_; }
  size_t space_left() const { return capacity_ - size_; }
  bool overflowed() const { return overflowed_; }

 private:
  uint8_t* buffer_;
  size_t capacity_;
  size_t size_ = 0;
  bool overflowed_ = false;
};

// Little-endian payload parser; reads past the end return 0 and clear ok().
class PayloadReader {
 public:
  PayloadReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  uint8_t u8();
  uint16_t u16();
  uint32_t u32();
  const uint8_t* rest() const { return data_ + position_; }
  size_t remaining() const { return size_ - position_; }
  bool ok() const { return ok_; }

 private:
  bool take(size_t size);

  const uint8_t* data_;
  size_t size_;
  size_t position_ = 0;
  bool ok_ = true;
};

}  // namespace protocol
}  // namespace tinymirnet
