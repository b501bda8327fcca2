"""Host side of the tinymirnet serial protocol, version 1 (specification: firmware/PROTOCOL.md).

Three layers:

* frames: :func:`encode_frame` and the streaming, resynchronizing :class:`FrameDecoder`;
* message payloads: one dataclass per message type with ``pack()`` / ``unpack()``, and
  :func:`decode_message`;
* :class:`Connection`: request/response with ACKs, bounded retransmission and timeouts over
  any pyserial-like port (``read(n)``, ``write(data)``, a settable ``timeout``), which also
  re-requests tiles or frame bytes lost on the way back.

Pixel helpers convert between the wire's RGB565 and RGB888 and stitch tiles into an image.
This module imports only the standard library and numpy (pyserial only in
:meth:`Connection.open`).
"""

from __future__ import annotations

import enum
import random
import struct
import time
import zlib
from collections import deque
from dataclasses import dataclass, field, fields
from typing import Any, Callable, ClassVar, Iterable

import numpy as np

# --------------------------------------------------------------------------------------------
# Frames

SYNC = b"\xa5\x5a"
VERSION = 2  # 2: INFO carries the context model's SHA-256 (firmware/PROTOCOL.md)
HEADER_BYTES = 10
TRAILER_BYTES = 4
FRAMING_BYTES = HEADER_BYTES + TRAILER_BYTES
MAX_PAYLOAD_LIMIT = 4096  # no v2 frame is longer; a device announces its own limit in INFO

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


# --------------------------------------------------------------------------------------------
# Message payloads


def _require_length(name: str, payload: bytes, expected: int, *, at_least: bool = False) -> None:
    if len(payload) < expected or (not at_least and len(payload) != expected):
        relation = "at least " if at_least else ""
        raise ProtocolError(f"malformed {name}: {len(payload)} payload bytes, "
                            f"expected {relation}{expected}")


@dataclass(frozen=True)
class Hello:
    TYPE: ClassVar[MessageType] = MessageType.HELLO

    def pack(self) -> bytes:
        return b""

    @classmethod
    def unpack(cls, payload: bytes) -> Hello:
        _require_length("HELLO", payload, 0)
        return cls()


@dataclass(frozen=True)
class Capture:
    TYPE: ClassVar[MessageType] = MessageType.CAPTURE
    flags: int = CAPTURE_SEND_FRAME | CAPTURE_ENHANCE

    def pack(self) -> bytes:
        return bytes([self.flags])

    @classmethod
    def unpack(cls, payload: bytes) -> Capture:
        _require_length("CAPTURE", payload, 1)
        return cls(payload[0])


@dataclass(frozen=True)
class Enhance:
    """Announces an upload of a width x height frame (RGB565, little-endian u16 per pixel)."""

    TYPE: ClassVar[MessageType] = MessageType.ENHANCE
    _LAYOUT: ClassVar[struct.Struct] = struct.Struct("<BHH")
    width: int
    height: int
    pixel_format: int = PIXEL_FORMAT_RGB565

    def pack(self) -> bytes:
        return self._LAYOUT.pack(self.pixel_format, self.width, self.height)

    @classmethod
    def unpack(cls, payload: bytes) -> Enhance:
        _require_length("ENHANCE", payload, cls._LAYOUT.size)
        pixel_format, width, height = cls._LAYOUT.unpack(payload)
        return cls(width, height, pixel_format)


@dataclass(frozen=True)
class UploadChunk:
    TYPE: ClassVar[MessageType] = MessageType.UPLOAD_CHUNK
    offset: int
    data: bytes

    def pack(self) -> bytes:
        return _U32.pack(self.offset) + self.data

    @classmethod
    def unpack(cls, payload: bytes) -> UploadChunk:
        _require_length("UPLOAD_CHUNK", payload, 5, at_least=True)
        return cls(_U32.unpack_from(payload)[0], bytes(payload[4:]))


@dataclass(frozen=True)
class Run:
    TYPE: ClassVar[MessageType] = MessageType.RUN

    def pack(self) -> bytes:
        return b""

    @classmethod
    def unpack(cls, payload: bytes) -> Run:
        _require_length("RUN", payload, 0)
        return cls()


