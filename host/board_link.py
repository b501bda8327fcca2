"""The board link: finding a board, opening its serial port, the handshake, and running a
device command so that its failures are one line.

`--port` takes a serial device (/dev/ttyACM0, COM3), `auto` (the one Nano 33 BLE found by USB
VID/PID), `qemu` (the firmware on an emulated Cortex-M4, started for the command) or `sim` (the
firmware core on this machine, started for the command). Every command opens it with
:func:`open_device` (the link settings: host/protocol/connection.py LINK_SETTINGS) and starts with
a handshake (HELLO): the board's model (sha256 of its int8 flatbuffer) and geometry (tile, halo,
model input, frame, quantization) must equal the host's (host/host_model.py); any difference is
one error naming both values, before anything is computed.
"""
from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import serial
from serial.tools import list_ports

from tinymirnet.quantize.native_build import NativeBuildError

from .protocol import NO_CONTEXT_MODEL, Connection, DeviceError, DeviceTimeout, PortOpenError, ProtocolError
from .qemu_board import QemuBoard
from .virtual_board import VirtualBoard, VirtualBoardError


if TYPE_CHECKING:
    from .host_model import HostModel

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
    return [BoardPort(p.device, p.vid, p.pid, p.serial_number, p.description or "")
            for p in sorted(list_ports.comports(), key=lambda p: p.device)]


def find_boards() -> list[BoardPort]:
    """Serial ports whose USB VID/PID is an Arduino Nano 33 BLE's."""
    return [p for p in list_serial_ports() if p.is_nano33ble]


def wanted_ids() -> str:
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
    raise CommandError(f"no Arduino Nano 33 BLE found (USB {wanted_ids()}); plug it in, give "
                       "--port PATH, or use --port qemu or --port sim for a virtual board")


VIRTUAL_PORTS = ("sim", "qemu")


@contextmanager
def open_device(port: str, *, stream_timeout: float | None = None,
                camera_dir: str | Path | None = None, board_speed: bool = False,
                wrap: Callable[[Any], Any] | None = None) -> Iterator[tuple[Connection, Any]]:
    """(Connection, VirtualBoard, QemuBoard or None) for --port PATH|auto|sim|qemu; closed on
    exit. `board_speed`: the QEMU board at about a 64 MHz Cortex-M4's pace; `wrap`: wraps the
    opened serial port (Connection.open)."""
    board = None
    try:
        if port == "sim":
            board = VirtualBoard(camera_dir=camera_dir).start()
        elif port == "qemu":
            board = QemuBoard(camera_dir=camera_dir, board_speed=board_speed).start()
        with connect(port, board, wrap=wrap, stream_timeout=stream_timeout) as link:
            yield link, board
    finally:
        if board is not None:
            board.stop()


def connect(port: str, board=None, *, wrap: Callable[[Any], Any] | None = None,
            stream_timeout: float | None = None) -> Connection:
    """The link to --port PATH|auto|sim|qemu, its virtual board (if any) already started: the
    path, the link settings and the link's name follow from the port. Called again after a board
    came back on another port (a replugged cable)."""
    path = board.port if board is not None else auto_port() if port == "auto" else port
    kind = port if port in VIRTUAL_PORTS else "board"
    name = f"{port} board {path}" if board is not None else path
    return Connection.open(path, kind, name=name, wrap=wrap, stream_timeout=stream_timeout)


def run_guarded(command, args) -> int:
    """Runs a device command; serial, protocol and setup failures become one line on stderr
    and exit code 1 (the one place where they are caught)."""
    try:
        return command(args)
    except (CommandError, PortOpenError) as e:
        message = str(e)
    except DeviceTimeout as e:
        message = f"{e} (is the tinymirnet firmware running on it? is the cable good?)"
    except DeviceError as e:
        message = str(e)
    except ProtocolError as e:
        message = f"protocol error: {e}"
    except VirtualBoardError as e:
        message = f"virtual board: {e}"
    except NativeBuildError as e:
        message = str(e)
    except serial.SerialException as e:
        message = f"lost the serial port during the command: {e} (board unplugged or reset?)"
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    end_progress_line()
    print(f"error: {message}", file=sys.stderr)
    return 1


# --------------------------------------------------------------------------------------------
# The handshake


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


def end_progress_line() -> None:
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
        end_progress_line()


# --------------------------------------------------------------------------------------------
# Argument wiring


def add_device_options(parser: argparse.ArgumentParser, *, port_required: bool) -> None:
    parser.add_argument("--port", required=port_required, default=None,
                        help="serial port of the board (e.g. /dev/ttyACM0), 'auto' (the one "
                             "Nano 33 BLE found by USB id), 'qemu' (the firmware and the board's "
                             "TFLM on an emulated Cortex-M4) or 'sim' (the firmware core on this "
                             "machine)")
    parser.add_argument("--board-speed", action="store_true",
                        help="with --port qemu: run at about a 64 MHz Cortex-M4's pace (QEMU "
                             "-icount shift=4,align=on,sleep=on) instead of as fast as this machine can")
    parser.add_argument("--int8", type=Path, default=None,
                        help="the int8 .tflite the board should run (default: the shipped "
                             "quantize/artifacts/tiny_mirnet_int8.tflite)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds a result stream may stay silent before the host gives "
                             "up (default 30 for a board or qemu, 5 for sim)")
