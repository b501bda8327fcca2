"""The device commands of the CLI: `devices`, `capture`, `enhance --port`, `sim`.

Every device command starts with a handshake (HELLO): the board's model (sha256 of its int8
flatbuffer) and geometry (tile, halo, model input, frame, quantization) must equal the host's
(quantize/artifacts/tiny_mirnet_int8.tflite or --int8, with the tiling its quantize folder names,
else model/tiling.json's); any difference is one error naming both values, before anything is
computed.

Then the board enhances a frame tile by tile (a camera capture, or an uploaded image); the
host stitches the tiles and, on the same raw frame with the same tiling, runs

* the float network (--weights) tile by tile: the quality reference;
* the host's int8 pipeline in the TFLM runtime (int8_tiled, or int8_frame_context for a
  frame-context network): what the board must reproduce
  (bit for bit with TFLM's reference kernels; CMSIS-NN may differ by an LSB).

Outputs per frame, each written atomically, report.json last: raw.png (the RGB888 of the
YUV422 frame the board enhanced, as the board converts it), device.png, float.png, side_by_side.png, report.json.

`--port` takes a serial device (/dev/ttyACM0, COM3), `auto` (the one Nano 33 BLE found by
USB VID/PID) or `sim` (a virtual board started in-process for the command). Serial and
protocol failures end the command with one line on stderr and exit code 1.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from tinymirnet.model.files import report_path

from .protocol import NO_CONTEXT_MODEL, PIXEL_FORMAT_NAMES

# USB IDs of the Arduino Nano 33 BLE (and BLE Sense, the same board definition), from
# ArduinoCore-mbed's boards.txt (nano33ble.vid.N / pid.N).
ARDUINO_VID = 0x2341
NANO33BLE_PIDS = {
    0x805A: "running a sketch",
    0x015A: "running a sketch (other USB configuration)",
    0x025A: "running a sketch (other USB configuration)",
    0x005A: "in the bootloader (double-tapped reset): upload the tinymirnet firmware first",
}
BOOTLOADER_PIDS = {0x005A}

# Connection settings: a board may need seconds per tile; the virtual board answers at once.
BOARD_LINK = dict(timeout=1.0, retries=3, stream_timeout=30.0)
SIM_LINK = dict(timeout=0.5, retries=4, stream_timeout=5.0)
# The QEMU board answers commands at once but computes tiles at (up to) a board's pace.
QEMU_LINK = dict(timeout=1.0, retries=3, stream_timeout=30.0)
VIRTUAL_PORTS = ("sim", "qemu")


class CommandError(Exception):
    """A device command cannot go on; the message is the one line the user sees."""


class HandshakeError(CommandError):
    """The board runs another model or geometry than the host."""


# --------------------------------------------------------------------------------------------
# Finding and opening boards


@dataclass
class BoardPort:
    device: str
    vid: int | None
    pid: int | None
    serial_number: str | None
    description: str

    @property
    def is_nano33ble(self) -> bool:
        return self.vid == ARDUINO_VID and self.pid in NANO33BLE_PIDS

    @property
    def in_bootloader(self) -> bool:
        return self.is_nano33ble and self.pid in BOOTLOADER_PIDS

    def line(self) -> str:
        ids = f"{self.vid:04X}:{self.pid:04X}" if self.vid is not None else "no USB ids"
        serial = f", serial {self.serial_number}" if self.serial_number else ""
        if self.is_nano33ble:
            return f"{self.device}  Arduino Nano 33 BLE ({ids}{serial}), {NANO33BLE_PIDS[self.pid]}"
        return f"{self.device}  {self.description or '?'} ({ids}{serial})"


def list_serial_ports() -> list[BoardPort]:
    from serial.tools import list_ports
    return [BoardPort(p.device, p.vid, p.pid, p.serial_number, p.description or "")
            for p in sorted(list_ports.comports(), key=lambda p: p.device)]


def find_boards() -> list[BoardPort]:
    """Serial ports whose USB VID/PID is an Arduino Nano 33 BLE's."""
    return [p for p in list_serial_ports() if p.is_nano33ble]


