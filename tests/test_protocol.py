"""Protocol v1: the Python codec, cross-checks against the C++ core, and the Connection's
recovery from link faults, against the real dispatcher built as libtinymirnet_sim.so and
driven through ctypes with Python fake ports (camera pattern, copying model)."""

from __future__ import annotations

import ctypes
import os
import random
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
try:
    from tinymirnet.host import link_faults, protocol
except ImportError:  # not installed: load the modules standalone
    sys.path.insert(0, str(ROOT / "host"))
    import link_faults
    import protocol

Faults = link_faults.Faults
MessageType = protocol.MessageType


# --------------------------------------------------------------------------------------------
# The simulator: the firmware core behind a pyserial-like port

# The ctypes view of firmware/sim/sim_api.h, shared with the virtual board.
from tinymirnet.host.sim_library import (CAPTURE_FN, CLOCK_FN, INVOKE_CONTEXT_FN, INVOKE_FN,  # noqa: E402
                                         READ_FN, SIZE_FN, STATUS_FN, WRITE_FN, SimConfig, SimPorts,
                                         ensure_sim_library)


@pytest.fixture(scope="session")
def sim_lib():
    lib = ctypes.CDLL(str(ensure_sim_library()))
    lib.tmn_sim_create.argtypes = [ctypes.POINTER(SimPorts), ctypes.c_char_p]
    lib.tmn_sim_get_config.argtypes = [ctypes.POINTER(SimConfig)]
    lib.tmn_crc32.restype = ctypes.c_uint32
    lib.tmn_crc32.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    lib.tmn_encode_frame.restype = ctypes.c_size_t
    lib.tmn_encode_frame.argtypes = [ctypes.c_uint8, ctypes.c_uint16, ctypes.c_char_p,
                                     ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
    lib.tmn_decode_frame.restype = ctypes.c_long
    lib.tmn_decode_frame.argtypes = [ctypes.c_char_p, ctypes.c_size_t,
                                     ctypes.POINTER(ctypes.c_uint8),
                                     ctypes.POINTER(ctypes.c_uint16), ctypes.c_char_p,
                                     ctypes.c_size_t]
    return lib


@pytest.fixture(scope="session")
def config(sim_lib) -> SimConfig:
    config = SimConfig()
    sim_lib.tmn_sim_get_config(ctypes.byref(config))
    return config


def pattern_frame(width: int, height: int, seed: int = 1, dark: bool = False,
                  pixel_format: int = protocol.PIXEL_FORMAT_YUV422) -> np.ndarray:
    """Random pixels of `pixel_format` (the board camera's YUV422 by default). `dark` makes a
    low-light frame, so that the device's exposure gain is well above one: luma below 32 and
    chroma within 16 of grey (YUV422), or the low 3/4/3 bits of R/G/B (RGB565)."""
    frame = np.random.default_rng(seed).integers(0, 0x10000, (height, width), dtype=np.uint16)
    if not dark:
        return frame
    if pixel_format == protocol.PIXEL_FORMAT_RGB565:
        return frame & np.uint16(0x39E7)
    return (frame & np.uint16(0x1F1F)) + np.uint16(0x7000)


class SimBoard:
    """The simulated device as a pyserial-like port. The device advances only while the host
    reads (each read() polls it), so tests are deterministic and need no threads."""

    def __init__(self, lib, *, camera: bool = True, mute_after_bytes: int | None = None):
        self.lib = lib
        self.timeout = 0.05
        self.name = "sim"
        self.to_device = bytearray()
        self.from_device = bytearray()
        self.sent_by_device = bytearray()  # everything, for traffic statistics
        self.muted = False  # a hung device: never polled again
        self.mute_after_bytes = mute_after_bytes
        self.clock_offset_us = 0
        config = SimConfig()
        lib.tmn_sim_get_config(ctypes.byref(config))
        self.frame = pattern_frame(config.frame_width, config.frame_height)
        self.invokes = 0
        self._callbacks = SimPorts(
            None, READ_FN(self._link_read), WRITE_FN(self._link_write),
            STATUS_FN(lambda user: 0),
            CAPTURE_FN(self._capture) if camera else CAPTURE_FN(),
            STATUS_FN(lambda user: 0), INVOKE_FN(self._invoke),
            INVOKE_CONTEXT_FN(self._invoke_context),
            SIZE_FN(lambda user: 4321), CLOCK_FN(self._micros))
        assert lib.tmn_sim_create(ctypes.byref(self._callbacks), b"sim-test 1.0") == 0

    # Port callbacks (called by the C++ device inside tmn_sim_poll).
    def _link_read(self, user, buffer, capacity):
        count = min(capacity, len(self.to_device))
        ctypes.memmove(buffer, bytes(self.to_device[:count]), count)
        del self.to_device[:count]
        return count

    def _link_write(self, user, data, size):
        chunk = ctypes.string_at(data, size)
        self.sent_by_device += chunk
        if self.mute_after_bytes is not None and len(self.sent_by_device) > self.mute_after_bytes:
            self.muted = True
        if not self.muted:
            self.from_device += chunk
        return size

    def _capture(self, user, pixels, count):
        ctypes.memmove(pixels, self.frame.ctypes.data, count * 2)
        return 0

    def _invoke(self, user, model_input, context, context_size, model_output, size):
        self.invokes += 1
        ctypes.memmove(model_output, model_input, size)  # the identity model (context unused)
        return 0

    def _invoke_context(self, user, thumbnail, thumbnail_size, context, context_size):
        ctypes.memset(context, 0, context_size)  # a frame-context build: any context will do
        return 0

    def _micros(self, user):
        return (time.monotonic_ns() // 1000 + self.clock_offset_us) & 0xFFFFFFFF

    # pyserial-like port.
    @property
    def in_waiting(self) -> int:
        return len(self.from_device)

    def write(self, data: bytes) -> int:
        self.to_device += data
        return len(data)

    def read(self, size: int = 1) -> bytes:
        deadline = time.monotonic() + (self.timeout or 0)
        while True:
            self.pump()
            if self.from_device:
                data = bytes(self.from_device[:size])
                del self.from_device[:size]
                return data
            if time.monotonic() >= deadline:
                return b""
            time.sleep(0.0005)

    def pump(self, max_steps: int = 64) -> None:
        """Polls the device until it has output, or has read everything and is idle."""
        for _ in range(max_steps):
            if self.muted:
                return
            busy = self.lib.tmn_sim_poll()
            if self.from_device or (not busy and not self.to_device):
                return

    def poll(self, steps: int) -> None:
        """Advances the device by `steps` poll() calls, whether or not the host reads."""
        for _ in range(steps):
            self.lib.tmn_sim_poll()

    def run_until_idle(self) -> None:
        """Polls until the device has read everything and finished its job."""
        for _ in range(10000):
            if not self.lib.tmn_sim_poll() and not self.to_device:
                return

    def close(self) -> None:
        self.lib.tmn_sim_destroy()


@pytest.fixture
def board(sim_lib):
    board = SimBoard(sim_lib)
    yield board
    board.close()


def connect(port, **options) -> protocol.Connection:
    settings = dict(timeout=0.3, retries=6, stream_timeout=1.0)
    settings.update(options)
    return protocol.Connection(port, **settings)


# --------------------------------------------------------------------------------------------
# Python reference of the device's pixel pipeline (firmware/lib/tinymirnet_core/tinymirnet/pixels.h)


def round_half_away_from_zero(values: np.ndarray) -> np.ndarray:
    exact = values.astype(np.float64)  # float32 -> float64 is exact, so is + 0.5 here
    return (np.sign(exact) * np.floor(np.abs(exact) + 0.5)).astype(np.int64)


def input_table(scale: float, zero_point: int) -> np.ndarray:
    real = np.arange(256, dtype=np.float32) / np.float32(255.0)
    q = round_half_away_from_zero(real / np.float32(scale)) + zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def output_table(scale: float, zero_point: int) -> np.ndarray:
    real = (np.arange(-128, 128) - zero_point).astype(np.float32) * np.float32(scale)
    return np.clip(round_half_away_from_zero(real * np.float32(255.0)), 0, 255).astype(np.uint8)


def expected_identity_enhancement(frame: np.ndarray, info,
                                  pixel_format: int = protocol.PIXEL_FORMAT_YUV422) -> np.ndarray:
    """What the device returns with a model that copies its input to its output: the frame
    (captured, or uploaded with the default format: YUV422) after its exposure gain
    (model/exposure.py, target from model/tiling.json), quantized, then the output guards
    against the camera frame (model/exposure.py guard)."""
    from tinymirnet.model.exposure import guard, normalize_exposure
    from tinymirnet.model.tiling import load_tiling
    raw = protocol.frame_to_rgb888(frame, pixel_format, info.frame_width, info.frame_height)
    rgb = normalize_exposure(raw, load_tiling().exposure_target)
    q = input_table(info.input_scale, info.input_zero_point)[rgb]
    return guard(raw, output_table(info.output_scale, info.output_zero_point)[q.astype(np.int16) + 128])


# --------------------------------------------------------------------------------------------
# Codec (pure Python)


def test_frame_layout_matches_the_specification():
    frame = protocol.encode_frame(0x86, 0x1234, b"\x01\x02\x03")
    header = bytes([0xA5, 0x5A, protocol.VERSION, 0x86, 0x34, 0x12, 0x03, 0x00])
    check = (zlib.crc32(header) & 0xFFFF).to_bytes(2, "little")
    trailer = zlib.crc32(b"\x01\x02\x03").to_bytes(4, "little")
    assert frame == header + check + b"\x01\x02\x03" + trailer


def random_frames(rng: random.Random, count: int) -> list[protocol.Frame]:
    return [protocol.Frame(rng.randrange(256), rng.randrange(0x10000),
                           rng.randbytes(rng.choice([0, 1, 5, 200, 1742, 4096])))
            for _ in range(count)]


def test_decoder_reassembles_frames_from_any_chunking_and_skips_garbage():
    rng = random.Random(7)
    frames = random_frames(rng, 40)
    stream = b"".join(rng.randbytes(rng.randrange(30)).replace(b"\xa5", b"") +
                      protocol.encode_frame(f.type, f.seq, f.payload) for f in frames)
    decoder = protocol.FrameDecoder()
    decoded, position = [], 0
    while position < len(stream):
        step = rng.randrange(1, 300)
        decoded += decoder.feed(stream[position:position + step])
        position += step
    assert decoded == frames
    assert decoder.stats.crc_errors == 0 and decoder.pending_bytes == 0


def test_decoder_drops_a_corrupted_frame_and_resyncs():
    frames = [protocol.encode_frame(0x86, seq, bytes(100)) for seq in range(3)]
    damaged = bytearray(frames[1])
    damaged[50] ^= 0x04
    decoder = protocol.FrameDecoder()
    decoded = decoder.feed(frames[0] + bytes(damaged) + frames[2])
    assert [f.seq for f in decoded] == [0, 2]
    assert decoder.stats.crc_errors == 1


def test_decoder_recovers_the_frame_after_a_truncated_one():
    first = protocol.encode_frame(0x86, 1, bytes(range(200)))
    later = [protocol.encode_frame(0x86, seq, bytes(20)) for seq in (2, 3)]
    decoder = protocol.FrameDecoder()
    # 30 bytes of the first frame were lost: it takes in the next frames as its rest, fails
    # its CRC, and the rescan finds them.
    decoded = decoder.feed(first[:-30] + b"".join(later))
    assert [f.seq for f in decoded] == [2, 3]


def test_decoder_ignores_a_false_sync_marker_before_a_frame():
    frame = protocol.encode_frame(0x01, 9)
    assert [f.seq for f in protocol.FrameDecoder().feed(b"\xa5\x5a\x01" + frame)] == [9]


def test_messages_round_trip_through_pack_and_unpack():
    info = protocol.DeviceInfo(1, 3, 2048, 24, 4, 32, 160, 120, 35, 1 / 256, -128, 0.5, 3,
                               131072, 90000, 50000, "ab" * 32, "cd" * 32, 1, 60000, 5120,
                               2048, 0xC0FFEE, "fw 1.2.3")
    messages = [protocol.Hello(), protocol.Hello(0x12345678), protocol.Capture(3), protocol.Enhance(160, 120),
                protocol.UploadChunk(2044, b"xyz"), protocol.Run(), protocol.ReadFrame(8, 100),
                protocol.RunTile(34), info, protocol.Ack(4), protocol.Nak(2),
                protocol.ErrorReply(4, "busy"), protocol.FrameChunk(0, 38400, b"\x01\x02"),
                protocol.Tile(1, 24, 0, 2, 1, 1234, bytes(6)), protocol.Done(35, 100, 200)]
    for message in messages:
        frame = protocol.FrameDecoder().feed(protocol.encode_message(message, 5))[0]
        assert frame.type == message.TYPE and frame.seq == 5
        assert protocol.decode_message(frame) == message


def test_malformed_payloads_raise_protocol_error():
    with pytest.raises(protocol.ProtocolError, match="malformed INFO"):
        protocol.DeviceInfo.unpack(bytes(10))
    with pytest.raises(protocol.ProtocolError, match="malformed TILE"):
        protocol.Tile.unpack(protocol.Tile(0, 0, 0, 2, 2, 0, bytes(12)).pack()[:-1])
    with pytest.raises(protocol.ProtocolError, match="unknown message type"):
        protocol.decode_message(protocol.Frame(0x7F, 0, b""))


def test_rgb565_conversions():
    values = np.array([[0xFFFF, 0xF800, 0x07E0, 0x001F, (16 << 11) | (32 << 5) | 1]],
                      dtype=np.uint16)
    rgb = protocol.rgb565_to_rgb888(protocol.wire_bytes(values), 5, 1)
    assert rgb.tolist() == [[[255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255],
                             [0x84, 0x82, 0x08]]]
    assert np.array_equal(protocol.rgb888_to_rgb565(rgb), values)


def test_rgb888_to_rgb565_takes_the_nearest_level():
    """A photo sent to the board keeps its brightness and colour balance: each 8-bit value goes
    to the 5/6-bit level whose expansion is nearest, so a dark grey stays grey (truncation made
    dark frames darker and green)."""
    v = np.arange(256, dtype=np.int64)
    grey = np.stack([v, v, v], axis=-1)[None].astype(np.uint8)
    back = protocol.rgb565_to_rgb888(protocol.rgb888_to_rgb565(grey), 256, 1)[0].astype(np.int64)
    levels5 = np.array([(c << 3) | (c >> 2) for c in range(32)])
    levels6 = np.array([(c << 2) | (c >> 4) for c in range(64)])
    assert np.array_equal(np.abs(back[:, 0] - v), np.abs(levels5[None, :] - v[:, None]).min(1))
    assert np.array_equal(np.abs(back[:, 1] - v), np.abs(levels6[None, :] - v[:, None]).min(1))
    assert np.array_equal(back[:, 0], back[:, 2])
    assert np.array_equal(protocol.at_rgb565_precision(grey)[0], back)
    dark = back[:32]  # the values an exposure gain of 8 or more multiplies
    assert abs(dark[:, 0].mean() - v[:32].mean()) < 1.0 and abs(dark[:, 1].mean() - v[:32].mean()) < 1.0


# --------------------------------------------------------------------------------------------
# Cross-checks with the C++ core


def test_crc32_matches_zlib(sim_lib):
    rng = random.Random(3)
    for size in (0, 1, 9, 100, 4096):
        data = rng.randbytes(size)
        assert sim_lib.tmn_crc32(data, size) == zlib.crc32(data)


def test_cpp_and_python_encode_identical_frames(sim_lib):
    for frame in random_frames(random.Random(11), 30):
        out = ctypes.create_string_buffer(protocol.MAX_PAYLOAD_LIMIT + 64)
        size = sim_lib.tmn_encode_frame(frame.type, frame.seq, frame.payload,
                                        len(frame.payload), out, len(out))
        cpp_bytes = out.raw[:size]
        assert cpp_bytes == protocol.encode_frame(frame.type, frame.seq, frame.payload)
        assert protocol.FrameDecoder().feed(cpp_bytes) == [frame]


def test_cpp_decodes_python_frames(sim_lib):
    for frame in random_frames(random.Random(12), 30):
        data = b"\x00\xa5garbage" + protocol.encode_frame(frame.type, frame.seq, frame.payload)
        msg_type, seq = ctypes.c_uint8(), ctypes.c_uint16()
        payload = ctypes.create_string_buffer(protocol.MAX_PAYLOAD_LIMIT)
        size = sim_lib.tmn_decode_frame(data, len(data), ctypes.byref(msg_type),
                                        ctypes.byref(seq), payload, len(payload))
        assert (msg_type.value, seq.value, payload.raw[:size]) == (frame.type, frame.seq,
                                                                   frame.payload)


def test_exposure_gain_matches_python_bit_for_bit(sim_lib, config, board):
    """The C++ gain and exposed input table (pixels.h) equal model/exposure.py on frames from
    black to bright, and the compiled target is model/tiling.json's."""
    from tinymirnet.model.exposure import apply_gain_q8, exposure_gain_q8
    from tinymirnet.model.tiling import load_tiling
    assert config.exposure_target == load_tiling().exposure_target
    sim_lib.tmn_exposure_gain_q8.restype = ctypes.c_uint32
    sim_lib.tmn_exposure_gain_q8.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32,
                                             ctypes.c_uint32, ctypes.c_uint32]
    rng = np.random.default_rng(3)
    gains = set()
    for k, mask in enumerate([0x0000, 0x0821, 0x18E3, 0x39E7, 0x7BEF, 0xFFFF] * 2):
        frame = rng.integers(0, 0x10000, (12, 16), dtype=np.uint16) & np.uint16(mask)
        rgb = protocol.rgb565_to_rgb888(frame, 16, 12)
        for target in (0, 60, 120, 255):
            cpp = sim_lib.tmn_exposure_gain_q8(frame.ctypes.data, protocol.PIXEL_FORMAT_RGB565,
                                               16, 12, target)
            py = exposure_gain_q8(rgb, target) if target else 256
            assert cpp == py, (k, mask, target)
            gains.add(cpp)
    assert {256, 32 * 256} < gains and len(gains) > 6  # clamps and free gains all exercised
    info = connect(board).hello()
    info_input = input_table(info.input_scale, info.input_zero_point)
    for gain in (256, 300, 1000, 1920, 8192):
        table = (ctypes.c_int8 * 256)()
        sim_lib.tmn_exposed_input_table(gain, table)
        expected = info_input[apply_gain_q8(np.arange(256, dtype=np.uint8), gain)]
        assert list(table) == expected.tolist(), gain


def test_yuv422_conversion_matches_the_device_bit_for_bit(sim_lib):
    """The host's YUV422 -> RGB888 (pixels.py) is the device's (pixels.h), chroma interpolation
    included, on every (Y, U, V) corner and on random frames, and its exposure gain is taken on
    those RGB888 values."""
    from tinymirnet.model.exposure import exposure_gain_q8
    sim_lib.tmn_frame_to_rgb888.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32,
                                            ctypes.c_uint32, ctypes.c_void_p]
    sim_lib.tmn_exposure_gain_q8.restype = ctypes.c_uint32
    sim_lib.tmn_exposure_gain_q8.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32,
                                             ctypes.c_uint32, ctypes.c_uint32]
    rng = np.random.default_rng(5)
    levels = np.array([0, 1, 15, 16, 127, 128, 129, 235, 240, 254, 255], dtype=np.uint16)
    y, u, v = (g.ravel() for g in np.meshgrid(levels, levels, levels, indexing="ij"))
    corners = np.empty((y.size, 2), dtype=np.uint16)
    corners[:, 0] = y | u << 8
    corners[:, 1] = (255 - y) | v << 8
    frames = [corners.reshape(-1, 2), rng.integers(0, 0x10000, (24, 32), dtype=np.uint16)]
    for frame in frames:
        frame = np.ascontiguousarray(frame)
        height, width = frame.shape
        cpp = np.zeros((height, width, 3), dtype=np.uint8)
        sim_lib.tmn_frame_to_rgb888(frame.ctypes.data, protocol.PIXEL_FORMAT_YUV422, width, height,
                                    cpp.ctypes.data)
        py = protocol.yuv422_to_rgb888(frame, width, height)
        assert np.array_equal(cpp, py)
        gain = sim_lib.tmn_exposure_gain_q8(frame.ctypes.data, protocol.PIXEL_FORMAT_YUV422,
                                            width, height, 120)
        assert gain == exposure_gain_q8(py, 120)
    assert len(np.unique(cpp.reshape(-1, 3), axis=0)) > 500  # clamps and free values exercised


