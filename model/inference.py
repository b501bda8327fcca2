"""Running the float network on images: full frame (any size) and tile by tile."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from .data import to_float
from .exposure import normalize_exposure
from .paths import DEFAULT_WEIGHTS
from .network import SIZE_MULTIPLE, MirnetConfig, build_mirnet
from .tiling import run_tiled



def config_path_for(weights: str | Path) -> Path:
    """The network config saved beside a weights file: x.weights.h5 -> x.json."""
    weights = Path(weights)
    return weights.with_name(weights.name.split(".")[0] + ".json")


def load_model(weights: str | Path = DEFAULT_WEIGHTS, config: str | Path | None = None,
               input_shape=(None, None, 3), batch_size=None):
    """Builds the network from its config (JSON beside the weights) and loads the weights."""
    weights = Path(weights)
    config = Path(config) if config else config_path_for(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: no such weights file")
    cfg = MirnetConfig.load(config) if config.is_file() else MirnetConfig()
    model = build_mirnet(cfg, input_shape=input_shape, batch_size=batch_size)
    model.load_weights(str(weights))
    return model, cfg


class FloatEnhancer:
    """Calls a fully convolutional model with one compiled function per input shape.

    `enhance` is the whole pipeline on an 8-bit frame: the exposure normalisation the weights
    were trained with, then the network whole or tile by tile, clipped to [0, 1].
    `full_frame` and `tiled` run the network alone on a float image."""

    def __init__(self, model, exposure_target: int = 0):
        self.model = model
        self.exposure_target = exposure_target
        self._fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    @classmethod
    def load(cls, weights: str | Path = DEFAULT_WEIGHTS, config: str | Path | None = None) -> "FloatEnhancer":
        model, cfg = load_model(weights, config)
        return cls(model, cfg.exposure_target)

    def prepare(self, low_u8: np.ndarray) -> np.ndarray:
        """The network's input for an 8-bit frame: exposure-normalised, float in [0, 1]."""
        return to_float(normalize_exposure(low_u8, self.exposure_target))

    def enhance(self, low_u8: np.ndarray, tile: int | None = None, halo: int = 0) -> np.ndarray:
        """The float pipeline on an 8-bit HxWx3 frame: whole, or tile by tile with `tile`."""
        x = self.prepare(low_u8)
        out = self.full_frame(x) if tile is None else self.tiled(x, tile, halo)
        return np.clip(out, 0.0, 1.0)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self._fn(tf.convert_to_tensor(batch, tf.float32)).numpy()

    def full_frame(self, img: np.ndarray) -> np.ndarray:
        """Enhances one HxWx3 float image of any size: edge-padded to a multiple of
        SIZE_MULTIPLE, run whole, cropped back."""
        h, w = img.shape[:2]
        ph, pw = -h % SIZE_MULTIPLE, -w % SIZE_MULTIPLE
        padded = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="edge")
        return self(padded[None])[0, :h, :w]

    def tiled(self, img: np.ndarray, tile: int, halo: int) -> np.ndarray:
        return run_tiled(img.astype(np.float32), tile, halo, self)