def _wanted_ids() -> str:
    return "/".join(f"{ARDUINO_VID:04X}:{pid:04X}" for pid in NANO33BLE_PIDS)


def auto_port() -> str:
    """The one Nano 33 BLE running a sketch; CommandError when there is none or several."""
    boards = find_boards()
    ready = [b for b in boards if not b.in_bootloader]
    if len(ready) == 1:
        return ready[0].device
    if len(ready) > 1:
        raise CommandError("several Nano 33 BLE boards found ("
                           + ", ".join(b.device for b in ready) + "); choose one with --port")
    if boards:
        raise CommandError(f"the Nano 33 BLE on {boards[0].device} is in its bootloader; upload "
                           "the tinymirnet firmware (pio run -t upload) or press reset once")
    raise CommandError(f"no Arduino Nano 33 BLE found (USB {_wanted_ids()}); plug it in, give "
                       "--port PATH, or use --port qemu or --port sim for a virtual board")


def _link_settings(port: str, stream_timeout: float | None) -> dict:
    settings = dict({"sim": SIM_LINK, "qemu": QEMU_LINK}.get(port, BOARD_LINK))
    if stream_timeout is not None:
        settings["stream_timeout"] = stream_timeout
    return settings


@contextmanager
def open_device(port: str, *, stream_timeout: float | None = None,
                camera_dir: str | Path | None = None,
                board_speed: bool = False) -> Iterator[tuple[Any, Any]]:
    """(Connection, VirtualBoard, QemuBoard or None) for --port PATH|auto|sim|qemu; closed on
    exit. `board_speed`: the QEMU board at about a 64 MHz Cortex-M4's pace."""
    import serial
    from .protocol import Connection
    board = None
    settings = _link_settings(port, stream_timeout)
    try:
        if port == "sim":
            from .virtual_board import VirtualBoard
            board = VirtualBoard(camera_dir=camera_dir).start()
            path = board.port
        elif port == "qemu":
            from .qemu_board import QemuBoard
            board = QemuBoard(camera_dir=camera_dir, board_speed=board_speed).start()
            path = board.port
        elif port == "auto":
            path = auto_port()
        else:
            path = port
        try:
            serial_port = serial.Serial(path, baudrate=115200, exclusive=True)
            serial_port.reset_input_buffer()
        except serial.SerialException as e:
            raise CommandError(_open_error_text(path, e)) from None
        name = f"{port} board {path}" if board is not None else path
        link = Connection(serial_port, name=name, **settings)
        try:
            yield link, board
        finally:
            link.close()
    finally:
        if board is not None:
            board.stop()


def _open_error_text(path: str, error: Exception) -> str:
    text = str(error)
    errno = getattr(error, "errno", None)
    if errno == 2 or "No such file" in text:
        return (f"cannot open {path}: no such port (is the board plugged in? "
                f"`tinymirnet devices` lists the boards found)")
    if errno == 16 or "lock" in text.lower() or "busy" in text.lower():
        return f"cannot open {path}: the port is busy (another program has it open: {text})"
    if errno == 13 or "Permission denied" in text:
        return (f"cannot open {path}: permission denied (on Linux, add yourself to the "
                f"'dialout' group and log in again)")
    return f"cannot open {path}: {text}"


def run_guarded(command, args) -> int:
    """Runs a device command; serial, protocol and setup failures become one line on stderr
    and exit code 1 (the one place where they are caught)."""
    import serial
    from .protocol import DeviceError, DeviceTimeout, ProtocolError
    from .virtual_board import VirtualBoardError
    try:
        return command(args)
    except CommandError as e:
        message = str(e)
    except DeviceTimeout as e:
        message = f"{e} (is the tinymirnet firmware running on it? is the cable good?)"
    except DeviceError as e:
        message = str(e)
    except ProtocolError as e:
        message = f"protocol error: {e}"
    except VirtualBoardError as e:
        message = f"virtual board: {e}"
    except serial.SerialException as e:
        message = f"lost the serial port during the command: {e} (board unplugged or reset?)"
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    _end_progress_line()
    print(f"error: {message}", file=sys.stderr)
    return 1


