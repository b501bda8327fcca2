// Frame encoder, streaming decoder (corruption, garbage, resync, truncation) and payload
// helpers.
#include <string.h>

#include "tinymirnet/crc32.h"
#include "tinymirnet/protocol.h"
#include "test_framework.h"

using namespace tinymirnet::protocol;
using tinymirnet::crc32;

namespace {

constexpr size_t kDecoderCapacity = 64;

struct DecodeResult {
  int frames = 0;
  int bad_crc = 0;
  int oversize = 0;
  FrameHeader header = {};  // of the last event
  uint8_t payload[kDecoderCapacity] = {};
  size_t payload_size = 0;
};

class TestDecoder {
 public:
  TestDecoder() : decoder_(buffer_, sizeof(buffer_)) {}

  DecodeResult feed(const uint8_t* data, size_t size) {
    DecodeResult result;
    for (size_t i = 0; i < size; ++i) {
      const FrameDecoder::Event event = decoder_.feed(data[i]);
      if (event == FrameDecoder::Event::kNone) continue;
      result.header = decoder_.header();
      if (event == FrameDecoder::Event::kFrame) {
        ++result.frames;
        result.payload_size = decoder_.payload_size();
        memcpy(result.payload, decoder_.payload(), result.payload_size);
      } else if (event == FrameDecoder::Event::kBadPayloadCrc) {
        ++result.bad_crc;
      } else {
        ++result.oversize;
      }
    }
    return result;
  }

  FrameDecoder& decoder() { return decoder_; }

 private:
  uint8_t buffer_[kDecoderCapacity];
  FrameDecoder decoder_;
};

// A stream of bytes under construction: frames and garbage.
struct Stream {
  uint8_t bytes[512];
  size_t size = 0;

