"""The frame's last step, on the host: the output's coarse lightness keeps the input's order.

The network renders similar input levels differently from place to place (its local tone and
colour), and on real night photos that reverses the lightness order of regions: a wall left
darker than the shadow beside it. The lightness-order error (model/naturalness.py) counts exactly
that. This step puts the order back at a coarse scale and leaves everything finer alone:

1. Both frames are downscaled (bilinear, PIL's antialiased reduction) to ORDER_SIZE px on the
   long side; the lightness of a coarse pixel is max(R, G, B), as in the metric.
2. Isotonic regression (pool adjacent violators) fits the output's coarse lightness with a
   non-decreasing function of the input's; equal input levels get one value.
3. Each coarse pixel's gain, fitted / actual clamped to [1/GAIN_LIMIT, GAIN_LIMIT], is raised to
   STRENGTH, upsampled (bilinear) to the full frame and multiplies all three channels of the
   output: chromaticity, noise and detail stay the network's.

The fitted curve is the network's own brightness judgement (the least-squares monotone fit to
what it rendered), so a frame keeps its mean brightness (within 2.5 % on SICE night). It is a whole-frame
step: the board enhances tile by tile and streams each tile out, so the host runs it on the
stitched frame, and then the output guards once more (`finish`), since a gain below 1 could
darken a highlight. Every product path does the same (float, int8 on the host, the board's
tiles): `FloatEnhancer.enhance`, the int8 eval methods, `capture`, `enhance --port`,
`naturalness`. Choice of ORDER_SIZE and STRENGTH: docs/decisions (the validation split and real
photos, never eval15).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from .exposure import guard
from .naturalness import small_lightness

ORDER_SIZE = 48  # coarse frame, px on the long side
STRENGTH = 0.75  # 0 = the network's output unchanged, 1 = the monotone fit exactly
GAIN_LIMIT = 2.0
_EPS = 1e-3  # on [0, 1]: a black coarse pixel keeps a finite gain
_BAND_PIXELS = 1 << 18  # the full-size gain is applied in bands of rows of about this many pixels


def monotone_fit(y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Least-squares non-decreasing fit to the sequence `y` with positive `weights` (pool
    adjacent violators)."""
    values: list[float] = []
    totals: list[float] = []
    counts: list[int] = []
    for value, weight in zip(np.asarray(y, np.float64), np.asarray(weights, np.float64)):
        values.append(float(value))
        totals.append(float(weight))
        counts.append(1)
        while len(values) > 1 and values[-2] > values[-1]:
            v2, w2, c2 = values.pop(), totals.pop(), counts.pop()
            v1, w1, c1 = values.pop(), totals.pop(), counts.pop()
            values.append((v1 * w1 + v2 * w2) / (w1 + w2))
            totals.append(w1 + w2)
            counts.append(c1 + c2)
    return np.repeat(np.asarray(values), counts)


def order_gain(raw_u8: np.ndarray, out_u8: np.ndarray, size: int = ORDER_SIZE,
               strength: float = STRENGTH) -> np.ndarray:
    """The coarse gain map (float32, `size` px on the long side) that gives the output's coarse
    lightness the input's order."""
    a = small_lightness(raw_u8, size)
    b = small_lightness(out_u8, size)
    levels, index = np.unique(a.ravel(), return_inverse=True)  # sorted input levels, ties pooled
    counts = np.bincount(index, minlength=levels.size)
    means = np.bincount(index, b.ravel(), minlength=levels.size) / counts
    fitted = monotone_fit(means, counts)[index].reshape(a.shape)
    gain = np.clip((fitted + _EPS) / (b + _EPS), 1.0 / GAIN_LIMIT, GAIN_LIMIT) ** strength
    return gain.astype(np.float32)


def keep_lightness_order(raw_u8: np.ndarray, out_u8: np.ndarray, size: int = ORDER_SIZE,
                         strength: float = STRENGTH) -> np.ndarray:
    """The output (8-bit HxWx3) with its coarse lightness in the input's order (module docstring)."""
    raw_u8, out_u8 = np.asarray(raw_u8, np.uint8), np.asarray(out_u8, np.uint8)
    if raw_u8.shape != out_u8.shape or raw_u8.ndim != 3 or raw_u8.shape[2] != 3:
        raise ValueError(f"keep_lightness_order needs two HxWx3 images of one size, got "
                         f"{raw_u8.shape} and {out_u8.shape}")
    if strength == 0:
        return out_u8.copy()
    h, w = out_u8.shape[:2]
    coarse = Image.fromarray(order_gain(raw_u8, out_u8, size, strength), "F")
    cw, ch = coarse.size
    result = np.empty_like(out_u8)
    rows = max(1, _BAND_PIXELS // w)
    for y in range(0, h, rows):
        n = min(rows, h - y)
        # the band's rows of the full-size bilinear upsampling (a source box keeps the same grid)
        gain = np.asarray(coarse.resize((w, n), Image.BILINEAR, box=(0, y * ch / h, cw, (y + n) * ch / h)))
        band = out_u8[y:y + n].astype(np.float32) * gain[..., None]
        result[y:y + n] = np.clip(np.rint(band), 0, 255).astype(np.uint8)
    return result


def finish(raw_u8: np.ndarray, out_u8: np.ndarray) -> np.ndarray:
    """The host's last steps on a whole enhanced frame (the board's stitched tiles, or a host
    pipeline's output, guards applied): the lightness order, then the output guards again."""
    return guard(raw_u8, keep_lightness_order(raw_u8, out_u8))
