"""The virtual board (host/virtual_board.py) and the device commands of the CLI
(host/board_link.py, host/board_frames.py), end to end over real pseudo-terminals through pyserial: the firmware
core compiled for the host, its model port running the shipped int8 model in the TFLM
runtime, must give exactly what the host's TFLM pipeline gives, tile by tile and stitched;
handshake mismatches, link faults, a board that hangs mid-stream, a port that vanishes or does
not exist must each end with one clear error, no half-written output, and a board that
still accepts the next command. The float reference uses small weights built here."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

serial = pytest.importorskip("serial")

from tinymirnet.host import board_frames, board_link  # noqa: E402
from tinymirnet.host.host_model import HostModel  # noqa: E402
from tinymirnet.model.inference import load_enhancer  # noqa: E402
from tinymirnet.host.cli import main  # noqa: E402
from tinymirnet.host.link_faults import Faults, FaultyLink  # noqa: E402
from tinymirnet.host.protocol import (PIXEL_FORMAT_RGB565, PIXEL_FORMAT_YUV422,  # noqa: E402
                                      Connection, at_frame_precision, frame_to_rgb888, rgb888_to_frame)
from tinymirnet.host.protocol import NO_CONTEXT_MODEL  # noqa: E402
from tinymirnet.host.virtual_board import VirtualBoard, VirtualBoardError  # noqa: E402
from tinymirnet.model.paths import CONTEXT_INT8_NAME as CONTEXT_MODEL_NAME  # noqa: E402
from tinymirnet.model.paths import DEFAULT_INT8_MODEL as DEFAULT_MODEL  # noqa: E402
from tinymirnet.model.samples import resize_to  # noqa: E402
from tinymirnet.model.tiling import load_tiling, tile_grid, tile_input  # noqa: E402
from tinymirnet.quantize.tflm import dequantize_pixels, quantize_pixels  # noqa: E402

OUTPUT_FILES = {"raw.png", "device.png", "float.png", "side_by_side.png", "report.json"}


@pytest.fixture(scope="module")
def host() -> HostModel:
    """The shipped int8 model(s) on the host TFLM (a frame-context network: both)."""
    return HostModel.load(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def board():
    with VirtualBoard() as board:
        yield board


@pytest.fixture(scope="module")
def expected(board, host) -> np.ndarray:
    """The host's int8 pipeline on the virtual camera's frame."""
    tiling = load_tiling()
    raw = frame_to_rgb888(board.camera.frames[0], board.camera.pixel_format, tiling.frame_width,
                          tiling.frame_height)
    return host_int8(host, raw)


def host_int8(host: HostModel, raw888: np.ndarray) -> np.ndarray:
    """The board's whole pipeline on the host (exposure gain, [context model,] tiles, TFLM)."""
    return host.int8_frame(raw888)


def open_link(port: str, **options) -> Connection:
    settings = dict(timeout=0.5, retries=4, stream_timeout=3.0)
    settings.update(options)
    return Connection.open(port, **settings)


def host_tile(host: HostModel, raw888: np.ndarray, tile) -> np.ndarray:
    """TFLM on one tile's input, cut from the exposure-normalised frame, quantized and
    dequantized as the firmware's tables do (with the frame's context vector for a
    frame-context network, computed here on its own from the frame's thumbnail), then the
    output guards against the camera pixels (model/exposure.py guard)."""
    from tinymirnet.model.exposure import guard, normalize_exposure
    t = load_tiling()
    frame = normalize_exposure(raw888, t.exposure_target)
    model = host.tflm
    x = quantize_pixels(tile_input(frame, tile, t.tile, t.halo), model.input_quant)
    y = dequantize_pixels(model.invoke(x, host.context_of(frame)), model.output_quant)
    kept = (slice(t.halo, t.halo + tile.h), slice(t.halo, t.halo + tile.w))
    return guard(raw888[tile.y:tile.y + tile.h, tile.x:tile.x + tile.w], y[kept])


def no_leftovers(folder: Path) -> bool:
    return not folder.exists() or not any(p.name.endswith(".tmp") for p in folder.rglob("*"))


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


# --------------------------------------------------------------------------------------------
# Bit-exactness over the pty