def test_yuv422_round_trip_keeps_luma_and_flat_colour():
    """rgb888_to_yuv422 then the device's conversion gives back a grey ramp exactly and a
    colour flat over four pixels (two pairs) within one level at their middle: YUV422 loses only
    chroma detail."""
    grey = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    assert np.array_equal(protocol.at_yuv422_precision(grey), grey)
    rng = np.random.default_rng(6)
    flat = np.repeat(rng.integers(0, 256, (30, 20, 3), dtype=np.uint8), 4, axis=1)
    back = protocol.at_yuv422_precision(flat).astype(int)
    middle = (slice(None), np.r_[1:80:4, 2:80:4])  # the pixels whose chroma neighbour is in the block
    assert np.abs(back - flat)[middle].max() <= 1
    # RGB565 loses up to 4 levels of red and blue on the same colours
    assert np.abs(protocol.at_rgb565_precision(flat).astype(int) - flat).max() >= 4
    with pytest.raises(ValueError, match="even width"):
        protocol.rgb888_to_yuv422(np.zeros((2, 3, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="unknown pixel format 7; known: 0 = RGB565, 1 = YUV422"):
        protocol.at_frame_precision(flat, 7)


def test_quantization_tables_match_the_documented_formulas(sim_lib, board):
    info = connect(board).hello()
    cpp_input = (ctypes.c_int8 * 256)()
    cpp_output = (ctypes.c_uint8 * 256)()
    sim_lib.tmn_input_table(cpp_input)
    sim_lib.tmn_output_table(cpp_output)
    assert list(cpp_input) == input_table(info.input_scale, info.input_zero_point).tolist()
    assert list(cpp_output) == output_table(info.output_scale, info.output_zero_point).tolist()


# --------------------------------------------------------------------------------------------
# Connection against the simulated device


def test_hello_reports_the_device(board, config):
    info = connect(board).hello()
    assert info.protocol_version == protocol.VERSION
    assert (info.frame_width, info.frame_height) == (config.frame_width, config.frame_height)
    assert (info.tile_size, info.halo, info.tile_count) == (config.tile_size, config.halo,
                                                            config.tile_count)
    assert info.max_payload == config.max_payload
    assert info.camera_ready and info.model_ready
    assert info.arena_used_bytes == 4321
    assert info.firmware_version == "sim-test 1.0"
    assert len(info.model_sha256) == 64


def test_capture_returns_raw_frame_and_enhanced_image(board):
    link = connect(board)
    info = link.hello()
    seen = []
    result = link.capture(on_tile=lambda tile: seen.append(tile.index))
    assert np.array_equal(result.raw_frame, board.frame)
    assert np.array_equal(result.enhanced.image, expected_identity_enhancement(board.frame, info))
    assert seen == list(range(info.tile_count))
    assert result.enhanced.done.tile_count == info.tile_count
    # DONE adds the context model's time (once per frame) to the tiles'.
    assert result.enhanced.done.inference_us >= result.enhanced.device_inference_us
    assert result.enhanced.repaired_tiles == [] and board.invokes == info.tile_count
    assert np.array_equal(link.read_frame(), board.frame)


@pytest.mark.parametrize("pixel_format", [protocol.PIXEL_FORMAT_YUV422, protocol.PIXEL_FORMAT_RGB565],
                         ids=["yuv422", "rgb565"])
@pytest.mark.parametrize("dark", [False, True], ids=["normal", "low-light"])
def test_enhance_uploads_a_frame(board, dark, pixel_format):
    link = connect(board)
    info = link.hello()
    assert info.camera_pixel_format == protocol.PIXEL_FORMAT_YUV422  # the simulated board's camera
    frame = pattern_frame(info.frame_width, info.frame_height, seed=5, dark=dark, pixel_format=pixel_format)
    result = link.enhance(frame, pixel_format=pixel_format)
    assert np.array_equal(result.image, expected_identity_enhancement(frame, info, pixel_format))
    assert np.array_equal(link.read_frame(), frame)
    tile = link.run_tile(info.tile_count - 1)
    assert np.array_equal(tile.pixels(), result.image[tile.y:, tile.x:])


def test_device_errors_are_raised_with_code_and_text(sim_lib):
    board = SimBoard(sim_lib, camera=False)
    link = connect(board)
    with pytest.raises(protocol.DeviceError, match="NO_FRAME") as no_frame:
        link.run()
    assert no_frame.value.code == protocol.ErrorCode.NO_FRAME
    with pytest.raises(protocol.DeviceError, match="CAMERA_FAILED.*camera did not start"):
        link.capture()
    with pytest.raises(protocol.DeviceError, match="BAD_ARGUMENT"):
        link.run_tile(1000)
    with pytest.raises(ValueError, match="160x120 YUV422 frame of 38400 bytes"):
        link.upload(b"\x00" * 10)
    assert link.hello().firmware_version == "sim-test 1.0"  # still fine after all that
    board.close()


def test_payload_efficiency_of_tile_traffic(board):
    link = connect(board)
    info = link.hello()
    link.capture(send_frame=False)
    frames = protocol.FrameDecoder().feed(bytes(board.sent_by_device))
    tiles = [f for f in frames if f.type == MessageType.TILE]
    assert len(tiles) == info.tile_count
    pixel_bytes = sum(len(f.payload) - protocol.Tile._LAYOUT.size for f in tiles)
    wire_bytes = sum(len(f.payload) + protocol.FRAMING_BYTES for f in tiles)
    full_tile = max(tiles, key=lambda f: len(f.payload))
    assert len(full_tile.payload) == 14 + info.tile_size ** 2 * 3
    assert len(full_tile.payload) / (len(full_tile.payload) + protocol.FRAMING_BYTES) >= 0.95
    assert pixel_bytes / wire_bytes >= 0.95  # all tiles, counting only pixels as payload


def serve_over_pty(board: SimBoard, master: int, stop: threading.Event) -> None:
    """Shuttles bytes between a pty master and the simulated device (a background thread)."""
    os.set_blocking(master, False)
    outgoing = b""
    while not stop.is_set():
        try:
            board.write(os.read(master, 4096))
        except BlockingIOError:
            pass
        board.pump()
        outgoing += bytes(board.from_device)
        board.from_device.clear()
        try:
            outgoing = outgoing[os.write(master, outgoing):] if outgoing else b""
        except BlockingIOError:
            pass
        if not outgoing:
            time.sleep(0.001)


def test_connection_opens_a_real_serial_port(board):
    pytest.importorskip("serial")
    master, slave = os.openpty()
    stop = threading.Event()
    server = threading.Thread(target=serve_over_pty, args=(board, master, stop))
    server.start()
    try:
        with protocol.Connection.open(os.ttyname(slave)) as link:
            info = link.hello()
            result = link.capture()
        assert link.name == os.ttyname(slave)
        assert np.array_equal(result.raw_frame, board.frame)
        assert np.array_equal(result.enhanced.image,
                              expected_identity_enhancement(board.frame, info))
    finally:
        stop.set()
        server.join()
        os.close(master)
        os.close(slave)


# --------------------------------------------------------------------------------------------
# Faults and recovery


def test_retransmission_recovers_corrupted_frames_both_ways(board):
    faulty = link_faults.FaultyLink(board, seed=21, tx=Faults(corrupt=0.01),
                                    rx=Faults(corrupt=0.002))
    link = connect(faulty)
    for _ in range(25):
        assert link.hello().firmware_version == "sim-test 1.0"
    assert faulty.tx_counts.corrupted > 0 and faulty.rx_counts.corrupted > 0
    assert link.stats.retransmissions > 0
    assert link.stats.naks > 0  # a corrupted payload with an intact header is NAKed


def test_capture_and_enhance_survive_random_link_faults(board):
    faults = Faults(corrupt=2e-5, drop=2e-5, duplicate=2e-5, repeat=0.02, delay=0.05,
                    max_delay=0.005)
    faulty = link_faults.FaultyLink(board, seed=5, tx=faults, rx=faults)
    link = connect(faulty)
    info = link.hello()
    expected = expected_identity_enhancement(board.frame, info)
    for _ in range(2):
        captured = link.capture()
        assert np.array_equal(captured.raw_frame, board.frame)
        assert np.array_equal(captured.enhanced.image, expected)
    frame = pattern_frame(info.frame_width, info.frame_height, seed=9)
    enhanced = link.enhance(frame)
    assert np.array_equal(enhanced.image, expected_identity_enhancement(frame, info))
    assert faulty.tx_counts.total > 0 and faulty.rx_counts.total > 0
    repairs = link.stats.repaired_tiles + link.stats.repaired_frame_chunks
    assert link.stats.retransmissions + repairs > 0


class StepClock:
    """A clock that moves only when read: 10 ms a reading. The timeout logic's own time, free of
    the machine's load."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.01
        return self.now


def test_silent_device_raises_a_clear_timeout_in_bounded_time(board):
    board.muted = True
    clock = StepClock()
    link = connect(board, timeout=0.2, retries=3, clock=clock)
    with pytest.raises(protocol.DeviceTimeout) as timeout:
        link.hello()
    assert str(timeout.value) == "no answer from device on sim to HELLO after 3 tries (0.2 s each)"
    assert 0.6 <= clock.now < 0.7  # three waits of 0.2 s, then it gives up


def test_device_going_silent_mid_stream_raises_in_bounded_time(sim_lib):
    board = SimBoard(sim_lib, mute_after_bytes=20000)  # hangs in the middle of the raw frame
    link = connect(board, timeout=0.2, retries=2, stream_timeout=0.5)
    link.hello()
    link.clock = clock = StepClock()
    with pytest.raises(protocol.DeviceTimeout,
                       match="no answer from device on sim to READ_FRAME after 2 tries"):
        link.capture()
    # the stream's wait, two tries of READ_FRAME, and the clock's readings while the frame flowed
    assert clock.now < 0.5 + 2 * 0.2 + 0.5
    board.close()


def test_device_recovers_after_host_vanishes_mid_upload(board, config):
    chunk = bytes(config.max_payload - 4)
    board.write(protocol.encode_message(protocol.Enhance(config.frame_width,
                                                         config.frame_height), 100))
    board.write(protocol.encode_message(protocol.UploadChunk(0, chunk), 101))
    truncated = protocol.encode_message(protocol.UploadChunk(len(chunk), chunk), 102)
    board.write(truncated[:len(truncated) // 2])
    board.run_until_idle()
    board.clock_offset_us += config.frame_gap_timeout_us + 1000  # the host is gone a while
    board.run_until_idle()
    board.from_device.clear()  # the old session's ACKs

    link = connect(board)  # a new session
    info = link.hello()
    with pytest.raises(protocol.DeviceError, match="upload incomplete"):
        link.run()
    frame = pattern_frame(info.frame_width, info.frame_height, seed=4)
    assert np.array_equal(link.enhance(frame).image, expected_identity_enhancement(frame, info))


def test_device_recovers_after_garbage_and_an_abandoned_job(board):
    board.write(random.Random(1).randbytes(3000))
    board.write(protocol.encode_message(protocol.Capture(), 7))
    for _ in range(5):  # the host reads a few stream messages, then goes away...
        board.read(2000)
    board.poll(3)  # ...while the device streams on
    link = connect(board)  # a new session: HELLO aborts the old job
    info = link.hello()
    result = link.capture(send_frame=False)
    assert np.array_equal(result.enhanced.image, expected_identity_enhancement(board.frame, info))
    assert link.stats.stale_frames > 0  # the old job's leftovers were ignored