@dataclass(frozen=True)
class ReadFrame:
    TYPE: ClassVar[MessageType] = MessageType.READ_FRAME
    _LAYOUT: ClassVar[struct.Struct] = struct.Struct("<IH")
    offset: int
    length: int

    def pack(self) -> bytes:
        return self._LAYOUT.pack(self.offset, self.length)

    @classmethod
    def unpack(cls, payload: bytes) -> ReadFrame:
        _require_length("READ_FRAME", payload, cls._LAYOUT.size)
        return cls(*cls._LAYOUT.unpack(payload))


@dataclass(frozen=True)
class RunTile:
    TYPE: ClassVar[MessageType] = MessageType.RUN_TILE
    index: int

    def pack(self) -> bytes:
        return _U16.pack(self.index)

    @classmethod
    def unpack(cls, payload: bytes) -> RunTile:
        _require_length("RUN_TILE", payload, 2)
        return cls(_U16.unpack(payload)[0])


NO_CONTEXT_MODEL = "0" * 64  # INFO's context model SHA-256 on a one-model firmware


@dataclass(frozen=True)
class DeviceInfo:
    TYPE: ClassVar[MessageType] = MessageType.INFO
    _LAYOUT: ClassVar[struct.Struct] = struct.Struct("<BBHHHHHHHfifiIII32s32s")
    protocol_version: int
    status_flags: int
    max_payload: int
    tile_size: int
    halo: int
    model_input_size: int
    frame_width: int
    frame_height: int
    tile_count: int
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    arena_size: int
    arena_used_bytes: int
    model_bytes: int
    model_sha256: str  # 64 hex characters (the tile model)
    context_model_sha256: str  # 64 hex characters; all zeros for a one-model network
    firmware_version: str

    @property
    def camera_ready(self) -> bool:
        return bool(self.status_flags & STATUS_CAMERA_READY)

    @property
    def model_ready(self) -> bool:
        return bool(self.status_flags & STATUS_MODEL_READY)

    @property
    def frame_bytes(self) -> int:
        """Size of one RGB565 frame."""
        return self.frame_width * self.frame_height * 2

    @property
    def upload_chunk_bytes(self) -> int:
        return self.max_payload - 4

    @property
    def read_chunk_bytes(self) -> int:
        return self.max_payload - 8

    @property
    def frame_context(self) -> bool:
        """The board runs a frame-context network (a context model once per frame)."""
        return self.context_model_sha256 != NO_CONTEXT_MODEL

    def pack(self) -> bytes:
        numbers = [getattr(self, f.name) for f in fields(self)][:-3]
        return (self._LAYOUT.pack(*numbers, bytes.fromhex(self.model_sha256),
                                  bytes.fromhex(self.context_model_sha256))
                + self.firmware_version.encode())

    @classmethod
    def unpack(cls, payload: bytes) -> DeviceInfo:
        _require_length("INFO", payload, cls._LAYOUT.size, at_least=True)
        *numbers, sha256, context_sha256 = cls._LAYOUT.unpack_from(payload)
        version = payload[cls._LAYOUT.size:].decode("utf-8", errors="replace")
        return cls(*numbers, sha256.hex(), context_sha256.hex(), version)


@dataclass(frozen=True)
class Ack:
    TYPE: ClassVar[MessageType] = MessageType.ACK
    acked_type: int

    def pack(self) -> bytes:
        return bytes([self.acked_type])

    @classmethod
    def unpack(cls, payload: bytes) -> Ack:
        _require_length("ACK", payload, 1)
        return cls(payload[0])


@dataclass(frozen=True)
class Nak:
    TYPE: ClassVar[MessageType] = MessageType.NAK
    rejected_type: int

    def pack(self) -> bytes:
        return bytes([self.rejected_type])

    @classmethod
    def unpack(cls, payload: bytes) -> Nak:
        _require_length("NAK", payload, 1)
        return cls(payload[0])


