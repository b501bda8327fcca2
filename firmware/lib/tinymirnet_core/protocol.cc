#include "tinymirnet/protocol.h"

#include <string.h>

#include "tinymirnet/crc32.h"

namespace tinymirnet {
namespace protocol {
namespace {

void store_u16(uint8_t* out, uint16_t value) {
  out[0] = static_cast<uint8_t>(value);
  out[1] = static_cast<uint8_t>(value >> 8);
}

void store_u32(uint8_t* out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<uint8_t>(value >> (8 * i));
}

uint16_t load_u16(const uint8_t* in) {
  return static_cast<uint16_t>(in[0] | (in[1] << 8));
}

uint32_t load_u32(const uint8_t* in) {
  return static_cast<uint32_t>(in[0]) | (static_cast<uint32_t>(in[1]) << 8) |
         (static_cast<uint32_t>(in[2]) << 16) | (static_cast<uint32_t>(in[3]) << 24);
}

constexpr size_t kHeaderCheckOffset = 8;

uint16_t header_check(const uint8_t* header) {
  return static_cast<uint16_t>(crc32(header, kHeaderCheckOffset) & 0xFFFFu);
}

}  // namespace

size_t finish_frame(uint8_t* frame, uint8_t type, uint16_t seq, size_t payload_size) {
  frame[0] = kSync0;
  frame[1] = kSync1;
  frame[2] = kVersion;
  frame[3] = type;
  store_u16(frame + 4, seq);
  store_u16(frame + 6, static_cast<uint16_t>(payload_size));
  store_u16(frame + kHeaderCheckOffset, header_check(frame));
  store_u32(frame + kHeaderBytes + payload_size, crc32(frame + kHeaderBytes, payload_size));
  return kFramingBytes + payload_size;
}

size_t encode_frame(uint8_t type, uint16_t seq, const uint8_t* payload, size_t payload_size,
                    uint8_t* out, size_t capacity) {
  if (payload_size > kMaxPayloadLimit || capacity < kFramingBytes + payload_size) return 0;
  if (payload_size > 0) memmove(out + kHeaderBytes, payload, payload_size);
  return finish_frame(out, type, seq, payload_size);
}

// ---------------------------------------------------------------------------------------
// FrameDecoder

FrameDecoder::FrameDecoder(uint8_t* payload_buffer, size_t capacity)
    : payload_(payload_buffer), capacity_(capacity) {}

void FrameDecoder::reset() {
  if (state_ != State::kSync0) ++stats_.resets;
  state_ = State::kSync0;
  fill_ = 0;
  discarding_ = 0;
}

FrameDecoder::Event FrameDecoder::feed(uint8_t byte) {
  switch (state_) {
    case State::kSync0:
      if (byte == kSync0) {
        state_ = State::kSync1;
      } else {
        ++stats_.skipped_bytes;
      }
      return Event::kNone;

    case State::kSync1:
      if (byte == kSync1) {
        header_bytes_[0] = kSync0;
        header_bytes_[1] = kSync1;
        fill_ = 2;
        state_ = State::kHeader;
      } else if (byte != kSync0) {  // 0xA5 0xA5 0x5A: the second 0xA5 may start the marker
        stats_.skipped_bytes += 2;
        state_ = State::kSync0;
      } else {
        ++stats_.skipped_bytes;
      }
      return Event::kNone;

    case State::kHeader:
      header_bytes_[fill_++] = byte;
      return fill_ == kHeaderBytes ? on_header_complete() : Event::kNone;

    case State::kPayload:
      payload_[fill_++] = byte;
      if (fill_ == header_.length) {
        fill_ = 0;
        state_ = State::kTrailer;
      }
      return Event::kNone;

    case State::kTrailer:
      trailer_bytes_[fill_++] = byte;
      return fill_ == kTrailerBytes ? on_trailer_complete() : Event::kNone;

    case State::kDiscard:
      if (--discarding_ == 0) state_ = State::kSync0;
      return Event::kNone;
  }
  return Event::kNone;
}

FrameDecoder::Event FrameDecoder::on_header_complete() {
  if (load_u16(header_bytes_ + kHeaderCheckOffset) != header_check(header_bytes_)) {
    ++stats_.header_errors;
    rescan_header_bytes();
    return Event::kNone;
  }
  header_.version = header_bytes_[2];
  header_.type = header_bytes_[3];
  header_.seq = load_u16(header_bytes_ + 4);
  header_.length = load_u16(header_bytes_ + 6);
  fill_ = 0;
  if (header_.length > capacity_) {
    ++stats_.oversize;
    discarding_ = header_.length + kTrailerBytes;
    state_ = State::kDiscard;
    return Event::kOversize;
  }
  state_ = header_.length == 0 ? State::kTrailer : State::kPayload;
  return Event::kNone;
}

FrameDecoder::Event FrameDecoder::on_trailer_complete() {
  state_ = State::kSync0;
  fill_ = 0;
  if (load_u32(trailer_bytes_) != crc32(payload_, header_.length)) {
    ++stats_.crc_errors;
    return Event::kBadPayloadCrc;
  }
  ++stats_.frames;
  return Event::kFrame;
}

// The sync marker was false: look for a real one among the header bytes after it. Fewer
// bytes than a header are replayed, so this cannot complete (and re-check) another header.
void FrameDecoder::rescan_header_bytes() {
  uint8_t replay[kHeaderBytes - 1];
  memcpy(replay, header_bytes_ + 1, sizeof(replay));
  state_ = State::kSync0;
  fill_ = 0;
  ++stats_.skipped_bytes;  // the first sync byte
  for (uint8_t byte : replay) feed(byte);
}

// ---------------------------------------------------------------------------------------
// PayloadWriter / PayloadReader

uint8_t* PayloadWriter::reserve(size_t size) {
  if (size > space_left()) {
    overflowed_ = true;
    return nullptr;
  }
  uint8_t* start = buffer_ + size_;
  size_ += size;
  return start;
}

void PayloadWriter::u8(uint8_t value) {
  if (uint8_t* out = reserve(1)) out[0] = value;
}

void PayloadWriter::u16(uint16_t value) {
  if (uint8_t* out = reserve(2)) store_u16(out, value);
}

void PayloadWriter::u32(uint32_t value) {
  if (uint8_t* out = reserve(4)) store_u32(out, value);
}

void PayloadWriter::f32(float value) {
  uint32_t bits;
  memcpy(&bits, &value, sizeof(bits));
  u32(bits);
}

void PayloadWriter::bytes(const uint8_t* data, size_t size) {
  if (uint8_t* out = reserve(size)) memcpy(out, data, size);
}

void PayloadWriter::text(const char* text) {
  const size_t length = strlen(text);
  const size_t fitting = length < space_left() ? length : space_left();
  bytes(reinterpret_cast<const uint8_t*>(text), fitting);
  if (fitting < length) overflowed_ = true;
}

void PayloadWriter::decimal(uint32_t value) {
  char digits[11];
  size_t count = 0;
  do {
    digits[count++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  while (count > 0) u8(static_cast<uint8_t>(digits[--count]));
}

bool PayloadReader::take(size_t size) {
  if (!ok_ || size > remaining()) {
    ok_ = false;
    return false;
  }
  position_ += size;
  return true;
}

uint8_t PayloadReader::u8() { return take(1) ? data_[position_ - 1] : 0; }

uint16_t PayloadReader::u16() { return take(2) ? load_u16(data_ + position_ - 2) : 0; }

uint32_t PayloadReader::u32() { return take(4) ? load_u32(data_ + position_ - 4) : 0; }

}  // namespace protocol
}  // namespace tinymirnet