  size_t add_frame(uint8_t type, uint16_t seq, const uint8_t* payload, size_t payload_size) {
    const size_t start = size;
    size += encode_frame(type, seq, payload, payload_size, bytes + size, sizeof(bytes) - size);
    return start;
  }
  void add(const uint8_t* data, size_t count) {
    memcpy(bytes + size, data, count);
    size += count;
  }
};

const uint8_t kPayload[] = {1, 2, 3, 0xA5, 0x5A, 0xFF};

void check_frame_layout() {
  uint8_t frame[32];
  const size_t size = encode_frame(0x86, 0x1234, kPayload, 3, frame, sizeof(frame));
  CHECK_EQ(size, kFramingBytes + 3);
  const uint8_t header[] = {0xA5, 0x5A, kVersion, 0x86, 0x34, 0x12, 0x03, 0x00};
  CHECK(memcmp(frame, header, sizeof(header)) == 0);
  const uint32_t header_crc = crc32(frame, 8);
  CHECK_EQ(frame[8], header_crc & 0xFF);
  CHECK_EQ(frame[9], (header_crc >> 8) & 0xFF);
  CHECK(memcmp(frame + 10, kPayload, 3) == 0);
  const uint32_t payload_crc = crc32(kPayload, 3);
  CHECK_EQ(frame[13] | (frame[14] << 8) | (frame[15] << 16) | (uint32_t(frame[16]) << 24),
           payload_crc);
  CHECK_EQ(encode_frame(0x86, 1, kPayload, 3, frame, kFramingBytes + 2), 0u);
  CHECK_EQ(encode_frame(0x86, 1, kPayload, kMaxPayloadLimit + 1, frame, sizeof(frame)), 0u);
}

void check_round_trip() {
  Stream stream;
  stream.add_frame(0x04, 7, kPayload, sizeof(kPayload));
  stream.add_frame(0x01, 65535, nullptr, 0);
  TestDecoder decoder;
  DecodeResult first = decoder.feed(stream.bytes, kFramingBytes + sizeof(kPayload));
  CHECK_EQ(first.frames, 1);
  CHECK_EQ(first.header.version, kVersion);
  CHECK_EQ(first.header.type, 0x04);
  CHECK_EQ(first.header.seq, 7);
  CHECK_EQ(first.payload_size, sizeof(kPayload));
  CHECK(memcmp(first.payload, kPayload, sizeof(kPayload)) == 0);
  DecodeResult second = decoder.feed(stream.bytes + kFramingBytes + sizeof(kPayload),
                                     stream.size - kFramingBytes - sizeof(kPayload));
  CHECK_EQ(second.frames, 1);
  CHECK_EQ(second.header.seq, 65535);
  CHECK_EQ(second.payload_size, 0u);
  CHECK_EQ(decoder.decoder().stats().skipped_bytes, 0u);
  CHECK(!decoder.decoder().mid_frame());
}

void check_corrupted_payload_is_reported_with_its_seq() {
  Stream stream;
  stream.add_frame(0x04, 99, kPayload, sizeof(kPayload));
  stream.bytes[kHeaderBytes + 2] ^= 0x10;
  stream.add_frame(0x01, 100, nullptr, 0);
  TestDecoder decoder;
  const DecodeResult result = decoder.feed(stream.bytes, stream.size);
  CHECK_EQ(result.bad_crc, 1);
  CHECK_EQ(result.frames, 1);
  CHECK_EQ(result.header.seq, 100);
  CHECK_EQ(decoder.decoder().stats().crc_errors, 1u);
}

void check_corrupted_header_byte_resyncs_on_next_frame() {
  bool all_resynced = true;
  for (size_t position = 0; position < kHeaderBytes; ++position) {
    Stream stream;
    stream.add_frame(0x02, 1, kPayload, 1);
    stream.bytes[position] ^= 0x01;
    stream.add_frame(0x01, 2, nullptr, 0);
    TestDecoder decoder;
    const DecodeResult result = decoder.feed(stream.bytes, stream.size);
    const bool resynced = result.frames == 1 && result.bad_crc == 0 && result.header.seq == 2;
    if (!resynced) CHECK_EQ(position, -1);  // reports the failing position
    all_resynced = all_resynced && resynced;
  }
  CHECK(all_resynced);
}

void check_garbage_and_false_sync_markers_are_skipped() {
  const uint8_t garbage[] = {0x00, 0xA5, 0x13, 0x5A, 0xA5, 0x5A, 0x01, 0x02, 0xA5,
                             0xA5, 0x5A, 0x09, 0x09, 0x09, 0x09, 0x09, 0x09, 0x09,
                             0x09, 0x09, 0xFF, 0xA5};
  Stream stream;
  stream.add(garbage, sizeof(garbage));
  stream.add_frame(0x03, 5, kPayload, 5);
  stream.add(garbage, sizeof(garbage));
  stream.add_frame(0x03, 6, kPayload, 5);
  TestDecoder decoder;
  const DecodeResult result = decoder.feed(stream.bytes, stream.size);
  CHECK_EQ(result.frames, 2);
  CHECK_EQ(result.header.seq, 6);
  CHECK_EQ(result.bad_crc, 0);
  CHECK(decoder.decoder().stats().header_errors >= 2);
}

// A false marker right before a frame makes the decoder read the frame's first bytes as the
// rest of a header; the failed header check must rescan them and find the real marker.
void check_false_sync_directly_before_frame() {
  const uint8_t false_marker[] = {0xA5, 0x5A, 0x01};
  Stream stream;
  stream.add(false_marker, sizeof(false_marker));
  stream.add_frame(0x05, 77, kPayload, 2);
  TestDecoder decoder;
  const DecodeResult result = decoder.feed(stream.bytes, stream.size);
  CHECK_EQ(result.frames, 1);
  CHECK_EQ(result.header.seq, 77);
}

void check_truncated_frame() {
  Stream stream;
  stream.add_frame(0x04, 10, kPayload, sizeof(kPayload));
  const size_t truncated_size = kHeaderBytes + 2;
  const size_t next = stream.add_frame(0x01, 11, nullptr, 0);

  // After the receiver's inter-byte timeout (reset) the next frame decodes.
  TestDecoder with_reset;
  with_reset.feed(stream.bytes, truncated_size);
  CHECK(with_reset.decoder().mid_frame());
  with_reset.decoder().reset();
  CHECK(!with_reset.decoder().mid_frame());
  DecodeResult result = with_reset.feed(stream.bytes + next, stream.size - next);
  CHECK_EQ(result.frames, 1);
  CHECK_EQ(result.header.seq, 11);
  CHECK_EQ(with_reset.decoder().stats().resets, 1u);

  // Without the reset the truncated frame swallows the next one: a CRC error, no frame.
  TestDecoder without_reset;
  without_reset.feed(stream.bytes, truncated_size);
  result = without_reset.feed(stream.bytes + next, stream.size - next);
  CHECK_EQ(result.frames, 0);
  CHECK_EQ(result.bad_crc, 1);
  CHECK_EQ(result.header.seq, 10);
}

void check_oversize_frame_is_skipped() {
  uint8_t big_payload[kDecoderCapacity + 8] = {};
  big_payload[3] = 0xA5;  // a marker inside the skipped payload must not matter
  big_payload[4] = 0x5A;
  Stream stream;
  stream.add_frame(0x04, 20, big_payload, sizeof(big_payload));
  stream.add_frame(0x01, 21, nullptr, 0);
  TestDecoder decoder;
  const DecodeResult result = decoder.feed(stream.bytes, stream.size);
  CHECK_EQ(result.oversize, 1);
  CHECK_EQ(result.frames, 1);
  CHECK_EQ(result.header.seq, 21);
}

void check_payload_writer() {
  uint8_t buffer[16];
  PayloadWriter writer(buffer, sizeof(buffer));
  writer.u8(0x11);
  writer.u16(0x2233);
  writer.u32(0x44556677);
  writer.f32(1.0f);
  const uint8_t expected[] = {0x11, 0x33, 0x22, 0x77, 0x66, 0x55, 0x44, 0x00, 0x00, 0x80, 0x3F};
  CHECK_EQ(writer.size(), sizeof(expected));
  CHECK(memcmp(buffer, expected, sizeof(expected)) == 0);
  CHECK(!writer.overflowed());
  writer.text("abcdefgh");  // 5 bytes left: truncated
  CHECK_EQ(writer.size(), sizeof(buffer));
  CHECK(writer.overflowed());
  CHECK(memcmp(buffer + 11, "abcde", 5) == 0);
  CHECK(writer.reserve(1) == nullptr);

  PayloadWriter numbers(buffer, sizeof(buffer));
  numbers.decimal(0);
  numbers.u8(' ');
  numbers.decimal(4294967295u);
  CHECK_EQ(numbers.size(), 12u);
  CHECK(memcmp(buffer, "0 4294967295", 12) == 0);
}

void check_payload_reader() {
  const uint8_t data[] = {0x11, 0x33, 0x22, 0x77, 0x66, 0x55, 0x44, 0x99};
  PayloadReader reader(data, sizeof(data));
  CHECK_EQ(reader.u8(), 0x11);
  CHECK_EQ(reader.u16(), 0x2233);
  CHECK_EQ(reader.u32(), 0x44556677u);
  CHECK_EQ(reader.remaining(), 1u);
  CHECK_EQ(*reader.rest(), 0x99);
  CHECK(reader.ok());
  CHECK_EQ(reader.u16(), 0);
  CHECK(!reader.ok());
}

}  // namespace

void codec_tests() {
  check_frame_layout();
  check_round_trip();
  check_corrupted_payload_is_reported_with_its_seq();
  check_corrupted_header_byte_resyncs_on_next_frame();
  check_garbage_and_false_sync_markers_are_skipped();
  check_false_sync_directly_before_frame();
  check_truncated_frame();
  check_oversize_frame_is_skipped();
  check_payload_writer();
  check_payload_reader();
}