def test_capture_over_pty_equals_host_tflm_tile_by_tile(board, host, expected):
    tiling = load_tiling()
    with open_link(board.port) as link:
        info = link.hello()
        result = link.capture()
    assert info.model_sha256 == board.model_sha256 and info.model_ready and info.camera_ready
    assert info.camera_pixel_format == PIXEL_FORMAT_YUV422 == result.pixel_format
    assert np.array_equal(result.raw_frame, board.camera.frames[0])
    raw = result.raw_rgb888
    tiles = tile_grid(tiling.frame_width, tiling.frame_height, tiling.tile)
    assert [t.index for t in result.enhanced.tiles] == [t.index for t in tiles]
    for device_tile, grid_tile in zip(result.enhanced.tiles, tiles):
        assert (device_tile.x, device_tile.y, device_tile.width, device_tile.height) == (
            grid_tile.x, grid_tile.y, grid_tile.w, grid_tile.h)
        assert np.array_equal(device_tile.pixels(), host_tile(host, raw, grid_tile)), grid_tile
        assert device_tile.invoke_us > 0
    assert np.array_equal(result.enhanced.image, host_int8(host, raw))
    assert np.array_equal(result.enhanced.image, expected)
    # DONE adds the context model's time (once per frame) to the tiles'.
    assert result.enhanced.done.inference_us >= result.enhanced.device_inference_us


@pytest.mark.parametrize("pixel_format", [PIXEL_FORMAT_YUV422, PIXEL_FORMAT_RGB565], ids=["yuv422", "rgb565"])
def test_uploaded_frame_is_enhanced_bit_exactly(board, host, pixel_format):
    tiling = load_tiling()
    rng = np.random.default_rng(3)
    image = (rng.random((tiling.frame_height, tiling.frame_width, 3)) ** 3 * 255).astype(np.uint8)
    frame = rgb888_to_frame(image, pixel_format)
    with open_link(board.port) as link:
        result = link.enhance(frame, pixel_format=pixel_format)
        assert np.array_equal(link.read_frame(), frame)
    raw = frame_to_rgb888(frame, pixel_format, tiling.frame_width, tiling.frame_height)
    assert np.array_equal(result.image, host_int8(host, raw))


# --------------------------------------------------------------------------------------------
# The CLI with --port sim


def test_cli_capture_on_the_virtual_board(tmp_path, small_float_weights, host, capsys):
    out = tmp_path / "cap"
    assert main(["capture", "--port", "sim", "--out", str(out),
                 "--weights", str(small_float_weights)]) == 0
    captured = capsys.readouterr()
    tiles = load_tiling().tiles_x * load_tiling().tiles_y
    assert f"{tiles}/{tiles} tiles" in captured.err and "bit-exact" in captured.out
    assert {p.name for p in out.iterdir()} == OUTPUT_FILES
    report = json.loads((out / "report.json").read_text())
    assert report["device_vs_host_int8"] == {"differing_values": 0, "total_values": 57600,
                                             "max_abs_diff": 0, "bit_exact": True,
                                             "differing_tiles": []}
    assert len(report["tiles"]) == tiles and all(t["invoke_us"] > 0 for t in report["tiles"])
    times = report["device_time_us"]
    assert times["inference_total"] == sum(t["invoke_us"] for t in report["tiles"]) + (times["context_model"] or 0)
    assert (times["context_model"] is not None and times["context_model"] > 0) == (host.context_tflite is not None)
    psnr = report["psnr_db"]
    assert psnr["device_int8_vs_host_float"] == psnr["host_int8_vs_host_float"]
    assert report["device"]["model_sha256"] == report["host_model"]["sha256"]
    # The written images: device.png is the host's int8 pipeline on raw.png, finished by the host.
    raw = np.asarray(Image.open(out / "raw.png"))
    device = np.asarray(Image.open(out / "device.png"))
    assert raw.shape == (120, 160, 3)
    assert np.array_equal(device, host.finished_frame(raw))
    assert not np.array_equal(device, host_int8(host, raw))
    assert Image.open(out / "side_by_side.png").size[0] > 3 * 160


def test_a_device_frame_that_differs_is_scored_and_finished_on_its_own(board, host, small_float_weights):
    """A board whose tiles differ from the host's (another TFLM build, a fault): the report names
    the tile, and device and host int8 frames are each finished from their own values."""
    from tinymirnet.model.lightness_order import finish
    with open_link(board.port) as link:
        captured = link.capture()
    raw, result = captured.raw_rgb888, captured.enhanced
    tile = result.tiles[5]
    changed = result.image.copy()
    block = changed[tile.y:tile.y + tile.height, tile.x:tile.x + tile.width]
    block[:] = np.clip(block.astype(np.int16) + 9, 0, 255).astype(np.uint8)
    enhancer = load_enhancer(small_float_weights)
    images, report = board_frames.score_frame(raw, dataclasses.replace(result, image=changed), host, enhancer)
    cmp_ = report["device_vs_host_int8"]
    assert not cmp_["bit_exact"] and cmp_["differing_tiles"] == [5] and 0 < cmp_["max_abs_diff"] <= 9
    assert np.array_equal(images["device"], finish(raw, changed))
    assert np.array_equal(images["host_int8"], host.finished_frame(raw))
    assert not np.array_equal(images["device"], images["host_int8"])
    assert report["psnr_db"]["device_int8_vs_host_float"] != report["psnr_db"]["host_int8_vs_host_float"]


