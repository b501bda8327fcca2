"""Message payloads: one dataclass per message type with pack() / unpack()."""
from __future__ import annotations

import numpy as np
import struct
from dataclasses import dataclass, fields
from typing import Any, ClassVar
from .frames import (_U16, _U32, CAPTURE_ENHANCE, CAPTURE_SEND_FRAME, PIXEL_FORMAT_YUV422, STATUS_CAMERA_READY,
                     STATUS_MODEL_READY, Frame, MessageType, ProtocolError, encode_frame)



def _require_length(name: str, payload: bytes, expected: int, *, at_least: bool = False) -> None:
    if len(payload) < expected or (not at_least and len(payload) != expected):
        relation = "at least " if at_least else ""
        raise ProtocolError(f"malformed {name}: {len(payload)} payload bytes, "
                            f"expected {relation}{expected}")


@dataclass(frozen=True)
class Hello:
    TYPE: ClassVar[MessageType] = MessageType.HELLO
    session_token: int | None = None  # kept by the device and echoed in INFO until it boots again

    def pack(self) -> bytes:
        return b"" if self.session_token is None else struct.pack("<I", self.session_token)

    @classmethod
    def unpack(cls, payload: bytes) -> Hello:
        if not payload:
            return cls()
        _require_length("HELLO", payload, 4)
        return cls(struct.unpack("<I", payload)[0])


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
    """Announces an upload of a width x height frame (little-endian u16 per pixel: YUV422 as
    the camera's bytes, or RGB565; host/protocol/pixels.py)."""

    TYPE: ClassVar[MessageType] = MessageType.ENHANCE
    _LAYOUT: ClassVar[struct.Struct] = struct.Struct("<BHH")
    width: int
    height: int
    pixel_format: int = PIXEL_FORMAT_YUV422

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
    _LAYOUT: ClassVar[struct.Struct] = struct.Struct("<BBHHHHHHHfifiIII32s32sBIIII")
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
    camera_pixel_format: int  # the format of captured frames (PIXEL_FORMAT_*)
    uptime_ms: int  # since the firmware started: smaller than before means the board reset
    stack_high_water: int  # bytes; 0: the platform does not measure it
    heap_high_water: int  # bytes; 0: not measured (or no heap in use)
    session_token: int  # the host's last HELLO token; 0: none since the device booted
    firmware_version: str

    @property
    def camera_ready(self) -> bool:
        return bool(self.status_flags & STATUS_CAMERA_READY)

    @property
    def model_ready(self) -> bool:
        return bool(self.status_flags & STATUS_MODEL_READY)

    @property
    def frame_bytes(self) -> int:
        """Size of one frame (2 bytes per pixel in either format)."""
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
        numbers = [getattr(self, f.name) for f in fields(self)][:-8]
        return (self._LAYOUT.pack(*numbers, bytes.fromhex(self.model_sha256),
                                  bytes.fromhex(self.context_model_sha256), self.camera_pixel_format,
                                  self.uptime_ms, self.stack_high_water, self.heap_high_water,
                                  self.session_token)
                + self.firmware_version.encode())

    @classmethod
    def unpack(cls, payload: bytes) -> DeviceInfo:
        _require_length("INFO", payload, cls._LAYOUT.size, at_least=True)
        values = list(cls._LAYOUT.unpack_from(payload))
        values[16:18] = [values[16].hex(), values[17].hex()]  # the two SHA-256
        return cls(*values, payload[cls._LAYOUT.size:].decode("utf-8", errors="replace"))


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
    """Bytes [offset, offset + len(data)) of the device's frame (2 bytes per pixel) of `total` bytes."""

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
