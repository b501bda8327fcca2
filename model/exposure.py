"""The pipeline's fixed pixel steps around the network: exposure normalisation before it, the
colour guard and the highlight guard after it (`guard`).

Frame exposure normalisation: one gain for the whole frame, before it is cut into tiles.

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
    x       = pixel * gain_q8                                  (the gained value, Q8)
    pixel'  = (x + 128) >> 8                                   where x <= KNEE * 256
    pixel'  = KNEE + (d * H + (d + 256 H) // 2) // (d + 256 H)  above, d = x - KNEE * 256, H = 255 - KNEE
    pixel'  = max(pixel', pixel)

Linear up to KNEE (192), then a soft knee: the curve keeps its slope 1 at the knee and bends
towards 255, which it never reaches, instead of clipping. A hard clip at 255 turns a lamp and the
wall around it into one flat 255 and alone costs 4.4 % lightness-order error on SICE/night; the
knee keeps their order (3.9 %; gamma 1/2.2: 3.3 %). The gain never darkens (a frame brighter
than the target passes unchanged, and no pixel leaves darker than it came) and is at most 32.
Each frame's gain becomes one 256-entry table (`gain_table`), on the board too.

Highlight guard: every output channel value is raised to at least floor(p) of the same pixel's
8-bit input p (the camera frame, before the gain):

    floor(p) = min((236 * p + 128) >> 8, max(0, ((p - 127) * 1413 + 128) >> 8))

0 up to p = 127, then rising steeply to 92 % of p, reached at p = 153 = 0.6 (236/256 = 0.92;
1413/256 = 5.52) and kept above. A pixel whose brightest channel is at least 0.6 (153) therefore
keeps at least 91.9 % of it: no highlight is darkened by 10 % or more (issue "Natural on real
scenes"), whatever the network does; channels below 0.5, where LoL's frames are, are the
network's alone. Board (pixels.h) and Python apply the same 256-entry table.

Colour guard, before the highlight guard: where the camera saw colour (the pixel's 8-bit sum
S = R + G + B is at least 115, i.e. 0.45 of 255 per channel on average), the output keeps the
input's chromaticity and takes only its brightness from the network; below S = 77 (0.3) the
network's colour stands (denoising, and LoL's dim frames, are all there); between, a blend:

    w = clamp(((S - 77) * 256 + 19) // 38, 0, 256)                  (Q8)
    k = min(255, (p * S' + S // 2) // S)    per channel p, S' = the network's R + G + B
    out = (net * (256 - w) + k * w + 128) >> 8

So a lamp's orange or a sky's blue comes back as the camera saw it, brighter or darker, never
another hue (issue "Natural on real scenes": chromaticity shift no larger than gamma's).
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


KNEE = 192


def gain_table(gain_q8: int) -> np.ndarray:
    """pixel -> pixel' for one frame's gain (module docstring): linear, then the soft knee."""
    p = np.arange(256, dtype=np.int64)
    x = p * int(gain_q8)
    h = 255 - KNEE
    d = x - KNEE * 256
    bent = KNEE + (d * h + (d + 256 * h) // 2) // np.maximum(d + 256 * h, 1)
    return np.maximum(np.where(d <= 0, (x + 128) >> 8, bent), p).astype(np.uint8)


def apply_gain_q8(frame: np.ndarray, gain_q8: int) -> np.ndarray:
    return gain_table(gain_q8)[np.asarray(frame, np.uint8)]


def normalize_exposure(frame: np.ndarray, target: int) -> np.ndarray:
    """The frame scaled to mean `target` (8-bit units); target 0 leaves it unchanged."""
    if not target:
        return frame
    return apply_gain_q8(frame, exposure_gain_q8(frame, target))


def _highlight_floor(p: int) -> int:
    return min((236 * p + 128) >> 8, max(0, ((p - 127) * 1413 + 128) >> 8))


HIGHLIGHT_FLOOR = np.array([_highlight_floor(p) for p in range(256)], np.uint8)


def keep_highlights(raw_u8: np.ndarray, out_u8: np.ndarray) -> np.ndarray:
    """The highlight guard on 8-bit images of one size: max(out, HIGHLIGHT_FLOOR[raw])."""
    return np.maximum(np.asarray(out_u8, np.uint8), HIGHLIGHT_FLOOR[np.asarray(raw_u8, np.uint8)])


COLOUR_FROM, COLOUR_TO = 77, 115  # 8-bit RGB sums: 0.3 and 0.45 of 255 per channel


def keep_colour(raw_u8: np.ndarray, out_u8: np.ndarray, pixels: int = 65536) -> np.ndarray:
    """The colour guard on 8-bit images of one size (module docstring), in bands of rows of
    about `pixels` pixels, so that a photo of any size needs a few MB of temporaries."""
    raw_u8, out_u8 = np.asarray(raw_u8, np.uint8), np.asarray(out_u8, np.uint8)
    result = np.empty_like(out_u8)
    rows = max(1, pixels // max(1, raw_u8.shape[1]))
    for y in range(0, raw_u8.shape[0], rows):
        raw = raw_u8[y:y + rows].astype(np.int32)
        out = out_u8[y:y + rows].astype(np.int32)
        s_in = raw.sum(-1, keepdims=True)
        s_out = out.sum(-1, keepdims=True)
        span = COLOUR_TO - COLOUR_FROM
        w = np.clip(((s_in - COLOUR_FROM) * 256 + span // 2) // span, 0, 256)
        kept = np.minimum(255, (raw * s_out + s_in // 2) // np.maximum(s_in, 1))
        result[y:y + rows] = (out * (256 - w) + kept * w + 128) >> 8
    return result


def guard(raw_u8: np.ndarray, out_u8: np.ndarray) -> np.ndarray:
    """Both output guards in the board's order: colour, then highlights."""
    return keep_highlights(raw_u8, keep_colour(raw_u8, out_u8))