# --------------------------------------------------------------------------------------------
# The host's model and the handshake


@dataclass
class HostModel:
    """What the host expects the board to run: the int8 flatbuffer and the tiling; for a
    frame-context network also the context model (the file beside the tile model)."""

    tflite: Path
    sha256: str
    tiling: Any  # tinymirnet.model.tiling.TilingConfig
    context_tflite: Path | None = None
    context_sha256: str = NO_CONTEXT_MODEL
    _tflm: Any = field(default=None, repr=False)
    _context_tflm: Any = field(default=None, repr=False)

    @classmethod
    def load(cls, tflite: str | Path | None = None) -> HostModel:
        import hashlib
        from tinymirnet.quantize.export import tiling_for
        from .virtual_board import CONTEXT_MODEL_NAME, DEFAULT_MODEL
        path = Path(tflite) if tflite else DEFAULT_MODEL
        if not path.is_file():
            raise CommandError(f"{path}: no such int8 model (give --int8 PATH)")
        host = cls(path, hashlib.sha256(path.read_bytes()).hexdigest(), tiling_for(path))
        if host.tflm.context_index is not None:
            context = path.with_name(CONTEXT_MODEL_NAME)
            if not context.is_file():
                raise CommandError(f"{path} is a frame-context tile model, but its context model "
                                   f"{context} is missing")
            host.context_tflite = context
            host.context_sha256 = hashlib.sha256(context.read_bytes()).hexdigest()
        return host

    @property
    def tflm(self):
        if self._tflm is None:
            from tinymirnet.quantize.tflm import TflmModel
            self._tflm = TflmModel(self.tflite.read_bytes())
        return self._tflm

    @property
    def context_tflm(self):
        if self._context_tflm is None and self.context_tflite is not None:
            from tinymirnet.quantize.tflm import TflmModel
            self._context_tflm = TflmModel(self.context_tflite.read_bytes())
        return self._context_tflm

    @property
    def thumbnail_size(self) -> tuple[int, int] | None:
        if self.context_tflite is None:
            return None
        _, h, w, _ = self.context_tflm.input_shape
        return int(w), int(h)

    def context_of(self, frame888: np.ndarray) -> np.ndarray | None:
        """The int8 context vector the board computes for an exposure-normalised frame (None
        for a one-model network)."""
        from tinymirnet.quantize.tflm import frame_context_vector
        if self.context_tflite is None:
            return None
        return frame_context_vector(self.context_tflm, self.tflm, frame888, self.thumbnail_size)

    def int8_frame(self, raw888: np.ndarray) -> np.ndarray:
        """The board's int8 pipeline on the host TFLM (both models for a frame-context network)."""
        from tinymirnet.quantize.tflm import int8_frame_context, int8_tiled
        t = self.tiling
        if self.context_tflite is None:
            return int8_tiled(self.tflm, raw888, t.tile, t.halo, exposure_target=t.exposure_target)
        return int8_frame_context(self.context_tflm, self.tflm, raw888, t.tile, t.halo, self.thumbnail_size,
                                  exposure_target=t.exposure_target)

    def finished_frame(self, raw888: np.ndarray) -> np.ndarray:
        """`int8_frame`, then the host's last steps on the stitched frame, as for the board's
        tiles (model/lightness_order.py `finish`)."""
        from tinymirnet.model.lightness_order import finish
        return finish(raw888, self.int8_frame(raw888))


