"""Running an int8 model on the host with the board's own TensorFlow Lite Micro: Chirale_TensorFlowLite
2.0.0 (the library platformio.ini pins, from ../shared/firmware-deps) compiled for this machine
(firmware/tflm, `make -C firmware/tflm host`) and called through ctypes, so every host figure is
computed by the kernels the board runs. The `tflite_micro` Python runtime (a newer TFLM: its MEAN
rounds differently) stays available as a cross-check (`runtime="python"`). Also: measuring the
arena, and checking a model against TFLite's reference kernels."""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinymirnet.model.exposure import guard, normalize_exposure
from tinymirnet.model.lightness_order import finish
from tinymirnet.model.paths import BOARD_TFLM_LIB, FIRMWARE_DEPS, TFLM_DIR
from tinymirnet.model.thumbnail import thumbnail
from tinymirnet.model.tiling import run_tiled

from .flatbuffer import check_not_degenerate, input_roles
from .native_build import NativeBuildError, ensure_built


_ARENA_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")
PROBE_ARENA = 1024 * 1024  # large enough for any model this project builds

BOARD_TFLM = "Chirale_TensorFlowLite 2.0.0 (the board's TFLM, host build)"
RUNTIMES = ("board", "python")


@dataclass(frozen=True)
class QuantParams:
    scale: float
    zero_point: int


class _TensorInfo(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("dims", ctypes.c_int), ("shape", ctypes.c_int * 6),
                ("scale", ctypes.c_float), ("zero_point", ctypes.c_int32), ("bytes", ctypes.c_size_t)]


_lib = None


def board_tflm_path() -> Path:
    """The host build of the board's TFLM: TINYMIRNET_TFLM_LIB, else the repository's build folder."""
    return Path(os.environ.get("TINYMIRNET_TFLM_LIB", BOARD_TFLM_LIB))


def board_tflm_buildable() -> bool:
    """A checkout with ../shared/firmware-deps beside it, make and g++: the library can be built."""
    return ((TFLM_DIR / "Makefile").is_file() and (FIRMWARE_DEPS / "Chirale_TensorFlowLite").is_dir()
            and all(shutil.which(t) for t in ("make", "g++")))


def ensure_board_tflm() -> Path:
    """The host build of the board's TFLM, compiled once with `make -C firmware/tflm host` (about
    3 minutes on 2 cores) when it is missing."""
    path = board_tflm_path()
    if path.is_file():
        return path
    if "TINYMIRNET_TFLM_LIB" in os.environ or not board_tflm_buildable():
        raise NativeBuildError(f"the board's TFLM is not built for this machine ({path} is missing): build it with "
                               f"`make -C firmware/tflm host` in a checkout with ../shared/firmware-deps beside it, "
                               f"or set TINYMIRNET_TFLM=python to use the tflite_micro runtime instead")
    print("building the board's TFLM (Chirale_TensorFlowLite 2.0.0) for this machine, once: "
          "make -C firmware/tflm host", file=sys.stderr, flush=True)
    return ensure_built(path, TFLM_DIR, "host", None, jobs=2)


def _board_lib():
    global _lib
    if _lib is None:
        path = ensure_board_tflm()
        lib = ctypes.CDLL(str(path))
        lib.tm_tflm_create.restype = ctypes.c_void_p
        lib.tm_tflm_create.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
        lib.tm_tflm_destroy.argtypes = [ctypes.c_void_p]
        for name in ("tm_tflm_inputs", "tm_tflm_outputs", "tm_tflm_arena_used"):
            getattr(lib, name).restype = ctypes.c_size_t
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        for name in ("tm_tflm_input_info", "tm_tflm_output_info"):
            getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(_TensorInfo)]
        for name in ("tm_tflm_set_input", "tm_tflm_get_output"):
            getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t]
        lib.tm_tflm_invoke.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.tm_tflm_library.restype = ctypes.c_char_p
        _lib = lib
    return _lib