def test_cli_enhance_uploads_images_to_the_virtual_board(tmp_path, small_float_weights,
                                                         host, capsys):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(1)
    wide = (rng.random((90, 200, 3)) * 70).astype(np.uint8)
    Image.fromarray(wide).save(src / "wide.png")
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    code = main(["enhance", "--port", "sim", str(src / "wide.png"), str(src / "broken.jpg"),
                 "--out", str(out), "--weights", str(small_float_weights)])
    assert code == 1  # the unreadable file fails, the other one is enhanced
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "broken.jpg: not a readable image" in err[0]
    assert {p.name for p in (out / "wide").iterdir()} == OUTPUT_FILES
    # Scaled to cover 160x120 and centre-cropped, then the camera's YUV422: exactly what raw.png holds.
    expected_raw = at_frame_precision(resize_to(wide, 160, 120), PIXEL_FORMAT_YUV422)
    raw = np.asarray(Image.open(out / "wide" / "raw.png"))
    assert np.array_equal(raw, expected_raw)
    report = json.loads((out / "wide" / "report.json").read_text())
    assert report["device_vs_host_int8"]["bit_exact"] and report["source_size"] == [200, 90]
    assert np.array_equal(np.asarray(Image.open(out / "wide" / "device.png")),
                          host.finished_frame(raw))


# --------------------------------------------------------------------------------------------
# Handshake


def test_handshake_mismatch_is_one_clear_error_before_any_work(tmp_path, small_float_weights,
                                                               capsys):
    other = tmp_path / "other.tflite"
    other.write_bytes(DEFAULT_MODEL.read_bytes() + b"tampered")
    context = DEFAULT_MODEL.with_name(CONTEXT_MODEL_NAME)
    if context.is_file():  # a frame-context network: its context model goes beside it
        shutil.copyfile(context, tmp_path / CONTEXT_MODEL_NAME)
    host = HostModel.load(other)
    out = tmp_path / "never"
    code = main(["capture", "--port", "sim", "--int8", str(other), "--out", str(out),
                 "--weights", str(small_float_weights)])
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    shipped = HostModel.load().sha256
    assert f"model sha256 {shipped} (device) != {host.sha256} (host, {other})" in err
    assert not out.exists()


def test_handshake_names_geometry_differences(board):
    host = HostModel.load()
    assert board_link.handshake_mismatches(board.info, host) == []
    tiling = load_tiling()
    other = dataclasses.replace(board.info, tile_size=24, model_input_size=30, frame_width=176,
                                tile_count=42, input_scale=0.5)
    problems = board_link.handshake_mismatches(other, host)
    assert f"tile 24 (device) != {tiling.tile} (host, the tiling of {host.tflite.parent})" in problems
    assert f"model input 30 (device) != {tiling.model_input} (host, the tiling of {host.tflite.parent})" in problems
    assert f"frame 176x120 (device) != 160x120 (host, the tiling of {host.tflite.parent})" in problems
    quant = board_link.handshake_mismatches(dataclasses.replace(board.info, input_scale=0.5),
                                            host)
    assert len(quant) == 1 and quant[0].startswith("input quantization scale 0.5 zero point")
    # A board with another context model, or none (a one-model firmware).
    for device_context in ("ab" * 32, NO_CONTEXT_MODEL):
        if device_context == host.context_sha256:
            continue
        problems = board_link.handshake_mismatches(
            dataclasses.replace(board.info, context_model_sha256=device_context), host)
        assert len(problems) == 1 and problems[0].startswith("context model "), problems


def test_frame_context_board_runs_its_context_model_once_per_frame(board, host, tmp_path):
    """The shipped network is a frame-context one: the board reports it, runs the context
    model once per captured frame, and a missing context model is one clear error."""
    assert board.info.frame_context == (host.context_tflite is not None)
    if not board.info.frame_context:
        pytest.skip("the shipped network has one model")
    before = board.stats.context_invokes, board.stats.invokes
    with open_link(board.port) as link:
        link.capture()
    tiles = board.config["tile_count"]
    assert (board.stats.context_invokes, board.stats.invokes) == (before[0] + 1, before[1] + tiles)
    lonely = tmp_path / "tile_only.tflite"
    shutil.copyfile(DEFAULT_MODEL, lonely)
    with pytest.raises(board_link.CommandError) as error:
        HostModel.load(lonely)
    assert "context model" in str(error.value) and "\n" not in str(error.value)