def handshake_mismatches(info, host: HostModel) -> list[str]:
    """Differences between the board (INFO) and the host's model, each naming both values."""
    t = host.tiling
    problems = []
    if info.model_sha256 != host.sha256:
        problems.append(f"model sha256 {info.model_sha256} (device) != {host.sha256} "
                        f"(host, {host.tflite})")
    if info.context_model_sha256 != host.context_sha256:
        def which(sha, path):
            return "none (one model)" if sha == NO_CONTEXT_MODEL else f"{sha} ({path})"
        problems.append(f"context model {which(info.context_model_sha256, 'device')} != "
                        f"{which(host.context_sha256, host.context_tflite)} (host)")
    pairs = [("tile", info.tile_size, t.tile), ("halo", info.halo, t.halo),
             ("model input", info.model_input_size, t.model_input),
             ("frame", f"{info.frame_width}x{info.frame_height}",
              f"{t.frame_width}x{t.frame_height}"),
             ("tile count", info.tile_count, t.tiles_x * t.tiles_y)]
    for name, device, expected in pairs:
        if device != expected:
            problems.append(f"{name} {device} (device) != {expected} (host, the tiling of {host.tflite.parent})")
    if not problems:  # same flatbuffer: its quantization must be what the firmware tables use
        q_in, q_out = host.tflm.input_quant, host.tflm.output_quant
        for name, device, hosted in (
                ("input quantization", (info.input_scale, info.input_zero_point), q_in),
                ("output quantization", (info.output_scale, info.output_zero_point), q_out)):
            if (np.float32(device[0]), device[1]) != (np.float32(hosted.scale), hosted.zero_point):
                problems.append(f"{name} scale {device[0]:.9g} zero point {device[1]} (device) "
                                f"!= scale {hosted.scale:.9g} zero point {hosted.zero_point} "
                                f"(host, {host.tflite})")
    return problems


def check_handshake(info, host: HostModel, port_name: str) -> None:
    problems = handshake_mismatches(info, host)
    if problems:
        raise HandshakeError(
            f"the board on {port_name} does not run the host's model: {'; '.join(problems)}. "
            f"Flash the current firmware (firmware/, pio run -t upload) or give --int8 with "
            f"the model the board runs")
    if not info.model_ready:
        raise CommandError(f"the board on {port_name} reports that its model did not start "
                           f"(TFLM arena or op resolver); check its serial log")


# --------------------------------------------------------------------------------------------
# Progress


_progress_open = False


def _end_progress_line() -> None:
    global _progress_open
    if _progress_open:
        print(file=sys.stderr)
        _progress_open = False


class TileProgress:
    """A one-line progress bar over the tiles, on stderr (redrawn in place on a terminal)."""

    def __init__(self, total: int, label: str, width: int = 30):
        self.total, self.label, self.width = total, label, width
        self.count = 0
        self.started = time.monotonic()
        self._draw()

    def __call__(self, tile) -> None:
        self.count += 1
        self._draw()

    def _draw(self) -> None:
        global _progress_open
        if self.count < self.total and not sys.stderr.isatty():
            return  # a log file gets the final state only
        filled = self.width * self.count // max(1, self.total)
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.monotonic() - self.started
        sys.stderr.write(f"\r{self.label} [{bar}] {self.count}/{self.total} tiles {elapsed:5.1f} s")
        sys.stderr.flush()
        _progress_open = True

    def close(self) -> None:
        _end_progress_line()


# --------------------------------------------------------------------------------------------
# Scoring one frame and writing its outputs


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


def _time_summary(values: list[int]) -> dict:
    a = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(a)), "mean": round(float(a.mean()), 1),
            "min": int(a.min()), "max": int(a.max()), "total": int(a.sum())}


