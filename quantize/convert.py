"""Full-integer int8 conversion: int8 input and output, a representative dataset of LoL tiles,
a fixed input shape (one tile plus its halo, batch 1)."""
from __future__ import annotations

import flatbuffers
import numpy as np
import tensorflow as tf
import tf_keras as keras

from tinymirnet.model.data import (find_pairs, find_photos, read_rgb, resolve_split, split_photos,
                                   split_train_val)
from tinymirnet.model.exposure import normalize_exposure
from tinymirnet.model.network import MirnetConfig, build_context_model, build_mirnet, build_tile_model
from tinymirnet.model.thumbnail import thumbnail

from .flatbuffer import DEGENERATE_SCALE, degenerate_tensors, tflite_schema


def fixed_shape_model(float_model, cfg: MirnetConfig, size: int):
    """The same weights in a model with a fixed size x size input and batch 1."""
    fixed = build_mirnet(cfg, input_shape=(size, size, 3), batch_size=1)
    fixed.set_weights(float_model.get_weights())
    return fixed


def fixed_frame_context_models(float_model, cfg: MirnetConfig, size: int):
    """A frame-context network's two fixed-shape, batch-1 models on a copy of the weights: the
    context model (thumbnail -> context vector) and the tile model ([tile, context] -> tile)."""
    fixed = fixed_shape_model(float_model, cfg, size)
    return (build_context_model(cfg, fixed, batch_size=1),
            build_tile_model(cfg, fixed, (size, size, 3), batch_size=1))


def representative_tiles(data_dir, size: int, count: int = 256, seed: int = 0,
                         bright_fraction: float = 0.0, *, exposure_target: int,
                         thumbnail_size: tuple[int, int] | None = None, scenes=None,
                         scene_fraction: float = 0.5):
    """Random size x size crops of training-split low-light images (never eval15).

    Only low-light crops by default: the int8 activation ranges are per-tensor min/max over the
    calibration set, and normal-light crops (bright_fraction > 0) inflate every range several
    times over, leaving the dark inputs the model is made for only a few codes per feature.
    Measured on eval15 (tile 20+2x4): int8-vs-float PSNR 25.1 dB with 10% normal-light crops,
    29.8 dB with none; SSIM to ground truth 0.45 -> 0.57. Input pixels above the calibrated
    range (about 0.77 on LoL) clip, which only touches light sources in a low-light frame.
    Low-light frames are exposure-normalised (model/exposure.py) before cropping, as on the
    board, when `exposure_target` is set.

    With `thumbnail_size` (a frame-context network), returns (tiles, thumbnails): the
    thumbnail of the whole frame each tile was cut from, as float32 too.

    With `scenes` (a folder of real photos, e.g. SICE train/), `scene_fraction` of the crops
    come from the training part of those photos instead (exposure-normalised alike): the
    ranges then cover what the camera sees outside LoL (lamps, skies, bright frames)."""
    train, _ = split_train_val(find_pairs(resolve_split(data_dir, "train")))
    rng = np.random.default_rng(seed)
    photos = []
    if scenes:
        photos, _ = split_photos(find_photos(scenes))
        photos = [photos[i] for i in rng.choice(len(photos), size=min(round(count * scene_fraction), len(photos)),
                                                replace=False)]
    picks = rng.choice(len(train), size=min(count - len(photos), len(train)), replace=False)
    sources = [("lol", i) for i in picks] + [("scene", p) for p in photos]
    tiles, thumbs = [], []
    for k, (kind, i) in enumerate(sources):
        bright = kind == "lol" and k < round(len(picks) * bright_fraction)
        if kind == "scene":
            img = normalize_exposure(read_rgb(i), exposure_target)
        else:
            img = read_rgb(train[i].high) if bright else normalize_exposure(read_rgb(train[i].low), exposure_target)
        h, w = img.shape[:2]
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        tiles.append(img[y:y + size, x:x + size])
        if thumbnail_size:
            thumbs.append(thumbnail(img, *thumbnail_size))
    tiles = np.stack(tiles).astype(np.float32) / 255.0
    return (tiles, np.stack(thumbs).astype(np.float32) / 255.0) if thumbnail_size else tiles