@dataclass(frozen=True)
class ErrorReply:
    TYPE: ClassVar[MessageType] = MessageType.ERROR
    code: int
    text: str

    def pack(self) -> bytes:
        return _U16.pack(self.code) + self.text.encode()

    @classmethod
    def unpack(cls, payload: bytes) -> ErrorReply:
        _require_length("ERROR", payload, 2, at_least=True)
        return cls(_U16.unpack_from(payload)[0], payload[2:].decode("utf-8", errors="replace"))


@dataclass(frozen=True)
class FrameChunk:
    """Bytes [offset, offset + len(data)) of the device's RGB565 frame of `total` bytes."""

    TYPE: ClassVar[MessageType] = MessageType.FRAME_CHUNK
    _LAYOUT: ClassVar[struct.Struct] = struct.Struct("<II")
    offset: int
    total: int
    data: bytes

    def pack(self) -> bytes:
        return self._LAYOUT.pack(self.offset, self.total) + self.data

    @classmethod
    def unpack(cls, payload: bytes) -> FrameChunk:
        _require_length("FRAME_CHUNK", payload, cls._LAYOUT.size, at_least=True)
        offset, total = cls._LAYOUT.unpack_from(payload)
        return cls(offset, total, bytes(payload[cls._LAYOUT.size:]))


@dataclass(frozen=True)
class Tile:
    """One enhanced tile: width x height RGB888 pixels, row-major, at (x, y) in the frame."""

    TYPE: ClassVar[MessageType] = MessageType.TILE
    _LAYOUT: ClassVar[struct.Struct] = struct.Struct("<HHHHHI")
    index: int
    x: int
    y: int
    width: int
    height: int
    invoke_us: int  # device time of the model invocation alone
    rgb: bytes

    def pixels(self) -> np.ndarray:
        return np.frombuffer(self.rgb, dtype=np.uint8).reshape(self.height, self.width, 3)

    def pack(self) -> bytes:
        return self._LAYOUT.pack(self.index, self.x, self.y, self.width, self.height,
                                 self.invoke_us) + self.rgb

    @classmethod
    def unpack(cls, payload: bytes) -> Tile:
        _require_length("TILE", payload, cls._LAYOUT.size, at_least=True)
        index, x, y, width, height, invoke_us = cls._LAYOUT.unpack_from(payload)
        _require_length("TILE", payload, cls._LAYOUT.size + width * height * 3)
        return cls(index, x, y, width, height, invoke_us, bytes(payload[cls._LAYOUT.size:]))


@dataclass(frozen=True)
class Done:
    TYPE: ClassVar[MessageType] = MessageType.DONE
    _LAYOUT: ClassVar[struct.Struct] = struct.Struct("<HII")
    tile_count: int
    inference_us: int  # the tiles' invoke_us summed, plus the context model's (frame context)
    elapsed_us: int  # from the command to DONE, on the device

    def pack(self) -> bytes:
        return self._LAYOUT.pack(self.tile_count, self.inference_us, self.elapsed_us)

    @classmethod
    def unpack(cls, payload: bytes) -> Done:
        _require_length("DONE", payload, cls._LAYOUT.size)
        return cls(*cls._LAYOUT.unpack(payload))


MESSAGE_CLASSES: dict[int, type] = {
    cls.TYPE: cls
    for cls in (Hello, Capture, Enhance, UploadChunk, Run, ReadFrame, RunTile, DeviceInfo, Ack,
                Nak, ErrorReply, FrameChunk, Tile, Done)
}


def decode_message(frame: Frame) -> Any:
    """The message dataclass for a frame; ProtocolError for unknown types or bad payloads."""
    cls = MESSAGE_CLASSES.get(frame.type)
    if cls is None:
        raise ProtocolError(f"unknown message type 0x{frame.type:02x}")
    return cls.unpack(frame.payload)


def encode_message(message: Any, seq: int) -> bytes:
    return encode_frame(message.TYPE, seq, message.pack())


# --------------------------------------------------------------------------------------------
# Pixels


