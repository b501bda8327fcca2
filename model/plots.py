"""Small PNG figures drawn with Pillow (no plotting library is a dependency): training curves
and image comparison grids."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .files import atomic_save_image

COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]


def _nice_range(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if math.isclose(lo, hi):
        lo, hi = lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.05
    # A series that is never negative (a learning rate, a loss) gets no negative axis.
    return (max(0.0, lo - pad) if lo >= 0 else lo - pad), hi + pad


def _panel(draw, box, title, xs, series: dict[str, list[float]], font):
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline=(0, 0, 0))
    draw.text((x0 + 4, y0 - 14), title, fill=(0, 0, 0), font=font)
    finite = [v for ys in series.values() for v in ys if v is not None and math.isfinite(v)]
    if not finite or not xs:
        return
    lo, hi = _nice_range(finite)
    xmin, xmax = min(xs), max(max(xs), min(xs) + 1)

    def pt(x, y):
        return (x0 + (x - xmin) / (xmax - xmin) * (x1 - x0), y1 - (y - lo) / (hi - lo) * (y1 - y0))

    for k in range(5):  # y ticks
        v = lo + (hi - lo) * k / 4
        _, py = pt(xmin, v)
        draw.line([(x0 - 3, py), (x0, py)], fill=(0, 0, 0))
        draw.text((x0 - 48, py - 6), f"{v:.3g}", fill=(0, 0, 0), font=font)
    for k in range(5):  # x ticks
        v = xmin + (xmax - xmin) * k / 4
        px, _ = pt(v, lo)
        draw.line([(px, y1), (px, y1 + 3)], fill=(0, 0, 0))
        draw.text((px - 8, y1 + 5), f"{v:.0f}", fill=(0, 0, 0), font=font)
    for n, (name, ys) in enumerate(series.items()):
        color = COLORS[n % len(COLORS)]
        pts = [pt(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
        if len(pts) > 1:
            draw.line(pts, fill=color, width=2)
        elif pts:
            draw.ellipse([pts[0][0] - 2, pts[0][1] - 2, pts[0][0] + 2, pts[0][1] + 2], fill=color)
        # Legend under the axis, outside the plot, so it never hides a curve.
        lx = x0 + 150 * n
        draw.line([(lx, y1 + 42), (lx + 16, y1 + 42)], fill=color, width=2)
        draw.text((lx + 20, y1 + 36), name, fill=color, font=font)


def plot_curves(path: Path, epochs: list[int], panels: dict[str, dict[str, list[float]]]) -> None:
    """One panel per entry of `panels` (title -> {series name -> values per epoch}), side by side."""
    font = ImageFont.load_default()
    w, h, margin = 420, 300, 60
    img = Image.new("RGB", (len(panels) * (w + margin) + margin, h + 2 * margin + 16), "white")
    draw = ImageDraw.Draw(img)
    for k, (title, series) in enumerate(panels.items()):
        left = margin + k * (w + margin)
        _panel(draw, (left, margin, left + w, margin + h), title, epochs, series, font)
        draw.text((left + w // 2 - 15, margin + h + 22), "epoch", fill=(0, 0, 0), font=font)
    atomic_save_image(img, path)


def comparison_grid(path: Path, rows: list[list[np.ndarray]], labels: list[str], width: int = 240) -> None:
    """Rows of equally sized uint8 RGB images, one column per label, scaled to `width`."""
    font = ImageFont.load_default()
    h0, w0 = rows[0][0].shape[:2]
    cell_h = round(h0 * width / w0)
    top = 18
    img = Image.new("RGB", (len(labels) * (width + 4) + 4, top + len(rows) * (cell_h + 4) + 4), "white")
    draw = ImageDraw.Draw(img)
    for c, label in enumerate(labels):
        draw.text((4 + c * (width + 4) + 4, 3), label, fill=(0, 0, 0), font=font)
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            tile = Image.fromarray(im).resize((width, cell_h), Image.BILINEAR)
            img.paste(tile, (4 + c * (width + 4), top + r * (cell_h + 4)))
    atomic_save_image(img, path)
