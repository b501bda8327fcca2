"""A Cortex-M4 board under QEMU: the firmware as the Nano 33 BLE runs it, short of Mbed OS.

``board.elf`` (``make -C firmware/qemu board``, in ``firmware/build/qemu``) holds the firmware
core, the sketch's TFLM glue (``firmware/src/tflm_model.cpp``, unchanged), the generated model
and the board's own TFLM (Chirale_TensorFlowLite 2.0.0 with CMSIS-NN, built for Cortex-M4F from
``../shared/firmware-deps``). QEMU's ``mps2-an386`` runs it; its UART0 is a pseudo-terminal
(``-serial pty``) that the host opens with pyserial as it opens ``/dev/ttyACM0``; the camera
serves frames this module loads into PSRAM (``-device loader``): the bundled low-light frame,
or the images of ``camera_dir``. The board's clock reports the board's microseconds at 64 MHz
and one instruction per cycle (a real Cortex-M4 needs more cycles than instructions).

Speeds: ``board_speed=False`` (default) runs ``-icount shift=0`` as fast as this machine can
(a frame in under a second); ``board_speed=True`` runs ``-icount shift=4,align=on,sleep=on``,
62.5 M instructions per second of real time, close to a 64 MHz Cortex-M4.

The USB cable: the host opens a pseudo-terminal of this module's that carries the bytes to and
from QEMU's, so that :meth:`QemuBoard.unplug` can pull it as a user pulls the cable (the port
vanishes, the board loses power, a new port appears). :meth:`QemuBoard.reset` presses the reset
button (QEMU's system reset, through its QMP socket); :meth:`QemuBoard.request_stall` makes the
next model invoke hang until the board's watchdog resets it (firmware/qemu/board_main.cc).

Usage::

    with QemuBoard() as board:               # or: tinymirnet capture --port qemu
        link = Connection.open(board.port, "qemu")
"""
from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import tty
from pathlib import Path

import numpy as np

from tinymirnet.model.paths import FIRMWARE_DIR, QEMU_BUILD_DIR, QEMU_DIR
from tinymirnet.model.tiling import load_tiling
from tinymirnet.quantize.native_build import ensure_built, files_under

from .image_camera import ImageCamera
from .sim_library import VirtualBoardError


BOARD_ELF = QEMU_BUILD_DIR / "board.elf"
ARM_TOOLS = ("make", "arm-none-eabi-g++")  # what `make -C firmware/qemu` needs
FRAME_ADDRESS = 0x21000000  # PSRAM of mps2-an386: firmware/qemu/mps2_an386.h FrameBlob
BLOB_MAGIC = 0x424E4D54
BOARD_HZ = 64_000_000
# Instructions per 1000 ticks of the 25 MHz timer: 1 ns (shift 0) or 16 ns (shift 4) each.
ICOUNT = {False: ("shift=0", 40_000), True: ("shift=4,align=on,sleep=on", 2_500)}
_PTY_LINE = re.compile(r"char device redirected to (\S+) \(label serial0\)")
_BOOT_LINE = "tinymirnet virtual Cortex-M4 board:"
STALL_REQUEST = "tinymirnet-stall"  # firmware/qemu/board_main.cc kStallRequest


class QemuBoardError(VirtualBoardError):
    pass


def ensure_board_elf(target: str = "board") -> Path:
    """firmware/build/qemu/<target>.elf, built with make when missing or older than a source
    (the first build compiles the board's TFLM: a few minutes)."""
    sources = files_under(FIRMWARE_DIR / "lib" / "tinymirnet_core", FIRMWARE_DIR / "lib" / "tinymirnet_model",
                          FIRMWARE_DIR / "src", QEMU_DIR)
    return ensure_built(QEMU_BUILD_DIR / f"{target}.elf", QEMU_DIR, target, sources, tools=ARM_TOOLS)


def frame_blob(frames: list[np.ndarray], board_speed: bool) -> bytes:
    """The camera's frames (uint16, the board camera's YUV422: host/image_camera.py ImageCamera)
    as firmware/qemu/mps2_an386.h FrameBlob lays them out."""
    header = struct.pack("<IIII", BLOB_MAGIC, len(frames), ICOUNT[board_speed][1], BOARD_HZ)
    return header + b"".join(np.ascontiguousarray(f, "<u2").tobytes() for f in frames)


