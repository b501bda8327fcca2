"""Running the float network on images: full frame (any size) and tile by tile."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from .data import to_float, to_uint8
from .exposure import guard, normalize_exposure
from .lightness_order import finish
from .paths import DEFAULT_WEIGHTS, config_path_for
from .network import build_context_model, build_mirnet, build_tile_model
from .network_config import SIZE_MULTIPLE, MirnetConfig
from .thumbnail import thumbnail
from .tiling import run_tiled



def load_model(weights: str | Path = DEFAULT_WEIGHTS, config: str | Path | None = None,
               input_shape=(None, None, 3), batch_size=None):
    """Builds the network from its config (JSON beside the weights) and loads the weights."""
    weights = Path(weights)
    config = Path(config) if config else config_path_for(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: no such weights file")
    if not config.is_file():
        # Never a default in its place: the weights alone do not say which network (frame context,
        # exposure target) they belong to, and a guess runs the wrong one silently.
        raise FileNotFoundError(f"{config}: the network config of {weights} is missing")
    cfg = MirnetConfig.load(config)
    model = build_mirnet(cfg, input_shape=input_shape, batch_size=batch_size)
    model.load_weights(str(weights))
    return model, cfg


# Pixels mirrored around a whole frame before it runs: more than the reach of the network's
# zero-padded borders (two 2x down-samplings and 3x3 convolutions in each stream).
BORDER = 32


class FloatEnhancer:
    """Calls a fully convolutional model with one compiled function per input shape.

    `enhance` is the whole pipeline on an 8-bit frame: the exposure normalisation the weights
    were trained with, then the network whole or tile by tile, clipped to [0, 1], the output
    guards and, with `keep_order` (the default), the host's lightness-order step
    (model/lightness_order.py). Without it, `enhance` is what the board's tiles hold.
    `full_frame` and `tiled` run the network alone on a float image."""

    def __init__(self, model, exposure_target: int = 0, cfg: MirnetConfig | None = None,
                 keep_order: bool = True):
        self.model = model
        self.exposure_target = exposure_target
        self.keep_order = keep_order
        self.cfg = cfg
        self._fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        self._context_fn = self._tile_fn = None
        if cfg is not None and cfg.frame_context:
            context_model = build_context_model(cfg, model)
            tile_model = build_tile_model(cfg, model)
            self._context_fn = tf.function(lambda t: context_model(t, training=False))
            self._tile_fn = tf.function(lambda x, c: tile_model([x, c], training=False),
                                        reduce_retracing=True)

    @classmethod
    def load(cls, weights: str | Path = DEFAULT_WEIGHTS, config: str | Path | None = None, *,
             keep_order: bool = True) -> "FloatEnhancer":
        model, cfg = load_model(weights, config)
        return cls(model, cfg.exposure_target, cfg, keep_order)

    @property
    def frame_context(self) -> bool:
        return self._tile_fn is not None

    def context_of(self, img: np.ndarray) -> np.ndarray | None:
        """The context vector (1x1x1xN) of a frame-context network for one prepared HxWx3 frame
        (float in [0, 1], or its 8-bit values), computed on its thumbnail; None for a textbook
        network."""
        if not self.frame_context:
            return None
        frame = img if img.dtype == np.uint8 else to_uint8(img)
        tw, th = self.cfg.thumbnail_width, self.cfg.thumbnail_height
        h, w = frame.shape[:2]
        if w < tw or h < th:  # a photo smaller than the thumbnail: each pixel repeated to cover it
            frame = np.repeat(np.repeat(frame, -(-th // h), axis=0), -(-tw // w), axis=1)
        thumb = thumbnail(frame, tw, th)
        return self._context_fn(tf.convert_to_tensor(to_float(thumb)[None])).numpy()

    def prepare(self, low_u8: np.ndarray) -> np.ndarray:
        """The network's input for an 8-bit frame: exposure-normalised, float in [0, 1]."""
        return to_float(normalize_exposure(low_u8, self.exposure_target))

    def enhance(self, low_u8: np.ndarray, tile: int | None = None, halo: int = 0, *, batch: int = 64,
                progress=None) -> np.ndarray:
        """The float pipeline on an 8-bit HxWx3 frame: whole, or tile by tile with `tile`
        (`batch` tiles at a time, `progress(done, total)` after each batch), rounded to 8 bits,
        then the colour and highlight guards (model/exposure.py) as on the board, and the host's
        lightness-order step (`keep_order`); float in [0, 1]."""
        return to_float(self.enhance_u8(low_u8, tile, halo, batch=batch, progress=progress))

    def enhance_u8(self, low_u8: np.ndarray, tile: int | None = None, halo: int = 0, *, batch: int = 64,
                   progress=None) -> np.ndarray:
        """`enhance` as 8-bit values. Tile by tile, the frame stays 8-bit and only one batch of
        tiles is ever float: a 12 MP photo needs a few copies of 36 MB, not of 144 MB (float32)
        and 288 MB (the float64 rounding of a whole float frame)."""
        if tile is None:
            out = guard(low_u8, to_uint8(self.full_frame(self.prepare(low_u8))))
        else:
            norm = normalize_exposure(low_u8, self.exposure_target)
            context = self.context_of(norm)
            out = guard(low_u8, run_tiled(norm, tile, halo, lambda b: to_uint8(self(to_float(b), context)),
                                          batch=batch, progress=progress))
        return finish(low_u8, out) if self.keep_order else out

    def __call__(self, batch: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
        """The network on a batch of inputs; a frame-context network needs their frame's
        context (`context_of`)."""
        batch = tf.convert_to_tensor(batch, tf.float32)
        if not self.frame_context:
            return self._fn(batch).numpy()
        if context is None:
            raise ValueError("a frame-context network needs the context of the frame its inputs come from")
        return self._tile_fn(batch, tf.repeat(tf.convert_to_tensor(context, tf.float32), batch.shape[0], axis=0)).numpy()

    def full_frame(self, img: np.ndarray) -> np.ndarray:
        """Enhances one HxWx3 float image of any size: mirrored by BORDER pixels on every side
        (the network's convolutions pad with zeros, which coloured the outermost pixels), then
        edge-padded to a multiple of the network's size multiple, run whole, cropped back."""
        h, w = img.shape[:2]
        b = BORDER
        mirrored = np.pad(img, ((b, b), (b, b), (0, 0)), mode="symmetric")
        multiple = self.cfg.size_multiple if self.cfg is not None else SIZE_MULTIPLE
        ph, pw = -(h + 2 * b) % multiple, -(w + 2 * b) % multiple
        padded = np.pad(mirrored, ((0, ph), (0, pw), (0, 0)), mode="edge")
        return self(padded[None], self.context_of(img))[0, b:b + h, b:b + w]

    def tiled(self, img: np.ndarray, tile: int, halo: int, *, batch: int = 64, progress=None) -> np.ndarray:
        context = self.context_of(img)
        return run_tiled(img.astype(np.float32), tile, halo, lambda b: self(b, context), batch=batch,
                         progress=progress)


_loaded: dict[tuple, FloatEnhancer] = {}


def load_enhancer(weights: str | Path = DEFAULT_WEIGHTS) -> FloatEnhancer:
    """The float network of a weights file (its config beside it), built once per file and
    process: building costs seconds, and several commands in one process (the tests) share it.
    A changed file (weights or config) is built again."""
    weights = Path(weights).resolve()
    config = config_path_for(weights)
    key = (weights, weights.stat().st_mtime_ns if weights.is_file() else None,
           config.stat().st_mtime_ns if config.is_file() else None)
    if key not in _loaded:
        _loaded.clear()
        _loaded[key] = FloatEnhancer.load(weights)
    return _loaded[key]