def score_frame(raw888: np.ndarray, enhanced, host: HostModel, enhancer) -> tuple[dict, dict]:
    """The host's pipelines on the raw frame the board enhanced, and the comparisons.
    Returns (images: raw/device/host_int8/float as uint8, report section)."""
    from tinymirnet.model.data import to_float, to_uint8
    from tinymirnet.model.metrics import psnr
    from tinymirnet.model.tiling import seam_ratio
    t = host.tiling
    started = time.perf_counter()
    host_int8 = host.int8_frame(raw888)
    int8_s = time.perf_counter() - started
    started = time.perf_counter()
    float_img = enhancer.enhance(raw888, t.tile, t.halo)
    float_s = time.perf_counter() - started
    device = enhanced.image
    diff = np.abs(device.astype(np.int16) - host_int8.astype(np.int16))
    tiles = []
    for tile in enhanced.tiles:
        d = diff[tile.y:tile.y + tile.height, tile.x:tile.x + tile.width]
        tiles.append({"index": tile.index, "x": tile.x, "y": tile.y, "width": tile.width,
                      "height": tile.height, "invoke_us": tile.invoke_us,
                      "differing_values": int(np.count_nonzero(d)),
                      "max_abs_diff": int(d.max(initial=0))})
    done = enhanced.done
    # What a user gets: the stitched tiles finished by the host (the lightness-order step and the
    # guards again, model/lightness_order.py), as the float image is; the parity above is the
    # board's own output.
    from tinymirnet.model.lightness_order import finish
    device = finish(raw888, device)
    host_int8 = device if not diff.any() else finish(raw888, host_int8)  # bit-exact: the same frame
    report = {
        "device_vs_host_int8": {
            "differing_values": int(np.count_nonzero(diff)), "total_values": int(diff.size),
            "max_abs_diff": int(diff.max(initial=0)), "bit_exact": bool(not diff.any()),
            "differing_tiles": [t_["index"] for t_ in tiles if t_["differing_values"]]},
        "psnr_db": {
            "device_int8_vs_host_float": _finite(psnr(to_float(device), float_img)),
            "host_int8_vs_host_float": _finite(psnr(to_float(host_int8), float_img)),
            "raw_vs_host_float": _finite(psnr(to_float(raw888), float_img)),
            "note": "on [0,1] images, each finished by the host (lightness-order step); the float "
                    "network runs on the same raw frame with the same tiling (tile by tile), so "
                    "this measures int8 + device fidelity"},
        "tile_seam_ratio": {
            "device": round(seam_ratio(device, t.tile), 3),
            "host_float_tiled": round(seam_ratio(to_uint8(float_img), t.tile), 3),
            "note": "mean |neighbour difference| across tile boundaries / elsewhere "
                    "(model.tiling.seam_ratio); 1.0: the tile grid does not show"},
        "device_time_us": {
            "per_tile_invoke": _time_summary([t_["invoke_us"] for t_ in tiles]),
            "inference_total": done.inference_us if done else enhanced.device_inference_us,
            # a frame-context network's context model, once per frame: DONE's total - the tiles'
            "context_model": (done.inference_us - enhanced.device_inference_us
                              if done and host.context_tflite is not None else None),
            "job_elapsed": done.elapsed_us if done else None},
        "host_time_s": {"host_int8": round(int8_s, 3), "host_float": round(float_s, 3)},
        "repaired_tiles": list(enhanced.repaired_tiles),
        "tiles": tiles,
    }
    images = {"raw": raw888, "device": device, "host_int8": host_int8,
              "float": to_uint8(float_img)}
    return images, report


def write_outputs(out_dir: Path, images: dict, report: dict) -> list[Path]:
    """raw.png, device.png, float.png, side_by_side.png, then report.json (each atomic: a
    failure never leaves a half-written file, and report.json exists only when all do)."""
    from PIL import Image
    from tinymirnet.model.files import atomic_save_image, atomic_write_json
    from tinymirnet.model.plots import comparison_grid
    out_dir = Path(out_dir)
    written = []
    for name in ("raw", "device", "float"):
        written.append(atomic_save_image(Image.fromarray(images[name]), out_dir / f"{name}.png"))
    side = out_dir / "side_by_side.png"
    comparison_grid(side, [[images["raw"], images["device"], images["float"]]],
                    ["raw frame", "device (int8)", "host float"], width=320)
    written.append(side)
    report = dict(report, files=[p.name for p in written] + ["report.json"])
    written.append(atomic_write_json(out_dir / "report.json", report))
    return written


