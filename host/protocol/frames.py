"""Frames: sync, version, type, sequence number, length, payload, CRC-32; the encoder and the
streaming, resynchronizing decoder (firmware/PROTOCOL.md)."""
from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

SYNC = b"\xa5\x5a"
VERSION = 5  # 2: INFO carries the context model's SHA-256; 3: the camera's pixel format; 4: payloads up to
#               8192 bytes; 5: INFO carries the uptime and stack/heap high-water marks (firmware/PROTOCOL.md)
HEADER_BYTES = 10
TRAILER_BYTES = 4
FRAMING_BYTES = HEADER_BYTES + TRAILER_BYTES
MAX_PAYLOAD_LIMIT = 8192  # no v5 frame is longer; a device announces its own limit in INFO

_HEADER = struct.Struct("<2sBBHH")  # sync, version, type, seq, payload length
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


class MessageType(enum.IntEnum):
    HELLO = 0x01
    CAPTURE = 0x02
    ENHANCE = 0x03
    UPLOAD_CHUNK = 0x04
    RUN = 0x05
    READ_FRAME = 0x06
    RUN_TILE = 0x07
    INFO = 0x81
    ACK = 0x82
    NAK = 0x83
    ERROR = 0x84
    FRAME_CHUNK = 0x85
    TILE = 0x86
    DONE = 0x87


class ErrorCode(enum.IntEnum):
    UNKNOWN_TYPE = 1
    BAD_LENGTH = 2
    BAD_VERSION = 3
    BUSY = 4
    CAMERA_FAILED = 5
    MODEL_FAILED = 6
    BAD_ARGUMENT = 7
    NO_FRAME = 8
    PAYLOAD_TOO_LARGE = 9
    NO_UPLOAD = 10


CAPTURE_SEND_FRAME = 0x01
CAPTURE_ENHANCE = 0x02
PIXEL_FORMAT_RGB565 = 0
PIXEL_FORMAT_YUV422 = 1  # Y0 U Y1 V per pixel pair (YUYV), full-range BT.601
STATUS_CAMERA_READY = 0x01
STATUS_MODEL_READY = 0x02


class ProtocolError(Exception):
    """The link or the device did not behave as the protocol says."""


class DeviceTimeout(ProtocolError):
    """The device did not answer in time, even after retransmissions."""


class DeviceError(ProtocolError):
    """The device answered with an ERROR message."""

    def __init__(self, code: int, text: str, port_name: str = "device"):
        self.code = code
        self.text = text
        try:
            label = f"{ErrorCode(code).name} ({code})"
        except ValueError:
            label = f"code {code}"
        super().__init__(f"device on {port_name} reported error {label}: {text}")


def _header_check(header8: bytes) -> int:
    return zlib.crc32(header8) & 0xFFFF


def encode_frame(msg_type: int, seq: int, payload: bytes = b"", version: int = VERSION) -> bytes:
    """One frame: header (with its check), payload, CRC-32 of the payload."""
    if len(payload) > MAX_PAYLOAD_LIMIT:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_LIMIT}")
    head = _HEADER.pack(SYNC, version, msg_type, seq & 0xFFFF, len(payload))
    return head + _U16.pack(_header_check(head)) + payload + _U32.pack(zlib.crc32(payload))


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes
    version: int = VERSION


@dataclass
class DecoderStats:
    frames: int = 0
    skipped_bytes: int = 0  # bytes outside any good frame
    header_errors: int = 0
    crc_errors: int = 0


class FrameDecoder:
    """Streaming decoder: feed it byte chunks of any size, get complete, checked frames.

    Garbage is skipped. After a bad header check or a bad payload CRC, scanning resumes one
    byte after that frame's sync marker, so a frame that swallowed the start of the next one
    (a lost byte) does not take the next frame down with it.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD_LIMIT):
        self.max_payload = max_payload
        self.stats = DecoderStats()
        self._buffer = bytearray()

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)

    def reset(self) -> None:
        self.stats.skipped_bytes += len(self._buffer)
        self._buffer.clear()

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames = []
        while (frame := self._next_frame()) is not None:
            frames.append(frame)
        return frames

    def _skip(self, count: int) -> None:
        del self._buffer[:count]
        self.stats.skipped_bytes += count

    def _next_frame(self) -> Frame | None:
        buffer = self._buffer
        while True:
            start = buffer.find(SYNC)
            if start < 0:  # keep a trailing first sync byte, it may start a marker
                self._skip(len(buffer) - (1 if buffer.endswith(SYNC[:1]) else 0))
                return None
            self._skip(start)
            if len(buffer) < HEADER_BYTES:
                return None
            _, version, msg_type, seq, length = _HEADER.unpack_from(buffer)
            header_ok = _U16.unpack_from(buffer, 8)[0] == _header_check(bytes(buffer[:8]))
            if not header_ok or length > self.max_payload:
                self.stats.header_errors += 1
                self._skip(1)
                continue
            end = HEADER_BYTES + length
            if len(buffer) < end + TRAILER_BYTES:
                return None
            payload = bytes(buffer[HEADER_BYTES:end])
            if _U32.unpack_from(buffer, end)[0] != zlib.crc32(payload):
                self.stats.crc_errors += 1
                self._skip(1)
                continue
            del buffer[: end + TRAILER_BYTES]
            self.stats.frames += 1
            return Frame(msg_type, seq, payload, version)
