"""The thumbnail of the whole frame a frame-context network computes its attention on
(model/network.py): box averages over an integer grid, defined in integers so that the board
and Python compute the same bytes.

For a frame of W x H and a thumbnail of w x h, thumbnail pixel (i, j) is the rounded mean of
the frame pixels in columns [i*W // w, (i+1)*W // w) and rows [j*H // h, (j+1)*H // h):

    mean = (sum + count // 2) // count            (per channel, 8-bit values)

QQVGA (160 x 120) to 32 x 24 is an exact 5 x 5 box filter; other sizes get boxes that differ
by at most one pixel. The thumbnail is taken after the exposure normalisation (model/exposure.py),
from the same bytes the tiler sees.
"""
from __future__ import annotations

import numpy as np


def thumbnail(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """The width x height thumbnail (uint8, HxWx3) of an HxWx3 uint8 frame."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"a thumbnail needs an HxWx3 uint8 frame, got {frame.dtype} {frame.shape}")
    h, w = frame.shape[:2]
    if w < width or h < height or width < 1 or height < 1:
        raise ValueError(f"a {w}x{h} frame is smaller than the {width}x{height} thumbnail")
    rows = np.arange(height) * h // height
    cols = np.arange(width) * w // width
    counts = np.diff(np.append(rows, h))[:, None, None] * np.diff(np.append(cols, w))[None, :, None]
    # Row bands summed one at a time: never an int64 copy of the frame (288 MB for 12 MP)
    bands = zip(rows, np.append(rows[1:], h))
    row_sums = np.stack([frame[top:bottom].sum(axis=0, dtype=np.int64) for top, bottom in bands])
    sums = np.add.reduceat(row_sums, cols, axis=1)
    return ((sums + counts // 2) // counts).astype(np.uint8)