def _device_section(info, link, port: str) -> dict:
    return {"port": port, "firmware_version": info.firmware_version,
            "model_sha256": info.model_sha256, "frame_context": info.frame_context,
            "context_model_sha256": info.context_model_sha256 if info.frame_context else None,
            "frame": [info.frame_width, info.frame_height],
            "camera_pixel_format": PIXEL_FORMAT_NAMES.get(info.camera_pixel_format,
                                                          str(info.camera_pixel_format)),
            "tile": info.tile_size, "halo": info.halo, "tile_count": info.tile_count,
            "arena_size": info.arena_size, "arena_used_bytes": info.arena_used_bytes,
            "model_bytes": info.model_bytes}


def _print_summary(report: dict, out_dir: Path) -> None:
    cmp_ = report["device_vs_host_int8"]
    times = report["device_time_us"]
    psnr_ = report["psnr_db"]
    per_tile = times["per_tile_invoke"]
    job = times["job_elapsed"]
    print(f"device: {len(report['tiles'])} tiles, inference {times['inference_total'] / 1000:.1f} ms "
          f"(median {per_tile['median'] / 1000:.1f} ms/tile)"
          + (f", job {job / 1000:.1f} ms" if job is not None else "")
          + f"; host wall time {report['link']['wall_s']:.2f} s")
    if cmp_["bit_exact"]:
        print(f"device vs host int8 (TFLM): bit-exact ({cmp_['total_values']} values)")
    else:
        print(f"device vs host int8 (TFLM): {cmp_['differing_values']} of {cmp_['total_values']} "
              f"values differ, max difference {cmp_['max_abs_diff']}")

    def db(v):
        return "inf" if v is None else f"{v:.2f}"
    print(f"PSNR vs host float: device {db(psnr_['device_int8_vs_host_float'])} dB, host int8 "
          f"{db(psnr_['host_int8_vs_host_float'])} dB, raw {db(psnr_['raw_vs_host_float'])} dB")
    if "tile_seam_ratio" in report:
        seams = report["tile_seam_ratio"]
        print(f"tile seams (boundary / elsewhere): device {seams['device']:.2f}, float tiled "
              f"{seams['host_float_tiled']:.2f} (1.00: no grid)")
    print(f"wrote {out_dir}/raw.png, device.png, float.png, side_by_side.png, report.json")


# --------------------------------------------------------------------------------------------
# Commands


def _require_weights(weights: Path) -> Path:
    weights = Path(weights)
    if not weights.is_file():
        raise CommandError(f"{weights}: no float weights (the reference the device is scored "
                           f"against); train first or give --weights")
    return weights


_enhancers: dict[tuple, Any] = {}


def _load_enhancer(weights: Path):
    """The float network, built once per weights file and process (building it costs
    seconds; several commands in one process, e.g. the tests, share it)."""
    from tinymirnet.model.inference import FloatEnhancer, config_path_for
    weights = Path(weights).resolve()
    config = config_path_for(weights)
    key = (weights, weights.stat().st_mtime_ns,
           config.stat().st_mtime_ns if config.is_file() else None)
    if key not in _enhancers:
        _enhancers.clear()
        _enhancers[key] = FloatEnhancer.load(weights)
    return _enhancers[key]


def _default_capture_dir() -> Path:
    base = Path("captures") / time.strftime("%Y%m%d-%H%M%S")
    out, n = base, 2
    while out.exists():
        out, n = base.with_name(f"{base.name}-{n}"), n + 1
    return out


def _link_section(link, wall_s: float) -> dict:
    return dict(asdict(link.stats), wall_s=round(wall_s, 3))


def cmd_capture(args) -> int:
    return run_guarded(_capture, args)