def synthetic_tiles(size: int, count: int = 16, seed: int = 0) -> np.ndarray:
    """Calibration data for measuring sizes only (no dataset needed): dark noise plus one
    full-range ramp so the input range is [0, 1]."""
    rng = np.random.default_rng(seed)
    tiles = (rng.random((count, size, size, 3)) ** 3 * 0.5).astype(np.float32)
    tiles[0] = np.linspace(0, 1, size * size * 3, dtype=np.float32).reshape(size, size, 3)
    return tiles


def convert_int8(fixed_model, calibration, widen_ranges: bool = True) -> bytes:
    """The TFLite flatbuffer with int8 weights, activations, inputs and outputs. `calibration`
    is an array of samples, or (several inputs) a tuple of arrays in the model's input order.
    `widen_ranges`: give tensors the quantizer ties to one scale a range that holds them all
    (`widen_tied_ranges`); False is the converter as it comes."""
    columns = calibration if isinstance(calibration, tuple) else (calibration,)
    names = [t.name.split(":")[0] for t in fixed_model.inputs]

    def representative():
        # Keyed by input name: the converter's signature does not keep the Keras input order.
        for k in range(len(columns[0])):
            yield {name: c[k][None] for name, c in zip(names, columns)}

    conv = tf.lite.TFLiteConverter.from_keras_model(fixed_model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    if not widen_ranges:
        return strip_tensor_names(conv.convert())
    # The converter's own two steps (lite.py: calibrate, then mlir_quantize with the same
    # arguments), with the calibrated ranges of tied tensors widened in between.
    # PRIVATE TFLite API, pinned by tensorflow<2.22 and constraints.txt. What breaks when it
    # moves: `_experimental_calibrate_only` (an attribute of TFLiteConverterV2) makes convert()
    # return the calibrated float model instead of quantizing; if it is renamed or ignored,
    # convert() quantizes at once and widen_tied_ranges finds no calibration statistics (it then
    # raises). `_deduplicate_readonly_buffers` (a function of tensorflow.lite.python.lite) merges
    # identical constant buffers, as convert() does itself; without it the flatbuffers grow.
    # tests/test_quantize.py pins both: with nothing widened the result equals the converter's
    # own output tensor for tensor.
    from tensorflow.lite.python.convert import mlir_quantize
    from tensorflow.lite.python.lite import _deduplicate_readonly_buffers
    conv._experimental_calibrate_only = True
    calibrated = open_collapsed_ranges(widen_tied_ranges(conv.convert()))
    return strip_tensor_names(_deduplicate_readonly_buffers(
        mlir_quantize(calibrated, False, input_data_type=tf.int8, output_data_type=tf.int8)))


def _pack(model) -> bytes:
    builder = flatbuffers.Builder(1 << 16)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def strip_tensor_names(flatbuffer: bytes) -> bytes:
    """The flatbuffer without the names of its intermediate tensors (inputs and outputs keep
    theirs). The converter names each tensor after every TF op fused into it, a third of the
    bytes of this network's flatbuffer (46 KB of the 139 KB tile model), and neither TFLM nor
    the firmware reads them: what TFLite's flatbuffer_utils.strip_strings does, less the
    model's interface."""
    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    for sg in model.subgraphs:
        keep = set(sg.inputs) | set(sg.outputs)
        for i, t in enumerate(sg.tensors):
            if i not in keep:
                t.name = None
    return _pack(model)


# Ops whose int8 kernels read and write one scale and zero point: the quantizer gives all their
# inputs and outputs one range, and for CONCATENATION it takes the output's calibrated range.
TIED_RANGE_OPS = ("CONCATENATION", "REDUCE_MAX")


def widen_tied_ranges(calibrated: bytes) -> bytes:
    """A calibrated (float, min/max-annotated) flatbuffer with every group of tensors that
    TIED_RANGE_OPS tie together given the union of the group's ranges.

    Why: spatial attention concatenates the channel mean and the channel max of a DAU's
    features, and REDUCE_MAX ties the max to the features. The quantizer then gives the
    features the concatenation's range, whose low end is the mean's: measured on the shipped
    network, DAU features reaching -18.4 were clipped at -2.5 (the per-op error of those convs
    was 4 to 10 quantization steps RMS instead of 0.29). With the union, every member of the
    group gets a range that holds all of its values."""
    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(calibrated, 0)
    codes = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    for sg in model.subgraphs:
        parent = list(range(len(sg.tensors)))

        def root(i):
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        def ranged(i):
            q = sg.tensors[i].quantization
            return i >= 0 and q is not None and q.min is not None and len(q.min) == 1

        for op in sg.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if codes.get(max(code.builtinCode, code.deprecatedBuiltinCode)) not in TIED_RANGE_OPS:
                continue
            members = [i for i in list(op.inputs) + list(op.outputs) if ranged(i)]
            for i in members[1:]:
                parent[root(i)] = root(members[0])
        groups: dict[int, list[int]] = {}
        for i in range(len(sg.tensors)):
            if ranged(i):
                groups.setdefault(root(i), []).append(i)
        for members in groups.values():
            lo = min(float(sg.tensors[i].quantization.min[0]) for i in members)
            hi = max(float(sg.tensors[i].quantization.max[0]) for i in members)
            for i in members:
                sg.tensors[i].quantization.min = np.array([lo], np.float32)
                sg.tensors[i].quantization.max = np.array([hi], np.float32)
    return _pack(model)


def open_collapsed_ranges(calibrated: bytes) -> bytes:
    """A calibrated flatbuffer with every activation range that collapsed to a point (a unit
    whose ReLU stayed at 0 on every calibration frame, e.g. a channel-attention squeeze unit that
    training left dead) opened to [min, min + 1]. The quantized value of the calibrated point is
    still exact, and TFLM, which abort()s on a zero scale, runs the model; a frame that does
    wake the unit reads it at 8-bit steps of 1/255 up to 1."""
    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(calibrated, 0)
    opened = 0
    for sg in model.subgraphs:
        for t in sg.tensors:
            q = t.quantization
            if q is None or q.min is None or len(q.min) != 1:
                continue
            lo, hi = float(q.min[0]), float(q.max[0])
            if hi - lo < DEGENERATE_SCALE * 255:
                q.max = np.array([lo + 1.0], np.float32)
                opened += 1
    return _pack(model) if opened else calibrated




def random_weights_frame_context_int8(cfg: MirnetConfig, size: int, seeds=range(8)) -> tuple[bytes, bytes]:
    """(tile model, context model) int8 flatbuffers of a frame-context `cfg` with random weights
    and synthetic calibration, for measuring costs. The attention squeezes get a small positive
    bias (as training gives them) so that no random draw leaves them dead."""
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        model = build_mirnet(cfg, input_shape=(size, size, 3), batch_size=1)
        for layer in model.layers:
            if layer.name.endswith("_squeeze"):
                kernel, bias = layer.get_weights()
                layer.set_weights([kernel, bias + 0.05])
        context_model, tile_model = fixed_frame_context_models(model, cfg, size)
        tiles = synthetic_tiles(size)
        thumbs = synthetic_tiles(max(cfg.thumbnail_width, cfg.thumbnail_height))[:, :cfg.thumbnail_height,
                                                                                 :cfg.thumbnail_width]
        thumbs = np.resize(thumbs, (len(tiles),) + thumbs.shape[1:])
        tile_fb = convert_int8(tile_model, (tiles, context_model.predict(thumbs, verbose=0)))
        context_fb = convert_int8(context_model, thumbs)
        if not degenerate_tensors(tile_fb) and not degenerate_tensors(context_fb):
            return tile_fb, context_fb
    raise ValueError(f"no random draw of {cfg} gave a non-degenerate int8 pair in {len(seeds)} seeds")


def random_weights_int8(cfg: MirnetConfig, size: int, seeds=range(8)) -> bytes:
    """An int8 model of `cfg` with random weights and synthetic calibration, for measuring sizes.
    Seeded, and re-drawn when a random draw leaves a ReLU dead on the calibration tiles."""
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        flatbuffer = convert_int8(build_mirnet(cfg, input_shape=(size, size, 3), batch_size=1),
                                  synthetic_tiles(size))
        if not degenerate_tensors(flatbuffer):
            return flatbuffer
    raise ValueError(f"no random draw of {cfg} gave a non-degenerate int8 model in {len(seeds)} seeds")
