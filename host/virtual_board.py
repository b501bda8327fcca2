"""A virtual board: the firmware core, compiled for this machine, behind a pseudo-terminal.

The C++ core of the firmware (``firmware/lib/tinymirnet_core``, the same protocol dispatcher,
tiler and pixel tables the Nano 33 BLE runs) is built as ``libtinymirnet_sim.so``
(``make -C firmware/tests sim``, done here on demand when the library is missing or older
than its sources) and driven through its C API (``firmware/sim/sim_api.h``) with ports
backed by this machine:

* link: the master side of a pty pair (raw mode, non-blocking); the slave side's name
  (``/dev/pts/N``) is the "serial port" the host opens with pyserial, exactly as it opens
  ``/dev/ttyACM0`` for a board;
* model: the ``tflite_micro`` runtime running ``quantize/artifacts/tiny_mirnet_int8.tflite``
  (the TFLM reference kernels: bit-exact with :func:`tinymirnet.quantize.tflm.int8_tiled`);
  for a frame-context build also the context model beside it
  (``tiny_mirnet_context_int8.tflite``, :func:`tinymirnet.quantize.tflm.int8_frame_context`);
* camera: image files cycled frame by frame (``camera_dir``), or by default a low-light frame
  synthesized from the bundled ``coffee`` photograph (``model/samples/``); each resized to the frame by scaling
  to cover and centre-cropping (:func:`tinymirnet.model.samples.resize_to`), then YUV422, the
  board camera's format (``firmware/src/ov7675_camera.cpp``);
* clock: ``time.monotonic_ns``.

A thread runs ``tmn_sim_poll()`` in a loop (waiting on the pty when the device is idle).
Each board loads its own copy of the library, so several boards can run in one process.
At start a HELLO over the pty checks that the .tflite is the model compiled into the
simulator (same sha256 and geometry); otherwise :class:`VirtualBoardError` says what to
rebuild.

Usage::

    with VirtualBoard() as board:           # or: tinymirnet sim
        link = Connection.open(board.port, "sim")  # any pyserial client works
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import select
import threading
import time
import tty
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinymirnet.model.paths import CONTEXT_INT8_NAME, DEFAULT_INT8_MODEL
from tinymirnet.quantize.tflm import TflmModel

from .image_camera import ImageCamera
from .protocol import Connection, DeviceInfo, PortOpenError, ProtocolError
from .sim_library import (CAPTURE_FN, CLOCK_FN, INVOKE_CONTEXT_FN, INVOKE_FN, READ_FN, SIZE_FN, STATUS_FN,
                          WRITE_FN, SimPorts, VirtualBoardError, load_sim_library, sim_config)


FIRMWARE_VERSION = "virtual-board (host build of the firmware core)"


# --------------------------------------------------------------------------------------------
# The board


@dataclass
class BoardStats:
    bytes_in: int = 0  # host -> device, read by the core
    bytes_out: int = 0  # device -> host, taken from the core
    bytes_dropped: int = 0  # device output lost (stalled board, or nobody reading)
    invokes: int = 0
    context_invokes: int = 0  # a frame-context build's context model (once per frame)
    invoke_s: float = 0.0  # in the model port
    write_s: float = 0.0  # in the link port, writing to the pty
    capture_s: float = 0.0  # in the camera port
    polls: int = 0


class VirtualBoard:
    """The firmware core on this machine, reachable as a serial port at :attr:`port`.

    ``model_path``: the int8 .tflite the model port runs (default: the shipped one); it must
    be the model compiled into the simulator unless ``verify=False``. ``camera_dir``: image
    files for the camera (default: a synthetic low-light frame); ``frames``: RGB888 frames
    instead. ``write_timeout``: how long a device write waits for a host that does not read
    before the bytes are dropped (like a USB port nobody has open).
    """

    def __init__(self, model_path: str | Path | None = None, *,
                 camera_dir: str | Path | None = None, frames: list[np.ndarray] | None = None,
                 sim_library: str | Path | None = None, firmware_version: str = FIRMWARE_VERSION,
                 verify: bool = True, write_timeout: float = 5.0):
        self.model_path = Path(model_path) if model_path else DEFAULT_INT8_MODEL
        self.camera_dir = camera_dir
        self._frames = frames
        self.sim_library = sim_library
        self.firmware_version = firmware_version
        self.verify = verify
        self.write_timeout = write_timeout
        self.stats = BoardStats()
        self.port: str | None = None
        self.info: DeviceInfo | None = None
        self.config: dict[str, int] = {}
        self.camera: ImageCamera | None = None
        self.model_sha256 = ""
        self._lib = None
        self._model = None
        self._context_model = None  # a frame-context build's second model
        self.context_model_path: Path | None = None
        self.context_model_sha256 = ""
        self._model_error = ""
        self._arena_used = 0
        self._master = self._slave = -1
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._created = threading.Event()
        self._create_error: BaseException | None = None
        self._stall_at: int | None = None  # stop once bytes_out reaches this
        self._stalled = threading.Event()

    # Life cycle ---------------------------------------------------------------------------

    def start(self) -> VirtualBoard:
        if self._thread is not None:
            raise VirtualBoardError("virtual board already started")
        if not self.model_path.is_file():
            raise VirtualBoardError(f"{self.model_path}: no such model file (the int8 .tflite "
                                    f"the virtual board runs)")
        self._lib = load_sim_library(self.sim_library)
        self.config = sim_config(self._lib)
        width, height = self.config["frame_width"], self.config["frame_height"]
        self.camera = ImageCamera.for_board(self._frames, self.camera_dir, width, height)
        flatbuffer = self.model_path.read_bytes()
        self.model_sha256 = hashlib.sha256(flatbuffer).hexdigest()
        self._load_model(flatbuffer)
        if self.config["frame_context"]:
            self._load_context_model()

        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        # This board keeps the slave open too: the pty then never hangs up between host
        # sessions (whatever the device sends meanwhile waits, and a host flushes it on open).
        self.port = os.ttyname(self._slave)
        self._callbacks = SimPorts(
            None, READ_FN(self._link_read), WRITE_FN(self._link_write),
            STATUS_FN(lambda user: 0), CAPTURE_FN(self._camera_capture),
            STATUS_FN(lambda user: 0 if self._model is not None else 1),
            INVOKE_FN(self._model_invoke), INVOKE_CONTEXT_FN(self._model_invoke_context),
            SIZE_FN(lambda user: self._arena_used),
            CLOCK_FN(lambda user: (time.monotonic_ns() // 1000) & 0xFFFFFFFF))
        self._thread = threading.Thread(target=self._run, name="virtual-board", daemon=True)
        self._thread.start()
        self._created.wait()
        if self._create_error is not None:
            self.stop()
            raise VirtualBoardError(f"the simulator did not start: {self._create_error}")
        try:
            self.info = self._handshake()
            self._check_model()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stops the device; a host still connected sees the port vanish (like unplugging)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for fd in (self._master, self._slave):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = -1

    def __enter__(self) -> VirtualBoard:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # Fault injection (tests) --------------------------------------------------------------

    def stall_after(self, more_bytes: int = 0) -> None:
        """The firmware hangs once it has sent `more_bytes` more bytes: the write that
        crosses the mark is cut there (a truncated frame) and poll() is no longer called."""
        self._stalled.clear()
        self._stall_at = self.stats.bytes_out + more_bytes

    def wait_stalled(self, timeout: float) -> bool:
        return self._stalled.wait(timeout)

    def resume(self) -> None:
        """The hung firmware runs again from where it stopped."""
        self._stall_at = None
        self._stalled.clear()

    # Start-up checks ----------------------------------------------------------------------

    def _load_model(self, flatbuffer: bytes) -> None:
        try:
            self._model = TflmModel(flatbuffer)
            size = self.config["model_input_size"]
            context = (None if self._model.context_shape is None
                       else np.zeros(self._model.context_shape, np.int8))
            self._model.invoke(np.zeros(self._model.input_shape, np.int8), context)
            # Measured once here: TFLM prints its allocations to fd 2, which is redirected
            # for that moment, so never from the poll thread.
            self._arena_used = self._model.arena_used_bytes()
        except Exception as e:  # the device then reports "model not ready"
            self._model = None
            self._model_error = f"{self.model_path}: TFLM could not load it ({e})"
            return
        shape = tuple(int(v) for v in self._model.input_shape)
        if shape != (1, size, size, 3):
            self._model_error = (f"{self.model_path}: model input {shape} does not fit the "
                                 f"simulator's {size}x{size}x3 tiles")
            self._model = None

    def _load_context_model(self) -> None:
        """A frame-context build: the context model beside the tile model; both take turns
        in one arena on the board, so the arena used is the larger of the two."""
        path = self.model_path.with_name(CONTEXT_INT8_NAME)
        self.context_model_path = path
        if not path.is_file():
            self._model_error = (f"{path}: no such file; the simulator is a frame-context build and "
                                 f"needs the context model beside {self.model_path.name}")
            self._model = None
            return
        flatbuffer = path.read_bytes()
        self.context_model_sha256 = hashlib.sha256(flatbuffer).hexdigest()
        try:
            self._context_model = TflmModel(flatbuffer)
            self._context_model.invoke(np.zeros(self._context_model.input_shape, np.int8))
            self._arena_used = max(self._arena_used, self._context_model.arena_used_bytes())
        except Exception as e:
            self._model_error = f"{path}: TFLM could not load it ({e})"
            self._model = None
            return
        c = self.config
        shape = tuple(int(v) for v in self._context_model.input_shape)
        if shape != (1, c["thumbnail_height"], c["thumbnail_width"], 3):
            self._model_error = (f"{path}: context model input {shape} does not fit the simulator's "
                                 f"{c['thumbnail_width']}x{c['thumbnail_height']} thumbnail")
            self._model = None

    def _handshake(self) -> DeviceInfo:
        try:
            with Connection.open(self.port, "sim", name=f"virtual board {self.port}") as link:
                return link.hello()
        except (ProtocolError, PortOpenError, OSError) as e:
            raise VirtualBoardError(f"the virtual board did not answer HELLO: {e}") from None

    def _check_model(self) -> None:
        info = self.info
        if not self.verify:
            return
        rebuild = ("regenerate firmware/lib/tinymirnet_model with `tinymirnet quantize` (export) "
                   "for this model, then rebuild the simulator: make -C firmware/tests sim")
        if info.model_sha256 != self.model_sha256:
            raise VirtualBoardError(
                f"{self.model_path} (sha256 {self.model_sha256}) is not the model compiled into "
                f"the simulator (sha256 {info.model_sha256}, from "
                f"firmware/lib/tinymirnet_model/tinymirnet/model_settings.h); {rebuild}")
        if self._model is None:
            raise VirtualBoardError(self._model_error or f"{self.model_path}: model failed")
        if self.config["frame_context"] and info.context_model_sha256 != self.context_model_sha256:
            raise VirtualBoardError(
                f"{self.context_model_path} (sha256 {self.context_model_sha256}) is not the context "
                f"model compiled into the simulator (sha256 {info.context_model_sha256}); {rebuild}")
        q_in, q_out = self._model.input_quant, self._model.output_quant
        problems = []
        if (np.float32(q_in.scale), q_in.zero_point) != (np.float32(info.input_scale),
                                                         info.input_zero_point):
            problems.append(f"input quantization {q_in.scale:.9g}/{q_in.zero_point} (model) vs "
                            f"{info.input_scale:.9g}/{info.input_zero_point} (simulator)")
        if (np.float32(q_out.scale), q_out.zero_point) != (np.float32(info.output_scale),
                                                           info.output_zero_point):
            problems.append(f"output quantization {q_out.scale:.9g}/{q_out.zero_point} (model) "
                            f"vs {info.output_scale:.9g}/{info.output_zero_point} (simulator)")
        if problems:
            raise VirtualBoardError(f"{self.model_path} does not match the simulator build: "
                                    f"{'; '.join(problems)}; {rebuild}")

    # The poll thread ----------------------------------------------------------------------

    def _run(self) -> None:
        lib = self._lib
        try:
            if lib.tmn_sim_create(ctypes.byref(self._callbacks),
                                  self.firmware_version.encode()) != 0:
                raise VirtualBoardError("tmn_sim_create refused the ports")
        except BaseException as e:
            self._create_error = e
            self._created.set()
            return
        self._created.set()
        try:
            while not self._stop.is_set():
                if self._stall_at is not None and self.stats.bytes_out >= self._stall_at:
                    self._stalled.set()
                    time.sleep(0.005)
                    continue
                busy = lib.tmn_sim_poll()
                self.stats.polls += 1
                if busy != 1:  # idle: wait for the host's next bytes (or the frame gap timer)
                    try:
                        select.select([self._master], [], [], 0.002)
                    except (OSError, ValueError):
                        time.sleep(0.002)
        finally:
            lib.tmn_sim_destroy()

    # Port callbacks (run inside tmn_sim_poll, on the poll thread) -------------------------

    def _link_read(self, user, buffer, capacity):
        try:
            data = os.read(self._master, capacity)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:  # EIO: no slave open (cannot happen while this board holds one)
            return 0
        ctypes.memmove(buffer, data, len(data))
        self.stats.bytes_in += len(data)
        return len(data)

    def _link_write(self, user, data, size):
        started = time.perf_counter()
        chunk = ctypes.string_at(data, size)
        if self._stall_at is not None:
            allowed = max(0, self._stall_at - self.stats.bytes_out)
            self.stats.bytes_dropped += max(0, size - allowed)
            chunk = chunk[:allowed]
        view = memoryview(chunk)
        deadline = time.monotonic() + self.write_timeout
        while view:
            try:
                view = view[os.write(self._master, view):]
            except (BlockingIOError, InterruptedError):
                if self._stop.is_set() or time.monotonic() > deadline:
                    self.stats.bytes_dropped += len(view)
                    break
                try:
                    select.select([], [self._master], [], 0.01)
                except (OSError, ValueError):
                    break
            except OSError:  # the pty is gone (board stopping)
                self.stats.bytes_dropped += len(view)
                break
        self.stats.bytes_out += size
        self.stats.write_s += time.perf_counter() - started
        return size

    def _camera_capture(self, user, pixels, count):
        started = time.perf_counter()
        try:
            frame = np.ascontiguousarray(self.camera.next_frame(), dtype=np.uint16)
            if frame.size != count:
                return 1
            ctypes.memmove(pixels, frame.ctypes.data, count * 2)
            return 0
        except Exception:
            return 1
        finally:
            self.stats.capture_s += time.perf_counter() - started

    def _run_model(self, model, inputs, output, output_size: int) -> int:
        """One model port call: `inputs` as (pointer, size) pairs (size 0: None) -> `model` on
        TFLM -> `output_size` int8 values at `output`. 0 on success, 1 on any failure."""
        started = time.perf_counter()
        try:
            arrays = [np.ctypeslib.as_array(ptr, shape=(size,)).copy() if size else None
                      for ptr, size in inputs]
            out = np.ascontiguousarray(model.invoke(*arrays), dtype=np.int8)
            if out.size != output_size:
                return 1
            ctypes.memmove(output, out.ctypes.data, output_size)
            return 0
        except Exception:
            return 1
        finally:
            self.stats.invoke_s += time.perf_counter() - started

    def _model_invoke_context(self, user, thumbnail, thumbnail_size, context, context_size):
        if self._model is None or self._context_model is None:
            return 1
        status = self._run_model(self._context_model, [(thumbnail, thumbnail_size)], context, context_size)
        self.stats.context_invokes += status == 0
        return status

    def _model_invoke(self, user, model_input, context, context_size, model_output, size):
        if self._model is None:
            return 1
        status = self._run_model(self._model, [(model_input, size), (context, context_size)], model_output, size)
        self.stats.invokes += status == 0
        return status
