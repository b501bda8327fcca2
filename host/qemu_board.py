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
(one frame in a few seconds); ``board_speed=True`` runs ``-icount shift=4,sleep=on``, about
62.5 M instructions per second of real time, close to a 64 MHz Cortex-M4.

Usage::

    with QemuBoard() as board:               # or: tinymirnet capture --port qemu
        link = Connection.open(board.port)
"""
from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from .virtual_board import FIRMWARE_DIR, ImageCamera, VirtualBoardError

QEMU_DIR = FIRMWARE_DIR / "qemu"
BUILD_DIR = FIRMWARE_DIR / "build" / "qemu"
BOARD_ELF = BUILD_DIR / "board.elf"
FRAME_ADDRESS = 0x21000000  # PSRAM of mps2-an386: firmware/qemu/mps2_an386.h FrameBlob
BLOB_MAGIC = 0x424E4D54
BOARD_HZ = 64_000_000
# Instructions per 1000 ticks of the 25 MHz timer: 1 ns (shift 0) or 16 ns (shift 4) each.
ICOUNT = {False: ("shift=0", 40_000), True: ("shift=4,sleep=on", 2_500)}
_PTY_LINE = re.compile(r"char device redirected to (\S+) \(label serial0\)")
_BOOT_LINE = "tinymirnet virtual Cortex-M4 board:"


class QemuBoardError(VirtualBoardError):
    pass


def _sources() -> list[Path]:
    dirs = [FIRMWARE_DIR / "lib" / "tinymirnet_core", FIRMWARE_DIR / "lib" / "tinymirnet_model",
            FIRMWARE_DIR / "src", QEMU_DIR]
    return [p for d in dirs if d.is_dir() for p in d.rglob("*") if p.is_file()]


def make_qemu(targets: tuple[str, ...], variables: dict[str, Path] | None = None) -> None:
    """`make -C firmware/qemu TARGETS [NAME=value ...]` (firmware/qemu/Makefile: MODEL_DIR for
    another model export, BUILD for another build folder); one clear error when it fails."""
    for tool in ("make", "arm-none-eabi-g++"):
        if shutil.which(tool) is None:
            raise QemuBoardError(f"building the QEMU board needs {tool}: apt-get install make "
                                 f"gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib")
    settings = [f"{name}={value}" for name, value in (variables or {}).items()]
    build = subprocess.run(["make", "-C", str(QEMU_DIR), *targets, *settings], capture_output=True, text=True,
                           timeout=1800)
    if build.returncode != 0:
        tail = (build.stdout + build.stderr).strip().splitlines()[-15:]
        raise QemuBoardError(f"`make -C firmware/qemu {' '.join([*targets, *settings])}` failed:\n" + "\n".join(tail))


def ensure_board_elf(target: str = "board") -> Path:
    """firmware/build/qemu/<target>.elf, built with make when missing or older than a source
    (the first build compiles the board's TFLM: a few minutes)."""
    elf = BUILD_DIR / f"{target}.elf"
    if not (QEMU_DIR / "Makefile").is_file():
        raise QemuBoardError(f"the QEMU board needs the repository checkout ({QEMU_DIR} is missing)")
    if elf.is_file() and elf.stat().st_mtime >= max(p.stat().st_mtime for p in _sources()):
        return elf
    make_qemu((target,))
    if not elf.is_file():
        raise QemuBoardError(f"`make -C firmware/qemu {target}` made no {elf}")
    return elf


def frame_blob(frames: list[np.ndarray], board_speed: bool) -> bytes:
    """The camera's frames (uint16, the board camera's YUV422: host/virtual_board.py ImageCamera)
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

    def start(self) -> QemuBoard:
        if shutil.which("qemu-system-arm") is None:
            raise QemuBoardError("--port qemu needs qemu-system-arm: apt-get install qemu-system-arm")
        from tinymirnet.model.tiling import load_tiling
        elf = self.elf or ensure_board_elf()
        tiling = load_tiling()
        if self._frames is not None:
            self.camera = ImageCamera([np.asarray(f, np.uint8) for f in self._frames],
                                      [f"frame {i}" for i in range(len(self._frames))])
        elif self.camera_dir is not None:
            self.camera = ImageCamera.from_dir(self.camera_dir, tiling.frame_width, tiling.frame_height)
        else:
            self.camera = ImageCamera.synthetic(tiling.frame_width, tiling.frame_height)
        self._tmp = tempfile.mkdtemp(prefix="tinymirnet-qemu-")
        blob = Path(self._tmp) / "frames.bin"
        blob.write_bytes(frame_blob(self.camera.frames, self.board_speed))
        command = ["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-monitor", "none",
                   "-serial", "pty", "-semihosting-config", "enable=on,target=native",
                   "-icount", ICOUNT[self.board_speed][0], "-kernel", str(elf),
                   "-device", f"loader,file={blob},addr={FRAME_ADDRESS:#x}"]
        # QEMU names the pty on stdout, the board writes on stderr (semihosting): one stream.
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True, bufsize=1)
        threading.Thread(target=self._read_stderr, daemon=True).start()
        deadline = time.monotonic() + self.boot_timeout
        while time.monotonic() < deadline:
            text = "".join(self._stderr)
            pty = _PTY_LINE.search(text)
            if pty and _BOOT_LINE in text:
                self.port = pty.group(1)
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

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> QemuBoard:
        return self.start() if self._process is None else self

    def __exit__(self, *exc_info) -> None:
        self.stop()