def rgb565_to_rgb888(frame: bytes | np.ndarray, width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8 from RGB565 (little-endian bytes or uint16 values), replicating
    the high bits into the low ones exactly as the device does."""
    if isinstance(frame, np.ndarray) and frame.dtype == np.uint16:
        values = frame.reshape(height, width)
    else:
        values = np.frombuffer(bytes(frame), dtype="<u2").reshape(height, width)
    r5 = (values >> 11) & 0x1F
    g6 = (values >> 5) & 0x3F
    b5 = values & 0x1F
    channels = ((r5 << 3) | (r5 >> 2), (g6 << 2) | (g6 >> 4), (b5 << 3) | (b5 >> 2))
    return np.stack(channels, axis=-1).astype(np.uint8)


def rgb888_to_rgb565(image: np.ndarray) -> np.ndarray:
    """(height, width) uint16 RGB565 from an (height, width, 3) uint8 image, by truncation."""
    pixels = np.asarray(image, dtype=np.uint16)
    return ((pixels[..., 0] >> 3) << 11 | (pixels[..., 1] >> 2) << 5 | pixels[..., 2] >> 3
            ).astype(np.uint16)


def rgb565_bytes(frame: np.ndarray | bytes) -> bytes:
    """Wire bytes (little-endian u16 per pixel) of a uint16 RGB565 frame."""
    if isinstance(frame, (bytes, bytearray, memoryview)):
        return bytes(frame)
    return np.asarray(frame, dtype="<u2").tobytes()


def stitch_tiles(tiles: Iterable[Tile], width: int, height: int) -> np.ndarray:
    image = np.zeros((height, width, 3), dtype=np.uint8)
    for tile in tiles:
        image[tile.y:tile.y + tile.height, tile.x:tile.x + tile.width] = tile.pixels()
    return image


# --------------------------------------------------------------------------------------------
# Connection


@dataclass
class EnhanceResult:
    image: np.ndarray  # (frame_height, frame_width, 3) uint8
    tiles: list[Tile]  # by index
    done: Done | None  # None if the DONE message itself was lost
    repaired_tiles: list[int] = field(default_factory=list)  # re-requested with RUN_TILE

    @property
    def device_inference_us(self) -> int:
        """The tile model's time over all tiles (DONE adds a frame-context network's context model)."""
        return sum(tile.invoke_us for tile in self.tiles)


@dataclass
class CaptureResult:
    raw_rgb565: np.ndarray | None  # (frame_height, frame_width) uint16, if requested
    enhanced: EnhanceResult | None  # if requested

    @property
    def raw_rgb888(self) -> np.ndarray | None:
        if self.raw_rgb565 is None:
            return None
        height, width = self.raw_rgb565.shape
        return rgb565_to_rgb888(self.raw_rgb565, width, height)


@dataclass
class LinkStats:
    frames_sent: int = 0
    retransmissions: int = 0
    naks: int = 0
    timeouts: int = 0
    stale_frames: int = 0  # good frames that answered nothing we were waiting for
    repaired_tiles: int = 0
    repaired_frame_chunks: int = 0


TileCallback = Callable[[Tile], None]


@dataclass
class _Stream:
    """What one job streamed back, after repairs."""

    raw: bytearray | None
    tiles: dict[int, Tile]
    done: Done | None
    repaired_tiles: list[int]


class Connection:
    """A session with the device over a pyserial-like port.

    Every command is sent with a fresh sequence number and retransmitted (same sequence
    number) when no answer comes within ``timeout`` seconds or the device answers NAK, up to
    ``retries`` tries in all; then :class:`DeviceTimeout` is raised. Streams (raw frame chunks,
    tiles) may pause up to ``stream_timeout`` seconds between messages, which must exceed the
    device's time for one tile. Pieces of a stream lost on the way are re-requested.
    """

    def __init__(self, port: Any, *, name: str | None = None, timeout: float = 1.0,
                 retries: int = 3, stream_timeout: float = 30.0, poll_interval: float = 0.05,
                 first_seq: int | None = None):
        if retries < 1:
            raise ValueError("retries must be at least 1")
        self.port = port
        self.name = name or str(getattr(port, "name", None) or getattr(port, "port", None)
                                or "serial port")
        self.timeout = timeout
        self.retries = retries
        self.stream_timeout = stream_timeout
        self.longest_tile_s: float | None = None  # the device's own figure, from TILE replies
        self.info: DeviceInfo | None = None
        self.stats = LinkStats()
        self.decoder = FrameDecoder()
        self._received: deque[Frame] = deque()
        # A random start keeps a new session's first command from looking like a
        # retransmission of the previous session's last one.
        self._seq = random.randrange(0x10000) if first_seq is None else first_seq & 0xFFFF
        port.timeout = poll_interval

    @classmethod
    def open(cls, device: str, *, baudrate: int = 115200, **options: Any) -> Connection:
        """Opens a serial device (e.g. /dev/ttyACM0) and discards stale input."""
        import serial  # pyserial, only needed for real ports

        port = serial.Serial(device, baudrate=baudrate)
        port.reset_input_buffer()
        return cls(port, name=device, **options)

    def close(self) -> None:
        close = getattr(self.port, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # Commands ---------------------------------------------------------------------------

    def hello(self) -> DeviceInfo:
        """Starts a session (aborting any job the device is still running); returns INFO."""
        frame = self._request(Hello(), lambda f: f.type == MessageType.INFO)
        info = DeviceInfo.unpack(frame.payload)
        if info.protocol_version != VERSION:
            raise ProtocolError(f"device on {self.name} speaks protocol version "
                                f"{info.protocol_version}, this host speaks {VERSION}")
        self.info = info
        return info

    def capture(self, *, send_frame: bool = True, enhance: bool = True,
                on_tile: TileCallback | None = None) -> CaptureResult:
        """Captures a camera frame; returns the raw frame and/or its enhancement."""
        info = self._session_info()
        flags = (CAPTURE_SEND_FRAME if send_frame else 0) | (CAPTURE_ENHANCE if enhance else 0)
        seq = self._start_job(Capture(flags))
        stream = self._collect_stream(seq, send_frame, enhance, on_tile)
        raw_frame = None
        if stream.raw is not None:
            raw_frame = np.frombuffer(bytes(stream.raw), dtype="<u2").reshape(
                info.frame_height, info.frame_width)
        return CaptureResult(raw_frame, self._enhance_result(stream) if enhance else None)

    def upload(self, frame: np.ndarray | bytes) -> None:
        """Uploads a frame into the device's frame buffer: RGB565 as little-endian bytes or
        (height, width) uint16, or RGB888 as (height, width, 3) uint8 (converted to RGB565)."""
        info = self._session_info()
        if isinstance(frame, np.ndarray) and frame.ndim == 3:
            frame = rgb888_to_rgb565(frame)
        data = rgb565_bytes(frame)
        if len(data) != info.frame_bytes:
            raise ValueError(f"frame has {len(data)} bytes; the device takes "
                             f"{info.frame_width}x{info.frame_height} RGB565 = "
                             f"{info.frame_bytes} bytes")
        self._request_ack(Enhance(info.frame_width, info.frame_height))
        step = info.upload_chunk_bytes
        for offset in range(0, len(data), step):
            self._request_ack(UploadChunk(offset, data[offset:offset + step]))

    def run(self, *, on_tile: TileCallback | None = None) -> EnhanceResult:
        """Enhances the frame in the device's frame buffer (from the last capture or upload)."""
        self._session_info()
        seq = self._start_job(Run())
        return self._enhance_result(self._collect_stream(seq, False, True, on_tile))

    def enhance(self, frame: np.ndarray | bytes, *,
                on_tile: TileCallback | None = None) -> EnhanceResult:
        """Uploads a frame (see :meth:`upload`) and enhances it on the device."""
        self.upload(frame)
        return self.run(on_tile=on_tile)

    def read_frame(self) -> np.ndarray:
        """The device's frame buffer as (height, width) uint16 RGB565."""
        info = self._session_info()
        data = self._read_frame_bytes(0, info.frame_bytes)
        return np.frombuffer(data, dtype="<u2").reshape(info.frame_height, info.frame_width)

    def run_tile(self, index: int) -> Tile:
        """Enhances one tile of the device's frame buffer. The wait for the answer comes from
        the device's own figures: each TILE says how long the device computed it (invoke_us,
        the context model included when that tile ran it), and the next RUN_TILE waits twice
        the longest seen plus `timeout`; before the first one it waits `stream_timeout`, which
        must exceed a tile's time."""
        frame = self._request(RunTile(index), lambda f: f.type == MessageType.TILE,
                              timeout=self.tile_wait())
        tile = Tile.unpack(frame.payload)
        self.longest_tile_s = max(self.longest_tile_s or 0.0, tile.invoke_us / 1e6)
        return tile

    def tile_wait(self) -> float:
        """Seconds a RUN_TILE waits for its TILE (see run_tile)."""
        if self.longest_tile_s is None:
            return max(self.timeout, self.stream_timeout)
        return self.timeout + 2 * self.longest_tile_s

    # Request/response ---------------------------------------------------------------------

    def _session_info(self) -> DeviceInfo:
        return self.info if self.info is not None else self.hello()

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF
        return self._seq

    def _request_ack(self, message: Any) -> None:
        self._request(message, lambda f: _is_ack_for(f, message.TYPE))

    def _start_job(self, message: Any) -> int:
        """Sends a command that starts a stream. A stream message stands in for a lost ACK."""
        stream_types = (MessageType.FRAME_CHUNK, MessageType.TILE, MessageType.DONE)
        frame = self._request(message,
                              lambda f: _is_ack_for(f, message.TYPE) or f.type in stream_types)
        if frame.type != MessageType.ACK:
            self._received.appendleft(frame)
        return frame.seq

    def _request(self, message: Any, is_answer: Callable[[Frame], bool],
                 timeout: float | None = None) -> Frame:
        """Sends `message` until an answer comes: again after each silent `timeout` (the
        connection's unless given) and at once after a NAK, at most `retries` times in all.
        After a NAK the wait goes on, since the answer to an earlier copy may still arrive (and
        a NAK may be a late one)."""
        timeout = self.timeout if timeout is None else timeout
        seq = self._next_seq()
        frame_bytes = encode_message(message, seq)
        self._write(frame_bytes)
        tries, naks = 1, 0
        deadline = time.monotonic() + timeout
        while True:
            frame = self._receive(deadline)
            if frame is None:
                self.stats.timeouts += 1
                if tries == self.retries:
                    raise DeviceTimeout(self._no_answer_text(message.TYPE.name, naks, timeout))
            elif frame.seq != seq:
                self.stats.stale_frames += 1
                continue
            elif frame.type == MessageType.NAK:
                self.stats.naks += 1
                naks += 1
                if tries == self.retries:
                    continue
            elif frame.type == MessageType.ERROR:
                self._raise_device_error(frame)
            elif is_answer(frame):
                return frame
            else:
                self.stats.stale_frames += 1
                continue
            self._write(frame_bytes)
            self.stats.retransmissions += 1
            tries += 1
            deadline = time.monotonic() + timeout

    def _no_answer_text(self, command: str, naks: int, timeout: float) -> str:
        tries = f"{self.retries} tries ({timeout:.1f} s each)"
        if naks:
            return (f"no valid answer from device on {self.name} to {command} after {tries}; "
                    f"it reported {naks} corrupted copies (check the cable)")
        return f"no answer from device on {self.name} to {command} after {tries}"

    def _write(self, data: bytes) -> None:
        self.port.write(data)
        self.stats.frames_sent += 1

    def _receive(self, deadline: float) -> Frame | None:
        """The next frame, or None at the deadline."""
        while not self._received:
            if time.monotonic() >= deadline:
                return None
            waiting = getattr(self.port, "in_waiting", 0) or 0
            data = self.port.read(max(1, waiting))
            if data:
                for frame in self.decoder.feed(data):
                    if frame.version != VERSION:
                        raise ProtocolError(f"device on {self.name} sent a protocol version "
                                            f"{frame.version} frame; this host speaks {VERSION}")
                    self._received.append(frame)
        return self._received.popleft()

    def _raise_device_error(self, frame: Frame) -> None:
        error = ErrorReply.unpack(frame.payload)
        raise DeviceError(error.code, error.text, self.name)

    # Streams ------------------------------------------------------------------------------

    def _collect_stream(self, seq: int, want_frame: bool, want_tiles: bool,
                        on_tile: TileCallback | None) -> _Stream:
        """Receives the FRAME_CHUNKs and TILEs of job `seq` until DONE, then re-requests what
        was lost on the way."""
        info = self._session_info()
        raw = bytearray(info.frame_bytes) if want_frame else None
        raw_arrived = bytearray(info.frame_bytes) if want_frame else bytearray()  # 1 per byte
        tiles: dict[int, Tile] = {}
        done = None
        while done is None:
            complete = raw_arrived.count(0) == 0 and (
                not want_tiles or len(tiles) == info.tile_count)
            # Once everything arrived only DONE is missing: no need to wait for a slow tile.
            wait = self.timeout if complete else self.stream_timeout
            frame = self._receive(time.monotonic() + wait)
            if frame is None:
                break
            if frame.seq != seq or frame.type in (MessageType.ACK, MessageType.NAK):
                self.stats.stale_frames += 1
            elif frame.type == MessageType.ERROR:
                self._raise_device_error(frame)
            elif frame.type == MessageType.FRAME_CHUNK and raw is not None:
                chunk = FrameChunk.unpack(frame.payload)
                end = chunk.offset + len(chunk.data)
                raw[chunk.offset:end] = chunk.data
                raw_arrived[chunk.offset:end] = b"\x01" * len(chunk.data)
            elif frame.type == MessageType.TILE:
                tile = Tile.unpack(frame.payload)
                if tile.index not in tiles:
                    tiles[tile.index] = tile
                    if on_tile is not None:
                        on_tile(tile)
            elif frame.type == MessageType.DONE:
                done = Done.unpack(frame.payload)
        missing_tiles = [i for i in range(info.tile_count) if i not in tiles] if want_tiles else []
        missing_bytes = _missing_ranges(raw_arrived)
        try:
            for offset, length in missing_bytes:
                raw[offset:offset + length] = self._read_frame_bytes(offset, length)
                self.stats.repaired_frame_chunks += 1
            for index in missing_tiles:
                tiles[index] = self.run_tile(index)
                self.stats.repaired_tiles += 1
                if on_tile is not None:
                    on_tile(tiles[index])
        except DeviceError as error:
            if error.code != ErrorCode.BUSY:
                raise
            # The stream went quiet but the job still runs: one tile took too long.
            raise DeviceTimeout(
                f"device on {self.name} sent nothing for {self.stream_timeout:.1f} s while "
                f"still busy ({len(tiles)} of {info.tile_count} tiles received); "
                f"raise stream_timeout") from error
        return _Stream(raw, tiles, done, missing_tiles)

    def _read_frame_bytes(self, offset: int, length: int) -> bytes:
        info = self._session_info()
        data = bytearray()
        for start in range(offset, offset + length, info.read_chunk_bytes):
            size = min(info.read_chunk_bytes, offset + length - start)
            frame = self._request(ReadFrame(start, size),
                                  lambda f: f.type == MessageType.FRAME_CHUNK)
            data += FrameChunk.unpack(frame.payload).data
        return bytes(data)

    def _enhance_result(self, stream: _Stream) -> EnhanceResult:
        info = self._session_info()
        ordered = [stream.tiles[index] for index in sorted(stream.tiles)]
        return EnhanceResult(stitch_tiles(ordered, info.frame_width, info.frame_height),
                             ordered, stream.done, stream.repaired_tiles)


def _is_ack_for(frame: Frame, command: MessageType) -> bool:
    return frame.type == MessageType.ACK and frame.payload[:1] == bytes([command])


def _missing_ranges(received: bytearray) -> list[tuple[int, int]]:
    """(offset, length) of the runs of zeros in a received-bytes mask."""
    mask = np.frombuffer(bytes(received), dtype=np.uint8)
    edges = np.flatnonzero(np.diff(np.concatenate(([1], mask, [1])).astype(np.int8)))
    return [(int(start), int(end - start)) for start, end in zip(edges[::2], edges[1::2])]
