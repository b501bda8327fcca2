"""Naturalness on real photographs without ground truth: does an enhancer keep highlights,
lightness order and colour? Three metrics, computed exactly as issue "Natural on real scenes"
defines them, for the network beside two classic curves (gamma 1/2.2, histogram equalization):

* highlights darkened: of the input pixels with L = max(R, G, B) >= 0.6 (on [0, 1]), the
  percentage whose output L is < 0.9 x input L;
* LOE, lightness-order error (Wang et al. 2013): input and output downscaled (bilinear) to 64 px
  on the long side, L = max(R, G, B); over all ordered pixel pairs, the percentage whose order
  (L_i >= L_j) differs between input and output;
* chromaticity shift: on pixels whose input R + G + B >= 0.45, the mean of
  |r - r'| + |g - g'| + |b - b'| with r = R / (R + G + B) etc., x 100.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from tinymirnet.model.files import atomic_save_image


HIGHLIGHT_L = 0.6
DARKENED_RATIO = 0.9
LOE_SIZE = 64
CHROMA_MIN_SUM = 0.45

Method = Callable[[np.ndarray], np.ndarray]  # uint8 HxWx3 -> uint8 HxWx3 of the same size


def _unit(img: np.ndarray) -> np.ndarray:
    return np.asarray(img, np.float64) / 255.0


def highlights_darkened(inp: np.ndarray, out: np.ndarray) -> float | None:
    """Percent of highlight pixels darkened by 10 % or more; None when the input has none."""
    l_in, l_out = _unit(inp).max(-1), _unit(out).max(-1)
    mask = l_in >= HIGHLIGHT_L
    if not mask.any():
        return None
    return float(100.0 * np.mean(l_out[mask] < DARKENED_RATIO * l_in[mask]))


def small_lightness(img: np.ndarray, size: int = LOE_SIZE) -> np.ndarray:
    """max(R, G, B) on [0, 1] of the 8-bit image downscaled (bilinear) to `size` px on its long side."""
    h, w = img.shape[:2]
    scale = size / max(h, w)
    shape = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = Image.fromarray(np.asarray(img, np.uint8)).resize(shape, Image.BILINEAR)
    return _unit(np.asarray(small)).max(-1)


def lightness_order_error(inp: np.ndarray, out: np.ndarray) -> float:
    """Percent of ordered pixel pairs whose lightness order differs (input vs output)."""
    return lightness_order_parts(inp, out)[0]


def lightness_order_parts(inp: np.ndarray, out: np.ndarray) -> tuple[float, float, float]:
    """The LOE and its two parts, in percent of the ordered pairs: (LOE, broken ties, reversed).
    A pair the input ties (equal 8-bit lightness after the downscale) counts once when the output
    tells them apart; a pair the output orders the other way round counts twice (both orders).
    Dark 8-bit photos tie often, and any brightening breaks ties: gamma 1/2.2 does too."""
    a, b = small_lightness(inp).ravel(), small_lightness(out).ravel()
    differs = ties = 0
    for i in range(0, a.size, 512):  # rows of the pair matrix in blocks: bounded memory
        d = (a[i:i + 512, None] >= a[None, :]) != (b[i:i + 512, None] >= b[None, :])
        differs += int(np.count_nonzero(d))
        ties += int(np.count_nonzero(d & (a[i:i + 512, None] == a[None, :])))
    n = a.size * a.size
    return 100.0 * differs / n, 100.0 * ties / n, 100.0 * (differs - ties) / n


def chromaticity_shift(inp: np.ndarray, out: np.ndarray) -> float | None:
    """Mean L1 change of the chromaticity (r, g, b) x 100 on pixels bright enough to have one."""
    x, y = _unit(inp), _unit(out)
    sx, sy = x.sum(-1), y.sum(-1)
    mask = sx >= CHROMA_MIN_SUM
    if not mask.any():
        return None
    cx = x[mask] / sx[mask, None]
    cy = y[mask] / np.maximum(sy[mask], 1e-12)[:, None]
    return float(100.0 * np.abs(cx - cy).sum(-1).mean())


def gamma(img: np.ndarray) -> np.ndarray:
    """Gamma 1/2.2 on each channel."""
    return np.round(255.0 * _unit(img) ** (1 / 2.2)).astype(np.uint8)


def equalize(img: np.ndarray) -> np.ndarray:
    """PIL's ImageOps.equalize (per channel)."""
    return np.asarray(ImageOps.equalize(Image.fromarray(np.asarray(img, np.uint8))))


BASELINES: dict[str, Method] = {"gamma_1/2.2": gamma, "equalize": equalize}


def image_metrics(inp: np.ndarray, out: np.ndarray) -> dict:
    loe, ties, reversed_pairs = lightness_order_parts(inp, out)
    return {"highlights_darkened_pct": highlights_darkened(inp, out),
            "loe_pct": loe, "loe_broken_ties_pct": ties, "loe_reversed_pct": reversed_pairs,
            "chromaticity_shift": chromaticity_shift(inp, out)}


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


@dataclass
class NaturalnessResult:
    images: list[str]
    per_image: dict[str, list[dict]]  # method -> one dict of metrics per image
    outputs: dict[str, list[np.ndarray]]  # method -> outputs, for the contact sheet

    def means(self) -> dict[str, dict]:
        keys = ("highlights_darkened_pct", "loe_pct", "loe_broken_ties_pct", "loe_reversed_pct", "chromaticity_shift")
        return {m: {k: _mean([r[k] for r in rows]) for k in keys} for m, rows in self.per_image.items()}


def evaluate_naturalness(images: list[tuple[str, np.ndarray]], methods: dict[str, Method],
                         progress: Callable[[str], None] | None = None) -> NaturalnessResult:
    per_image: dict[str, list[dict]] = {m: [] for m in methods}
    outputs: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    for name, img in images:
        for method, fn in methods.items():
            out = np.asarray(fn(img))
            if out.shape != img.shape:
                raise ValueError(f"{method} returned {out.shape} for {name} of {img.shape}")
            per_image[method].append(image_metrics(img, out))
            outputs[method].append(out)
        if progress:
            progress(name)
    return NaturalnessResult([n for n, _ in images], per_image, outputs)


LABEL_HEIGHT = 16


def contact_sheet(result: NaturalnessResult, inputs: list[np.ndarray], path: Path, cell: int = 160) -> Path:
    """A header row naming the columns, then one row per image: the input, then each method's
    output, each fitted into cell x cell."""
    methods = list(result.outputs)
    sheet = Image.new("RGB", (cell * (1 + len(methods)), LABEL_HEIGHT + cell * len(inputs)), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    for col, name in enumerate(["input"] + methods):
        draw.text((col * cell + 4, 2), name, fill=(230, 230, 230))
    for row, inp in enumerate(inputs):
        for col, img in enumerate([inp] + [result.outputs[m][row] for m in methods]):
            tile = Image.fromarray(np.asarray(img, np.uint8))
            tile.thumbnail((cell, cell))
            sheet.paste(tile, (col * cell + (cell - tile.width) // 2,
                               LABEL_HEIGHT + row * cell + (cell - tile.height) // 2))
    return atomic_save_image(sheet, path)