def test_virtual_board_refuses_a_model_that_is_not_compiled_in(tmp_path):
    other = tmp_path / "other.tflite"
    other.write_bytes(DEFAULT_MODEL.read_bytes() + b"tampered")
    with pytest.raises(VirtualBoardError) as error:
        VirtualBoard(model_path=other).start()
    text = str(error.value)
    assert "is not the model compiled into the simulator" in text
    assert "make -C firmware/tests sim" in text


# --------------------------------------------------------------------------------------------
# Faults


def test_capture_survives_seeded_link_faults_in_both_directions(board, expected):
    faulty = None

    def fault_injector(port):
        nonlocal faulty
        faulty = FaultyLink(port, seed=11,
                            tx=Faults(corrupt=0.01, drop=0.005, duplicate=0.005, repeat=0.05),
                            rx=Faults(corrupt=3e-5, drop=3e-5, duplicate=3e-5, repeat=0.01,
                                      delay=0.02, max_delay=0.003))
        return faulty
    with Connection.open(board.port, "sim", wrap=fault_injector, timeout=0.3, retries=8,
                         stream_timeout=2.0) as link:
        for _ in range(25):  # commands get through a lossy host -> device direction
            link.hello()
        faulty.tx = Faults(corrupt=0.002, drop=0.002, duplicate=0.002, repeat=0.02)
        for _ in range(2):
            result = link.capture()
            assert np.array_equal(result.raw_frame, board.camera.frames[0])
            assert np.array_equal(result.enhanced.image, expected)
    assert faulty.tx_counts.total > 0 and faulty.rx_counts.total > 0
    stats = link.stats
    assert stats.retransmissions + stats.repaired_tiles + stats.repaired_frame_chunks > 0


def test_board_that_hangs_mid_stream_gives_a_clear_error_and_no_partial_output(
        tmp_path, small_float_weights, expected, capsys):
    with VirtualBoard() as board:
        board.stall_after(60000)  # the raw frame and part of the tiles, then silence
        out = tmp_path / "cap"
        started = time.monotonic()
        code = main(["capture", "--port", board.port, "--timeout", "1", "--out", str(out),
                     "--weights", str(small_float_weights)])
        elapsed = time.monotonic() - started
        assert code == 1 and elapsed < 10
        assert board.wait_stalled(0)
        err = error_lines(capsys.readouterr().err)
        assert len(err) == 1 and "no answer from device on" in err[0], err
        assert not out.exists() or not any(out.iterdir())
        assert no_leftovers(tmp_path)
        # The hang ends: the next session's first command is answered, and works.
        board.resume()
        with open_link(board.port) as link:
            assert link.hello().model_sha256 == board.model_sha256
            assert np.array_equal(link.capture().enhanced.image, expected)


def test_unplugged_board_is_one_clear_line(tmp_path, small_float_weights, capsys):
    board = VirtualBoard().start()
    board.stall_after(20_000)  # mid-capture, wherever the host's speed has got to ...
    unplug = threading.Thread(target=lambda: board.wait_stalled(30) and board.stop())
    unplug.start()  # ... the pty vanishes
    try:
        code = main(["capture", "--port", board.port, "--out", str(tmp_path / "cap"),
                     "--weights", str(small_float_weights)])
    finally:
        unplug.join()
    assert code == 1
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "lost the serial port" in err[0], err
    assert not (tmp_path / "cap").exists()


def test_missing_and_busy_ports_are_one_clear_line(board, small_float_weights, capsys):
    weights = ["--weights", str(small_float_weights)]
    assert main(["capture", "--port", "/dev/tinymirnet-no-such-port", *weights]) == 1
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "no such port" in err[0]
    holder = serial.Serial(board.port, exclusive=True)
    try:
        assert main(["capture", "--port", board.port, *weights]) == 1
    finally:
        holder.close()
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "the port is busy" in err[0]


# --------------------------------------------------------------------------------------------
# `tinymirnet sim` and `devices`


