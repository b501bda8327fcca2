"""Full-integer int8 conversion: int8 input and output, a representative dataset of LoL tiles,
a fixed input shape (one tile plus its halo, batch 1)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tinymirnet.model.data import find_pairs, read_rgb, resolve_split, split_train_val
from tinymirnet.model.network import MirnetConfig, build_mirnet


def fixed_shape_model(float_model, cfg: MirnetConfig, size: int):
    """The same weights in a model with a fixed size x size input and batch 1."""
    fixed = build_mirnet(cfg, input_shape=(size, size, 3), batch_size=1)
    fixed.set_weights(float_model.get_weights())
    return fixed


def representative_tiles(data_dir, size: int, count: int = 256, seed: int = 0,
                         bright_fraction: float = 0.0) -> np.ndarray:
    """Random size x size crops of training-split low-light images (never eval15).

    Only low-light crops by default: the int8 activation ranges are per-tensor min/max over the
    calibration set, and normal-light crops (bright_fraction > 0) inflate every range several
    times over, leaving the dark inputs the model is made for only a few codes per feature.
    Measured on eval15 (tile 20+2x4): int8-vs-float PSNR 25.1 dB with 10% normal-light crops,
    29.8 dB with none; SSIM to ground truth 0.45 -> 0.57. Input pixels above the calibrated
    range (about 0.77 on LoL) clip, which only touches light sources in a low-light frame."""
    train, _ = split_train_val(find_pairs(resolve_split(data_dir, "train")))
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(train), size=min(count, len(train)), replace=False)
    tiles = []
    for k, i in enumerate(picks):
        bright = k < max(1, int(count * bright_fraction))
        img = read_rgb(train[i].high if bright else train[i].low)
        h, w = img.shape[:2]
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        tiles.append(img[y:y + size, x:x + size])
    return np.stack(tiles).astype(np.float32) / 255.0


def synthetic_tiles(size: int, count: int = 16, seed: int = 0) -> np.ndarray:
    """Calibration data for measuring sizes only (no dataset needed): dark noise plus one
    full-range ramp so the input range is [0, 1]."""
    rng = np.random.default_rng(seed)
    tiles = (rng.random((count, size, size, 3)) ** 3 * 0.5).astype(np.float32)
    tiles[0] = np.linspace(0, 1, size * size * 3, dtype=np.float32).reshape(size, size, 3)
    return tiles


def convert_int8(fixed_model, calibration: np.ndarray) -> bytes:
    """The TFLite flatbuffer with int8 weights, activations, input and output."""
    def representative():
        for t in calibration:
            yield [t[None]]

    conv = tf.lite.TFLiteConverter.from_keras_model(fixed_model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()