class _BoardInterpreter:
    """The interface of tflite_micro's runtime.Interpreter that TflmModel uses, over the host
    build of the board's TFLM."""

    def __init__(self, flatbuffer: bytes, arena_size: int):
        self._lib = _board_lib()
        error = ctypes.create_string_buffer(1024)
        self._h = self._lib.tm_tflm_create(flatbuffer, len(flatbuffer), arena_size, error, len(error))
        if not self._h:
            raise RuntimeError(f"the board's TFLM refused the model: {error.value.decode(errors='replace').strip()}")
        self._in = [self._info(self._lib.tm_tflm_input_info, i) for i in range(self._lib.tm_tflm_inputs(self._h))]
        self._out = [self._info(self._lib.tm_tflm_output_info, i) for i in range(self._lib.tm_tflm_outputs(self._h))]

    def __del__(self):
        if getattr(self, "_h", None):
            self._lib.tm_tflm_destroy(self._h)
            self._h = None

    def _info(self, fn, index: int) -> dict:
        info = _TensorInfo()
        if fn(self._h, index, ctypes.byref(info)) != 0:
            raise RuntimeError(f"tensor {index}: no such tensor")
        dtype = {9: np.int8, 1: np.float32}[info.type]
        return {"shape": np.array(info.shape[:info.dims]), "dtype": dtype, "quantization": (float(info.scale), int(info.zero_point)),
                "bytes": int(info.bytes)}

    def get_input_details(self, index: int) -> dict:
        return self._in[index]

    def get_output_details(self, index: int) -> dict:
        return self._out[index]

    def set_input(self, value: np.ndarray, index: int) -> None:
        data = np.ascontiguousarray(value, self._in[index]["dtype"])
        if self._lib.tm_tflm_set_input(self._h, index, data.ctypes.data, data.nbytes) != 0:
            raise ValueError(f"input {index}: {data.nbytes} bytes, the model takes {self._in[index]['bytes']}")

    def invoke(self) -> None:
        error = ctypes.create_string_buffer(1024)
        if self._lib.tm_tflm_invoke(self._h, error, len(error)) != 0:
            raise RuntimeError(f"the board's TFLM failed to invoke: {error.value.decode(errors='replace').strip()}")

    def get_output(self, index: int) -> np.ndarray:
        d = self._out[index]
        out = np.empty(tuple(d["shape"]), d["dtype"])
        self._lib.tm_tflm_get_output(self._h, index, out.ctypes.data, out.nbytes)
        return out

    def arena_used_bytes(self) -> int:
        return int(self._lib.tm_tflm_arena_used(self._h))


_warned_fallback = False


def default_runtime() -> str:
    """"board" (the board's TFLM) unless TINYMIRNET_TFLM=python asks for the tflite_micro
    runtime, or the board's TFLM can be neither found nor built here (an installed wheel without
    the firmware sources): then "python", said once on stderr; reports name the runtime."""
    global _warned_fallback
    runtime = os.environ.get("TINYMIRNET_TFLM")
    if runtime is None:
        if board_tflm_path().is_file() or board_tflm_buildable():
            return "board"
        if not _warned_fallback:
            print("note: the board's TFLM is not available here (no checkout with ../shared/firmware-deps); "
                  "int8 figures come from the tflite_micro runtime, a newer TFLM than the board's",
                  file=sys.stderr)
            _warned_fallback = True
        return "python"
    if runtime not in RUNTIMES:
        raise ValueError(f"TINYMIRNET_TFLM={runtime!r}: expected one of {', '.join(RUNTIMES)}")
    return runtime


def runtime_name(runtime: str) -> str:
    """Which TFLM computes a figure, for reports."""
    if runtime == "board":
        return BOARD_TFLM
    from importlib.metadata import version
    return f"tflite_micro {version('tflite_micro')} (Python runtime, a newer TFLM than the board's)"


