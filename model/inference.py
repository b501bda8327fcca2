"""Running the float network on images: full frame (any size) and tile by tile."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

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
    """Calls a fully convolutional model with one compiled function per input shape."""

    def __init__(self, model):
        self.model = model
        self._fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

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