def _capture(args) -> int:
    host = HostModel.load(args.int8)
    weights = _require_weights(args.weights)
    with open_device(args.port, stream_timeout=args.timeout,
                     camera_dir=getattr(args, "camera_dir", None),
                     board_speed=args.board_speed) as (link, board):
        info = link.hello()
        check_handshake(info, host, link.name)
        if not info.camera_ready:
            raise CommandError(f"the board on {link.name} reports no camera (OV7675 not "
                               f"detected); use `tinymirnet enhance --port` with image files")
        progress = TileProgress(info.tile_count, "capture")
        started = time.perf_counter()
        result = link.capture(on_tile=progress)
        wall_s = time.perf_counter() - started
        progress.close()
        link_report = _link_section(link, wall_s)
        device = _device_section(info, link, args.port if args.port != "auto" else link.name)
    raw888 = result.raw_rgb888
    images, report = score_frame(raw888, result.enhanced, host, _load_enhancer(weights))
    report = {"command": "capture", "device": device,
              "host_model": {"tflite": report_path(host.tflite), "sha256": host.sha256,
                             "tflm": host.tflm.library, "weights": report_path(weights)},
              "link": link_report, **report}
    out_dir = Path(args.out) if args.out else _default_capture_dir()
    write_outputs(out_dir, images, report)
    _print_summary(report, out_dir)
    return 0


def crop_kept(w: int, h: int, width: int, height: int) -> float:
    """The fraction of a w x h photo's cropped dimension that scaling to cover width x height and
    centre-cropping keeps (1.0: nothing cropped)."""
    scale = max(width / w, height / h)
    return min(width / (w * scale), height / (h * scale))


def cmd_enhance_on_device(args) -> int:
    return run_guarded(_enhance_on_device, args)


def _enhance_on_device(args) -> int:
    from tinymirnet.model.data import DataError, read_rgb
    from tinymirnet.model.files import unique_stem
    from tinymirnet.model.samples import resize_to
    from .protocol import frame_to_rgb888, rgb888_to_frame
    if not args.images and not args.sample:
        raise CommandError("give IMAGE files or --sample")
    host = HostModel.load(args.int8)
    weights = _require_weights(args.weights)
    jobs: list[tuple[str, Path | None, np.ndarray | None]] = [
        (Path(p).stem, Path(p), None) for p in args.images]
    if args.sample:
        from tinymirnet.model.samples import sample_photo, synthesize_low_light
        jobs.append((f"sample_{args.sample}_low", None,
                     synthesize_low_light(sample_photo(args.sample))))
    failures = 0
    enhancer = None
    used_names: set[str] = set()
    with open_device(args.port, stream_timeout=args.timeout,
                     board_speed=args.board_speed) as (link, board):
        info = link.hello()
        check_handshake(info, host, link.name)
        width, height = info.frame_width, info.frame_height
        for stem, src, img in jobs:
            try:
                img = read_rgb(src) if img is None else img
            except DataError as e:
                _end_progress_line()
                print(f"error: {e}", file=sys.stderr)
                failures += 1
                continue
            kept = crop_kept(img.shape[1], img.shape[0], width, height)
            if kept < 0.99:  # say what the board will not see, never crop unannounced
                _end_progress_line()
                print(f"note: {stem}: {img.shape[1]}x{img.shape[0]} scaled to cover the board's "
                      f"{width}x{height} frame and centre-cropped: {100 * kept:.0f} % of its "
                      f"{'height' if img.shape[0] * width > img.shape[1] * height else 'width'} is kept",
                      file=sys.stderr)
            # The photo reaches the board in its camera's format: what a capture would hold.
            pixel_format = info.camera_pixel_format
            frame = rgb888_to_frame(resize_to(img, width, height), pixel_format)
            progress = TileProgress(info.tile_count, stem)
            started = time.perf_counter()
            result = link.enhance(frame, pixel_format=pixel_format, on_tile=progress)
            wall_s = time.perf_counter() - started
            progress.close()
            raw888 = frame_to_rgb888(frame, pixel_format, width, height)
            if enhancer is None:
                enhancer = _load_enhancer(weights)
            images, scored = score_frame(raw888, result, host, enhancer)
            name = unique_stem(stem, used_names)
            report = {
                "command": "enhance", "source": str(src) if src else stem,
                "source_size": [int(img.shape[1]), int(img.shape[0])],
                "resize_rule": f"scale to cover {width}x{height} (bilinear), centre crop, "
                               f"then the camera's {PIXEL_FORMAT_NAMES[pixel_format]} "
                               f"(model.samples.resize_to, protocol.rgb888_to_frame)",
                "device": _device_section(info, link, args.port if args.port != "auto"
                                          else link.name),
                "host_model": {"tflite": report_path(host.tflite), "sha256": host.sha256,
                               "tflm": host.tflm.library, "weights": report_path(weights)},
                "link": _link_section(link, wall_s), **scored}
            out_dir = Path(args.out) / name
            write_outputs(out_dir, images, report)
            print(f"{report['source']}:")
            _print_summary(report, out_dir)
    return 1 if failures else 0