class TflmModel:
    """One int8 model in a TFLM interpreter: int8 tiles in, int8 tiles out."""

    def __init__(self, flatbuffer: bytes, arena_size: int = PROBE_ARENA, runtime: str | None = None):
        if flatbuffer[4:8] != b"TFL3":  # the TFLite flatbuffer file identifier
            raise ValueError("not a TFLite model (no 'TFL3' file identifier)")
        check_not_degenerate(flatbuffer)  # TFLM abort()s the process on such a model
        self.flatbuffer = flatbuffer
        self.runtime = runtime or default_runtime()
        if self.runtime == "board":
            self.interpreter = _BoardInterpreter(flatbuffer, arena_size)
        elif self.runtime == "python":
            from tflite_micro import runtime as tflm_runtime
            self.interpreter = tflm_runtime.Interpreter.from_bytes(flatbuffer, arena_size=arena_size)
        else:
            raise ValueError(f"runtime {self.runtime!r}: expected one of {', '.join(RUNTIMES)}")
        self.library = runtime_name(self.runtime)
        self.image_index, self.context_index = input_roles(flatbuffer)
        inp = self.interpreter.get_input_details(self.image_index)
        out = self.interpreter.get_output_details(0)
        self.input_shape = tuple(inp["shape"])
        self.input_quant = QuantParams(*_scale_zp(inp))
        self.output_quant = QuantParams(*_scale_zp(out))
        self.context_shape = self.context_quant = None
        if self.context_index is not None:
            ctx = self.interpreter.get_input_details(self.context_index)
            self.context_shape, self.context_quant = tuple(ctx["shape"]), QuantParams(*_scale_zp(ctx))

    def invoke(self, tile: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
        """One int8 input (a tile, or a thumbnail for a context model) -> its int8 output; a
        frame-context tile model also takes the frame's int8 context vector."""
        if self.context_index is not None:
            if context is None:
                raise ValueError("this tile model takes the frame's context vector as a second input")
            self.interpreter.set_input(context.reshape(self.context_shape).astype(np.int8), self.context_index)
        self.interpreter.set_input(tile.reshape(self.input_shape).astype(np.int8), self.image_index)
        self.interpreter.invoke()
        return self.interpreter.get_output(0)[0].copy()

    def arena_used_bytes(self) -> int:
        """The arena TFLM allocated on this (64-bit) machine: the board's TFLM says it directly;
        the Python runtime's figure is parsed from print_allocations() (it prints to the C
        stderr, so the file descriptor is redirected, not sys.stderr)."""
        if self.runtime == "board":
            return self.interpreter.arena_used_bytes()
        return parse_arena_total(capture_fd_output(2, self.interpreter.print_allocations))


def _scale_zp(details) -> tuple[float, int]:
    q = details.get("quantization_parameters", {})
    scales, zps = q.get("scales"), q.get("zero_points")
    if scales is not None and len(scales):
        return float(scales[0]), int(zps[0])
    return tuple(details["quantization"])  # type: ignore[return-value]


def parse_arena_total(text: str) -> int:
    m = _ARENA_TOTAL.search(text)
    if not m:
        raise RuntimeError(f"no 'Arena allocation total' in TFLM's allocation report: {text[:200]!r}")
    return int(m.group(1))


def capture_fd_output(fd: int, fn) -> str:
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            fn()
        finally:
            os.dup2(saved, fd)
            os.close(saved)
        tmp.seek(0)
        return tmp.read().decode(errors="replace")


def arena_after_one_run(m: TflmModel) -> int:
    """Arena bytes TFLM needs for a loaded model: run once on zeros, then read its report."""
    context = np.zeros(m.context_shape, np.int8) if m.context_shape else None
    m.invoke(np.zeros(m.input_shape, np.int8), context)
    return m.arena_used_bytes()


def measure_arena(flatbuffer: bytes) -> int:
    """Arena bytes TFLM needs for this model."""
    return arena_after_one_run(TflmModel(flatbuffer))


class ReferenceModel:
    """The same model in tf.lite.Interpreter with the reference (non-XNNPACK) kernels.

    TFLite's reference resolver lacks int8 DEPTH_TO_SPACE (opcode version 2); a model with it
    runs on the builtin kernels without delegates instead (`resolver` says which). Depth-to-space
    only moves bytes, and every other op's builtin int8 kernel is TFLite's reference arithmetic."""

    def __init__(self, flatbuffer: bytes):
        import tensorflow as tf
        kinds = tf.lite.experimental.OpResolverType
        for kind in (kinds.BUILTIN_REF, kinds.BUILTIN_WITHOUT_DEFAULT_DELEGATES):
            try:
                self.interpreter = tf.lite.Interpreter(model_content=flatbuffer, experimental_op_resolver_type=kind)
                break
            except ValueError as e:
                if "Didn't find op for builtin opcode" not in str(e) or kind != kinds.BUILTIN_REF:
                    raise
        self.resolver = kind.name
        self.interpreter.allocate_tensors()
        image, context = input_roles(flatbuffer)
        details = self.interpreter.get_input_details()
        self.inp = details[image]
        self.ctx = details[context] if context is not None else None
        self.out = self.interpreter.get_output_details()[0]

    def invoke(self, tile: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
        if self.ctx is not None:
            self.interpreter.set_tensor(self.ctx["index"], context.reshape(self.ctx["shape"]).astype(np.int8))
        self.interpreter.set_tensor(self.inp["index"], tile.reshape(self.inp["shape"]).astype(np.int8))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.out["index"])[0].copy()


def quantize_pixels(pixels_u8: np.ndarray, q: QuantParams) -> np.ndarray:
    """uint8 pixels -> int8 model input: round(p / 255 / scale) + zero_point, half away from
    zero, clamped (the firmware's 256-entry table is built with the same formula)."""
    real = np.arange(256, dtype=np.float32) / np.float32(255.0) / np.float32(q.scale)
    table = np.clip(_round_half_away(real) + q.zero_point, -128, 127).astype(np.int8)
    return table[pixels_u8]


def dequantize_pixels(values_i8: np.ndarray, q: QuantParams) -> np.ndarray:
    """int8 model output -> uint8 pixels: round((q - zero_point) * scale * 255), clamped."""
    codes = np.arange(-128, 128, dtype=np.float32)
    real = (codes - np.float32(q.zero_point)) * np.float32(q.scale) * np.float32(255.0)
    table = np.clip(_round_half_away(real), 0, 255).astype(np.uint8)
    return table[values_i8.astype(np.int16) + 128]


def _round_half_away(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def int8_tiled(model: TflmModel, low_u8: np.ndarray, tile: int, halo: int, *,
               exposure_target: int) -> np.ndarray:
    """The board's pipeline on the host: uint8 frame -> exposure gain (model/exposure.py) ->
    int8 tiles -> TFLM -> uint8 frame -> the colour and highlight guards. `exposure_target` has no default: it must be the one
    the board uses (model/tiling.json), so every caller says which."""
    q_in = quantize_pixels(normalize_exposure(low_u8, exposure_target), model.input_quant)

    def infer(batch):
        return np.stack([model.invoke(t) for t in batch])

    out_q = run_tiled(q_in, tile, halo, infer)
    return guard(low_u8, dequantize_pixels(out_q, model.output_quant))


def load_tile_model(tflite_path, tile: int, halo: int) -> TflmModel:
    """The int8 model on TFLM, checked to take one tile plus its halo."""
    try:
        model = TflmModel(Path(tflite_path).read_bytes())
    except OSError as e:
        raise ValueError(f"{tflite_path}: cannot read it ({e.strerror})") from None
    except ValueError as e:
        raise ValueError(f"{tflite_path}: {e}") from None
    size = model.input_shape[1]
    if size != tile + 2 * halo:
        raise ValueError(f"{tflite_path}: model input {size} != tile {tile} + 2 * halo {halo}")
    return model


def int8_method(model: TflmModel, tile: int, halo: int, *, exposure_target: int):
    """An eval method: the int8 model tile by tile in the TFLM runtime, then the host's last
    steps on the stitched frame (model/lightness_order.py `finish`)."""
    return lambda low: finish(low, int8_tiled(model, low, tile, halo, exposure_target=exposure_target)
                              ).astype(np.float32) / 255.0


# ----- a frame-context network: the context model's int8 output -> the tile model's input -----

def requantize(values_i8: np.ndarray, src: QuantParams, dst: QuantParams) -> np.ndarray:
    """int8 values of one quantization -> another: round((q - zp_src) * scale_src / scale_dst)
    + zp_dst, half away from zero, clamped; in float32 as the firmware computes it."""
    real = (values_i8.astype(np.float32) - np.float32(src.zero_point)) * np.float32(src.scale)
    return np.clip(_round_half_away(real / np.float32(dst.scale)) + dst.zero_point, -128, 127).astype(np.int8)


def frame_context_vector(context_model: TflmModel, tile_model: TflmModel, frame_u8: np.ndarray,
                         thumbnail_size: tuple[int, int]) -> np.ndarray:
    """The int8 context vector the tile model gets for an (exposure-normalised) frame: its
    thumbnail -> the context model -> requantized for the tile model's context input."""
    thumb = quantize_pixels(thumbnail(frame_u8, *thumbnail_size), context_model.input_quant)
    return requantize(context_model.invoke(thumb), context_model.output_quant, tile_model.context_quant)


def int8_frame_context(context_model: TflmModel, tile_model: TflmModel, low_u8: np.ndarray,
                       tile: int, halo: int, thumbnail_size: tuple[int, int], *,
                       exposure_target: int) -> np.ndarray:
    """`int8_tiled` for a frame-context network: exposure gain -> thumbnail of the frame ->
    context model -> context vector requantized for the tile model -> every tile with it ->
    the colour and highlight guards."""
    frame = normalize_exposure(low_u8, exposure_target)
    context = frame_context_vector(context_model, tile_model, frame, thumbnail_size)

    def infer(batch):
        return np.stack([tile_model.invoke(t, context) for t in batch])

    out_q = run_tiled(quantize_pixels(frame, tile_model.input_quant), tile, halo, infer)
    return guard(low_u8, dequantize_pixels(out_q, tile_model.output_quant))


def int8_frame_context_method(context_model: TflmModel, tile_model: TflmModel, tile: int, halo: int,
                              thumbnail_size: tuple[int, int], *, exposure_target: int):
    """An eval method: a frame-context network's two int8 models in the TFLM runtime, then the
    host's last steps on the stitched frame (model/lightness_order.py `finish`)."""
    return lambda low: finish(low, int8_frame_context(context_model, tile_model, low, tile, halo, thumbnail_size,
                                                      exposure_target=exposure_target)).astype(np.float32) / 255.0
