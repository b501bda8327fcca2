"""A session with the device over a pyserial-like port: requests with ACKs, bounded
retransmission and timeouts, streams with lost pieces re-requested."""
from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import serial

from .frames import (CAPTURE_ENHANCE, CAPTURE_SEND_FRAME, PIXEL_FORMAT_YUV422, VERSION, DeviceError,
                     DeviceTimeout, ErrorCode, Frame, FrameDecoder, MessageType, ProtocolError)
from .messages import (Capture, DeviceInfo, Done, Enhance, ErrorReply, FrameChunk, Hello, ReadFrame, Run,
                       RunTile, Tile, UploadChunk, encode_message)
from .pixels import (PIXEL_FORMAT_NAMES, check_pixel_format, frame_to_rgb888, rgb888_to_frame, stitch_tiles,
                     wire_bytes)


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
    raw_frame: np.ndarray | None  # (frame_height, frame_width) uint16 as captured, if requested
    pixel_format: int  # raw_frame's format: the camera's (INFO), PIXEL_FORMAT_*
    enhanced: EnhanceResult | None  # if requested

    @property
    def raw_rgb888(self) -> np.ndarray | None:
        """The captured frame as the device converts it for the network."""
        if self.raw_frame is None:
            return None
        height, width = self.raw_frame.shape
        return frame_to_rgb888(self.raw_frame, self.pixel_format, width, height)


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

# The link settings, in one place: a board may need seconds per tile; the virtual board answers
# at once; the QEMU board answers commands at once but computes tiles at (up to) a board's pace.
LINK_SETTINGS = {
    "board": dict(timeout=1.0, retries=3, stream_timeout=30.0),
    "qemu": dict(timeout=1.0, retries=3, stream_timeout=30.0),
    "sim": dict(timeout=0.5, retries=4, stream_timeout=5.0),
}


class PortOpenError(Exception):
    """The serial port cannot be opened (missing, held by another program, no permission)."""


def open_error_text(path: str, error: Exception) -> str:
    """What a user reads when PATH cannot be opened: the cause and what to do about it."""
    text = str(error)
    errno = getattr(error, "errno", None)
    if errno == 2 or "No such file" in text:
        return (f"cannot open {path}: no such port (is the board plugged in? "
                f"`tinymirnet devices` lists the boards found)")
    if errno in (11, 16) or "lock" in text.lower() or "busy" in text.lower():
        return f"cannot open {path}: the port is busy (another program has it open: {text})"
    if errno == 13 or "Permission denied" in text:
        return (f"cannot open {path}: permission denied (on Linux, add yourself to the "
                f"'dialout' group and log in again)")
    return f"cannot open {path}: {text}"


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
                 first_seq: int | None = None, clock: Callable[[], float] = time.monotonic):
        if retries < 1:
            raise ValueError("retries must be at least 1")
        self.port = port
        self.name = name or str(getattr(port, "name", None) or getattr(port, "port", None)
                                or "serial port")
        self.timeout = timeout
        self.retries = retries
        self.stream_timeout = stream_timeout
        # Seconds for every deadline: injectable, so that tests of the timeouts need no wall clock.
        self.clock = clock
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
    def open(cls, device: str, kind: str = "board", *, name: str | None = None,
             wrap: Callable[[Any], Any] | None = None, **overrides: Any) -> Connection:
        """The one way a serial link is opened: DEVICE (e.g. /dev/ttyACM0, a virtual board's
        pty) opened exclusively at 115200 baud, stale input discarded, with the settings of
        LINK_SETTINGS[kind] ("board", "qemu" or "sim") and any `overrides`. `wrap` may wrap the
        opened port (a byte counter, a fault injector). A port that cannot be opened is one
        PortOpenError naming it and saying what to do."""

        try:
            port = serial.Serial(device, baudrate=115200, exclusive=True)
            port.reset_input_buffer()
        except serial.SerialException as e:
            raise PortOpenError(open_error_text(device, e)) from None
        except OSError as e:  # a pty that vanished between the check and the open
            raise PortOpenError(open_error_text(device, e)) from None
        settings = {**LINK_SETTINGS[kind], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(wrap(port) if wrap else port, name=name or device, **settings)

    def close(self) -> None:
        close = getattr(self.port, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # Commands ---------------------------------------------------------------------------

    def hello(self, session_token: int | None = None) -> DeviceInfo:
        """Starts a session (aborting any job the device is still running); returns INFO. A
        `session_token` is kept by the device and echoed in every INFO until it boots again."""
        frame = self._request(Hello(session_token), lambda f: f.type == MessageType.INFO)
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
        return CaptureResult(raw_frame, info.camera_pixel_format,
                             self._enhance_result(stream) if enhance else None)

    def upload(self, frame: np.ndarray | bytes, pixel_format: int = PIXEL_FORMAT_YUV422) -> None:
        """Uploads a frame into the device's frame buffer: RGB888 as (height, width, 3) uint8,
        converted to `pixel_format` (YUV422 by default: 8 bits of luma per pixel, where RGB565
        keeps 5 bits of red and blue), or a frame already in `pixel_format` as little-endian
        bytes or (height, width) uint16."""
        info = self._session_info()
        check_pixel_format(pixel_format)
        if isinstance(frame, np.ndarray) and frame.ndim == 3:
            frame = rgb888_to_frame(frame, pixel_format)
        data = wire_bytes(frame)
        if len(data) != info.frame_bytes:
            raise ValueError(f"frame has {len(data)} bytes; the device takes a "
                             f"{info.frame_width}x{info.frame_height} {PIXEL_FORMAT_NAMES[pixel_format]} "
                             f"frame of {info.frame_bytes} bytes")
        self._request_ack(Enhance(info.frame_width, info.frame_height, pixel_format))
        step = info.upload_chunk_bytes
        for offset in range(0, len(data), step):
            self._request_ack(UploadChunk(offset, data[offset:offset + step]))

    def run(self, *, on_tile: TileCallback | None = None) -> EnhanceResult:
        """Enhances the frame in the device's frame buffer (from the last capture or upload)."""
        self._session_info()
        seq = self._start_job(Run())
        return self._enhance_result(self._collect_stream(seq, False, True, on_tile))

    def enhance(self, frame: np.ndarray | bytes, *, pixel_format: int = PIXEL_FORMAT_YUV422,
                on_tile: TileCallback | None = None) -> EnhanceResult:
        """Uploads a frame (see :meth:`upload`) and enhances it on the device."""
        self.upload(frame, pixel_format)
        return self.run(on_tile=on_tile)

    def read_frame(self) -> np.ndarray:
        """The device's frame buffer as (height, width) uint16, in the format it was captured
        (INFO's camera_pixel_format) or uploaded in."""
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
        deadline = self.clock() + timeout
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
            deadline = self.clock() + timeout

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
            if self.clock() >= deadline:
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
            frame = self._receive(self.clock() + wait)
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