def cmd_devices(args) -> int:
    ports = list_serial_ports()
    boards = [p for p in ports if p.is_nano33ble]
    for board in boards:
        print(board.line())
    if args.all:
        for other in (p for p in ports if not p.is_nano33ble):
            print(other.line())
    if not boards:
        print(f"no Arduino Nano 33 BLE found (looked for USB {_wanted_ids()} among "
              f"{len(ports)} serial ports); plug it in, or use --port qemu or --port sim for a virtual board")
        return 1
    return 0


def cmd_sim(args) -> int:
    return run_guarded(_sim, args)


def _stop_on_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM stop a served board cleanly, even when the parent process
    started it with those signals blocked or ignored (a supervisor, a background job)."""
    import signal

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def _sim(args) -> int:
    from .virtual_board import VirtualBoard
    _stop_on_signals()
    board = VirtualBoard(camera_dir=args.camera_dir).start()
    try:
        info = board.info
        print(board.port, flush=True)
        print(f"virtual board ready on {board.port}: {info.frame_width}x{info.frame_height} "
              f"frames, {info.tile_count} tiles of {info.tile_size} px (halo {info.halo}), model "
              f"{info.model_sha256[:12]}..., camera: {board.camera.sources[0]}"
              + (f" (+{len(board.camera.sources) - 1} more)" if len(board.camera.sources) > 1
                 else ""))
        print(f"use it as a board, e.g. tinymirnet capture --port {board.port}; Ctrl-C stops it",
              flush=True)
        while board.running:
            time.sleep(0.2)
        raise CommandError("the virtual board stopped by itself")
    except KeyboardInterrupt:
        print("virtual board stopped", flush=True)
        return 0
    finally:
        board.stop()


# --------------------------------------------------------------------------------------------
# Argument wiring (used by host/cli.py)


def add_device_options(parser: argparse.ArgumentParser, *, port_required: bool) -> None:
    parser.add_argument("--port", required=port_required, default=None,
                        help="serial port of the board (e.g. /dev/ttyACM0), 'auto' (the one "
                             "Nano 33 BLE found by USB id), 'qemu' (the firmware and the board's "
                             "TFLM on an emulated Cortex-M4) or 'sim' (the firmware core on this "
                             "machine)")
    parser.add_argument("--board-speed", action="store_true",
                        help="with --port qemu: run at about a 64 MHz Cortex-M4's pace (QEMU "
                             "-icount shift=4,sleep=on) instead of as fast as this machine can")
    parser.add_argument("--int8", type=Path, default=None,
                        help="the int8 .tflite the board should run (default: the shipped "
                             "quantize/artifacts/tiny_mirnet_int8.tflite)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds a result stream may stay silent before the host gives "
                             "up (default 30 for a board or qemu, 5 for sim)")