def _signal_state(pid: int) -> str:
    """The signal masks and the threads' kernel wait channels of a process, for a failure
    message."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        masks = " ".join(l.replace("\t", "") for l in lines if l.startswith(("SigBlk", "SigIgn", "SigCgt")))
        waits = [Path(t, "wchan").read_text() for t in Path(f"/proc/{pid}/task").iterdir()]
        return f"{masks}; threads waiting in {waits}"
    except OSError as e:
        return f"no /proc state: {e}"


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_sim_command_serves_a_camera_dir_until_ctrl_c(tmp_path, stop_signal):
    camera = tmp_path / "camera"
    camera.mkdir()
    rng = np.random.default_rng(2)
    images = [(rng.random((240, 300, 3)) * 80).astype(np.uint8),
              (rng.random((100, 90, 3)) * 80).astype(np.uint8)]
    for name, img in zip(("a.png", "b.jpg"), images):
        Image.fromarray(img).save(camera / name, quality=95)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    sim = subprocess.Popen([sys.executable, "-m", "tinymirnet.host.cli", "sim", "--camera-dir",
                            str(camera)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env=env)
    try:
        port = sim.stdout.readline().strip()
        assert port.startswith("/dev/"), port + sim.stderr.read()
        assert "virtual board ready on " + port in sim.stdout.readline()
        from tinymirnet.model.data import read_rgb
        with open_link(port) as link:
            link.hello()
            for name in ("a.png", "b.jpg", "a.png"):  # the camera cycles through the folder
                raw = link.capture(enhance=False).raw_frame
                assert np.array_equal(raw, rgb888_to_frame(
                    resize_to(read_rgb(camera / name), 160, 120), PIXEL_FORMAT_YUV422))
    finally:
        sim.send_signal(stop_signal)
        # Stopping takes under a second unloaded and ~4 s on 2 loaded cores (interpreter
        # teardown).
        try:
            out, err = sim.communicate(timeout=20)
        except subprocess.TimeoutExpired:  # never leave a board process behind
            status = _signal_state(sim.pid)
            sim.kill()
            out, err = sim.communicate()
            err = f"did not stop within 20 s of {signal.Signals(stop_signal).name} ({status})\n" + err
    assert sim.returncode == 0, err
    assert "virtual board stopped" in out


def test_devices_finds_nano33ble_by_usb_ids(monkeypatch, capsys):
    from serial.tools import list_ports

    class Port:
        def __init__(self, device, vid, pid, description="USB serial"):
            self.device, self.vid, self.pid = device, vid, pid
            self.serial_number, self.description = "ABC", description

    ports = [Port("/dev/ttyACM0", 0x2341, 0x805A), Port("/dev/ttyUSB0", 0x0403, 0x6001),
             Port("/dev/ttyACM1", 0x2341, 0x005A)]
    monkeypatch.setattr(list_ports, "comports", lambda: ports)
    assert main(["devices"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "Arduino Nano 33 BLE (2341:805A" in out[0]
    assert "/dev/ttyACM1" in out[1] and "bootloader" in out[1]
    assert board_link.auto_port() == "/dev/ttyACM0"
    monkeypatch.setattr(list_ports, "comports", lambda: ports[1:])
    assert main(["devices"]) == 0  # a board in its bootloader is still a board found
    with pytest.raises(board_link.CommandError, match="bootloader"):
        board_link.auto_port()
    monkeypatch.setattr(list_ports, "comports", lambda: ports[1:2])
    assert main(["devices"]) == 1
    assert "no Arduino Nano 33 BLE found" in capsys.readouterr().out
    from tinymirnet.model.paths import DEFAULT_WEIGHTS
    assert main(["capture", "--port", "auto", "--weights", str(DEFAULT_WEIGHTS)]) == 1
    assert "no Arduino Nano 33 BLE found" in capsys.readouterr().err


def test_bench_link_writes_json_and_markdown(tmp_path, capsys):
    report = tmp_path / "reports" / "bench.json"
    assert main(["bench-link", "--frames", "1", "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["tile_traffic"]["payload_efficiency"] >= 0.95
    tiling = load_tiling()
    assert data["tile_traffic"]["messages"] == tiling.tiles_x * tiling.tiles_y + 1  # the TILEs and DONE
    capture = data["capture_frame"]
    assert capture["end_to_end_s"] >= capture["inference_s"] > 0 and capture["ratio"] >= 1
    assert data["throughput"]["raw_frame_read"]["wire_bytes_per_s"] > 0
    assert "| CAPTURE (raw frame + tiles) |" in report.with_suffix(".md").read_text()
    assert no_leftovers(tmp_path)
    assert "ratio" in capsys.readouterr().out