class QemuBoard:
    """The firmware on QEMU's Cortex-M4, reachable as a serial port at :attr:`port`."""

    def __init__(self, *, camera_dir: str | Path | None = None, frames: list[np.ndarray] | None = None,
                 board_speed: bool = False, elf: str | Path | None = None, boot_timeout: float = 60.0):
        self.camera_dir = camera_dir
        self._frames = frames
        self.board_speed = board_speed
        self.elf = Path(elf) if elf else None
        self.boot_timeout = boot_timeout
        self.port: str | None = None
        self.camera: ImageCamera | None = None
        self.boot_text = ""
        self._process: subprocess.Popen | None = None
        self._tmp: str | None = None
        self._stderr: list[str] = []
        self._qemu_fd = -1  # QEMU's pty, held open by the cable thread
        self._master = self._slave = -1  # the cable's pty pair; the host opens the slave's name
        self._unplug_for: float | None = None  # seconds the cable stays out, set by unplug()
        self._replugged = threading.Event()
        self._stop = threading.Event()
        self._qmp: socket.socket | None = None
        self._qmp_lock = threading.Lock()

    def start(self) -> QemuBoard:
        if shutil.which("qemu-system-arm") is None:
            raise QemuBoardError("--port qemu needs qemu-system-arm: apt-get install qemu-system-arm")
        elf = self.elf or ensure_board_elf()
        tiling = load_tiling()
        self.camera = ImageCamera.for_board(self._frames, self.camera_dir, tiling.frame_width, tiling.frame_height)
        self._tmp = tempfile.mkdtemp(prefix="tinymirnet-qemu-")
        blob = Path(self._tmp) / "frames.bin"
        blob.write_bytes(frame_blob(self.camera.frames, self.board_speed))
        command = ["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-monitor", "none",
                   "-qmp", f"unix:{Path(self._tmp) / 'qmp.sock'},server=on,wait=off",
                   "-serial", "pty", "-semihosting-config", "enable=on,target=native",
                   "-icount", ICOUNT[self.board_speed][0], "-kernel", str(elf),
                   "-device", f"loader,file={blob},addr={FRAME_ADDRESS:#x}"]
        # QEMU names the pty on stdout, the board writes on stderr (semihosting): one stream.
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True, bufsize=1, cwd=self._tmp)
        threading.Thread(target=self._read_stderr, daemon=True).start()
        deadline = time.monotonic() + self.boot_timeout
        while time.monotonic() < deadline:
            text = "".join(self._stderr)
            qemu_pty = _PTY_LINE.search(text)
            if qemu_pty and _BOOT_LINE in text:
                self._connect(qemu_pty.group(1))
                self.boot_text = text[text.index(_BOOT_LINE):].splitlines()[0]
                if "model: ok" not in self.boot_text:
                    self.stop()
                    raise QemuBoardError(f"the QEMU board started without its model: {self.boot_text}")
                return self
            if self._process.poll() is not None:
                break
            time.sleep(0.02)
        output = "".join(self._stderr).strip()
        self.stop()
        raise QemuBoardError(f"QEMU did not boot the board within {self.boot_timeout:.0f} s: {output[-500:]}")

    def _read_stderr(self) -> None:
        for line in self._process.stdout:
            self._stderr.append(line)

    @property
    def output(self) -> str:
        """What QEMU and the board printed (semihosting: the boot line, TFLM's messages)."""
        return "".join(self._stderr)

    # The cable and the buttons ----------------------------------------------------------------

    def _connect(self, qemu_pty: str) -> None:
        self._qemu_fd = os.open(qemu_pty, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self._qemu_fd)
        self._plug()
        self._qmp = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._qmp.connect(str(Path(self._tmp) / "qmp.sock"))
        self._qmp_file = self._qmp.makefile("rw")
        self._qmp_file.readline()  # the greeting
        self._qmp_command("qmp_capabilities")
        threading.Thread(target=self._carry, daemon=True).start()

    def _plug(self) -> None:
        self._master, self._slave = pty.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)

    def _unplug_now(self) -> None:
        for fd in (self._master, self._slave):
            os.close(fd)
        self._master = self._slave = -1

    def _carry(self) -> None:
        """The cable: bytes between the host's pty and QEMU's, both ways, until stop()."""
        try:
            self._carry_bytes()
        except (OSError, ValueError, QemuBoardError):
            if not self._stop.is_set():
                raise

    def _carry_bytes(self) -> None:
        to_host, to_board = bytearray(), bytearray()
        while not self._stop.is_set():
            if self._unplug_for is not None:  # pull the cable: the port vanishes, the board powers off
                self._unplug_now()
                to_host.clear()
                to_board.clear()
                self._qmp_command("system_reset")
                time.sleep(self._unplug_for)
                self._plug()
                self._unplug_for = None
                self._replugged.set()
            readers = [self._qemu_fd, self._master]
            writers = ([self._master] if to_host else []) + ([self._qemu_fd] if to_board else [])
            readable, writable, _ = select.select(readers, writers, [], 0.05)
            for fd in readable:
                try:
                    data = os.read(fd, 4096)
                except (BlockingIOError, OSError):  # EIO: nobody holds the port open right now
                    continue
                (to_host if fd == self._qemu_fd else to_board).extend(data)
            for fd, pending in ((self._master, to_host), (self._qemu_fd, to_board)):
                if fd in writable and pending:
                    try:
                        del pending[:os.write(fd, pending)]
                    except (BlockingIOError, OSError):
                        pass

    def _qmp_command(self, name: str) -> dict:
        with self._qmp_lock:
            return self._qmp_exchange(name)

    def _qmp_exchange(self, name: str) -> dict:
        self._qmp_file.write(json.dumps({"execute": name}) + "\n")
        self._qmp_file.flush()
        while True:  # events (RESET, ...) may come before the answer
            answer = json.loads(self._qmp_file.readline())
            if "return" in answer or "error" in answer:
                if "error" in answer:
                    raise QemuBoardError(f"QEMU refused {name}: {answer['error'].get('desc')}")
                return answer

    def reset(self) -> None:
        """The reset button: the machine restarts the firmware; the port stays."""
        self._qmp_command("system_reset")

    def unplug(self, seconds: float = 1.0) -> str:
        """Pulls the USB cable for `seconds` (the port vanishes and the board loses power), then
        plugs it back: returns the new port's name (a new pty, as a board may come back as
        another /dev/ttyACM)."""
        self._replugged.clear()
        self._unplug_for = seconds
        if not self._replugged.wait(seconds + 10):
            raise QemuBoardError("the QEMU board's cable did not come back")
        return self.port

    def request_stall(self) -> None:
        """The next model invoke never returns (the board's watchdog then resets it)."""
        (Path(self._tmp) / STALL_REQUEST).write_bytes(b"")

    def stop(self) -> None:
        self._stop.set()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._qmp is not None:
            self._qmp.close()
            self._qmp = None
        for fd in (self._qemu_fd, self._master, self._slave):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._qemu_fd = self._master = self._slave = -1
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> QemuBoard:
        return self.start() if self._process is None else self

    def __exit__(self, *exc_info) -> None:
        self.stop()
