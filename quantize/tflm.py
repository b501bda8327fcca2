"""Running an int8 model on the host with the real TensorFlow Lite Micro kernels (the
`tflite_micro` runtime), measuring its arena, and checking it against TFLite's reference
kernels."""
from __future__ import annotations

import os
import re
import sys
import tempfile
from dataclasses import dataclass

import numpy as np

_ARENA_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")
PROBE_ARENA = 1024 * 1024  # large enough for any model this project builds


@dataclass(frozen=True)
class QuantParams:
    scale: float
    zero_point: int


class TflmModel:
    """One int8 model in a TFLM interpreter: int8 tiles in, int8 tiles out."""

    def __init__(self, flatbuffer: bytes, arena_size: int = PROBE_ARENA):
        from tflite_micro import runtime
        from .convert import check_not_degenerate
        if flatbuffer[4:8] != b"TFL3":  # the TFLite flatbuffer file identifier
            raise ValueError("not a TFLite model (no 'TFL3' file identifier)")
        check_not_degenerate(flatbuffer)  # TFLM abort()s the process on such a model
        self.flatbuffer = flatbuffer
        self.interpreter = runtime.Interpreter.from_bytes(flatbuffer, arena_size=arena_size)
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
        """The arena TFLM allocated, parsed from print_allocations() (it prints to the C
        stderr, so the file descriptor is redirected, not sys.stderr)."""
        return parse_arena_total(capture_fd_output(2, self.interpreter.print_allocations))


def _scale_zp(details) -> tuple[float, int]:
    q = details.get("quantization_parameters", {})
    scales, zps = q.get("scales"), q.get("zero_points")
    if scales is not None and len(scales):
        return float(scales[0]), int(zps[0])
    return tuple(details["quantization"])  # type: ignore[return-value]


def input_roles(flatbuffer: bytes) -> tuple[int, int | None]:
    """(index of the image input, index of the context input or None): a model has one image
    input (a tile or a thumbnail, H x W > 1) and, for a frame-context tile model, a 1x1xN
    context vector."""
    from tensorflow.lite.python import schema_py_generated as schema
    sg = schema.ModelT.InitFromPackedBuf(flatbuffer, 0).subgraphs[0]
    shapes = [tuple(sg.tensors[i].shape) for i in sg.inputs]
    images = [k for k, shp in enumerate(shapes) if len(shp) == 4 and shp[1] * shp[2] > 1]
    vectors = [k for k, shp in enumerate(shapes) if len(shp) == 4 and shp[1] * shp[2] == 1]
    if len(images) != 1 or len(vectors) > 1 or len(images) + len(vectors) != len(shapes):
        raise ValueError(f"model inputs {shapes}: expected one image and at most one 1x1xN context")
    return images[0], (vectors[0] if vectors else None)


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
    """The same model in tf.lite.Interpreter with the reference (non-XNNPACK) kernels."""

    def __init__(self, flatbuffer: bytes):
        import tensorflow as tf
        self.interpreter = tf.lite.Interpreter(
            model_content=flatbuffer,
            experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
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


def op_names(flatbuffer: bytes) -> list[str]:
    """The builtin operators the model uses, sorted, as TFLite names them (CONV_2D, ...)."""
    from tensorflow.lite.python import schema_py_generated as schema
    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    ops = set()
    for code in model.operatorCodes:
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        ops.add(names[builtin])
    return sorted(ops)


# ----- pixels <-> int8, exactly as the firmware's lookup tables do it -----

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
    int8 tiles -> TFLM -> uint8 frame. `exposure_target` has no default: it must be the one
    the board uses (model/tiling.json), so every caller says which."""
    from tinymirnet.model.exposure import normalize_exposure
    from tinymirnet.model.tiling import run_tiled
    q_in = quantize_pixels(normalize_exposure(low_u8, exposure_target), model.input_quant)

    def infer(batch):
        return np.stack([model.invoke(t) for t in batch])

    out_q = run_tiled(q_in, tile, halo, infer)
    return dequantize_pixels(out_q, model.output_quant)


def load_tile_model(tflite_path, tile: int, halo: int) -> TflmModel:
    """The int8 model on TFLM, checked to take one tile plus its halo."""
    from pathlib import Path
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
    """An eval method: the int8 model tile by tile in the TFLM runtime."""
    return lambda low: int8_tiled(model, low, tile, halo, exposure_target=exposure_target).astype(np.float32) / 255.0


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
    from tinymirnet.model.thumbnail import thumbnail
    thumb = quantize_pixels(thumbnail(frame_u8, *thumbnail_size), context_model.input_quant)
    return requantize(context_model.invoke(thumb), context_model.output_quant, tile_model.context_quant)


def int8_frame_context(context_model: TflmModel, tile_model: TflmModel, low_u8: np.ndarray,
                       tile: int, halo: int, thumbnail_size: tuple[int, int], *,
                       exposure_target: int) -> np.ndarray:
    """`int8_tiled` for a frame-context network: exposure gain -> thumbnail of the frame ->
    context model -> context vector requantized for the tile model -> every tile with it."""
    from tinymirnet.model.exposure import normalize_exposure
    from tinymirnet.model.tiling import run_tiled
    frame = normalize_exposure(low_u8, exposure_target)
    context = frame_context_vector(context_model, tile_model, frame, thumbnail_size)

    def infer(batch):
        return np.stack([tile_model.invoke(t, context) for t in batch])

    out_q = run_tiled(quantize_pixels(frame, tile_model.input_quant), tile, halo, infer)
    return dequantize_pixels(out_q, tile_model.output_quant)


def int8_frame_context_method(context_model: TflmModel, tile_model: TflmModel, tile: int, halo: int,
                              thumbnail_size: tuple[int, int], *, exposure_target: int):
    """An eval method: a frame-context network's two int8 models in the TFLM runtime."""
    return lambda low: int8_frame_context(context_model, tile_model, low, tile, halo, thumbnail_size,
                                          exposure_target=exposure_target).astype(np.float32) / 255.0
