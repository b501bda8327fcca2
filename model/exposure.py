"""Frame exposure normalisation: one gain for the whole frame, before it is cut into tiles.

A tile of 20 px cannot tell a dark corner of a bright scene from a dark scene, so on its own
it guesses the brightness level of its output, and the guess differs from tile to tile (the
tiling study: almost all of the tiling loss is each tile's mean level). The whole frame does
know its exposure. So the pipeline first scales the frame to a fixed mean brightness with one
gain (colour ratios kept), and the network, trained on frames normalised the same way, only
has to restore what is local: contrast, colour and noise.

The gain is defined in integers so that the board (firmware/lib/tinymirnet_core/pixels.cc)
and Python compute the same bytes:

    S = sum of all 8-bit R, G, B values of the frame,  N = 3 * width * height
    gain_q8 = clamp((target * N * 256 + S // 2) // S, 256, MAX_GAIN_Q8)     (S = 0: MAX_GAIN_Q8)
    pixel'  = min(255, (pixel * gain_q8 + 128) >> 8)

The gain never darkens (a frame brighter than the target passes unchanged) and is at most 32.
"""
from __future__ import annotations

import numpy as np

GAIN_ONE_Q8 = 256
MAX_GAIN_Q8 = 32 * 256


def exposure_gain_q8(frame: np.ndarray, target: int) -> int:
    """The frame's gain in Q8 fixed point (256 = 1.0) that brings its mean to `target`."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"exposure gain needs an HxWx3 uint8 frame, got {frame.dtype} {frame.shape}")
    if not 0 < target <= 255:
        raise ValueError(f"exposure target {target} is outside 1..255")
    s = int(frame.sum(dtype=np.uint64))
    if s == 0:
        return MAX_GAIN_Q8
    g = (target * frame.size * 256 + s // 2) // s
    return int(min(max(g, GAIN_ONE_Q8), MAX_GAIN_Q8))


def apply_gain_q8(frame: np.ndarray, gain_q8: int) -> np.ndarray:
    scaled = (frame.astype(np.uint32) * np.uint32(gain_q8) + 128) >> 8
    return np.minimum(scaled, 255).astype(np.uint8)


def normalize_exposure(frame: np.ndarray, target: int) -> np.ndarray:
    """The frame scaled to mean `target` (8-bit units); target 0 leaves it unchanged."""
    if not target:
        return frame
    return apply_gain_q8(frame, exposure_gain_q8(frame, target))
