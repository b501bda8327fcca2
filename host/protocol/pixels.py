"""Pixels: the frame formats on the wire (RGB565, YUV422) <-> RGB888, and tiles stitched into
an image."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from .frames import PIXEL_FORMAT_RGB565, PIXEL_FORMAT_YUV422
from .messages import Tile

PIXEL_FORMAT_NAMES = {PIXEL_FORMAT_RGB565: "RGB565", PIXEL_FORMAT_YUV422: "YUV422"}


def check_pixel_format(pixel_format: int) -> int:
    """`pixel_format` if the protocol knows it, else ValueError naming the known ones."""
    if pixel_format not in PIXEL_FORMAT_NAMES:
        raise ValueError(f"unknown pixel format {pixel_format}; known: "
                         + ", ".join(f"{k} = {v}" for k, v in PIXEL_FORMAT_NAMES.items()))
    return pixel_format


def _frame_values(frame: bytes | np.ndarray, width: int, height: int) -> np.ndarray:
    """(height, width) uint16 pixel values of a frame given as little-endian bytes or uint16s."""
    if isinstance(frame, np.ndarray) and frame.dtype == np.uint16:
        return frame.reshape(height, width)
    return np.frombuffer(bytes(frame), dtype="<u2").reshape(height, width)


def rgb565_to_rgb888(frame: bytes | np.ndarray, width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8 from RGB565 (little-endian bytes or uint16 values), replicating
    the high bits into the low ones exactly as the device does."""
    values = _frame_values(frame, width, height)
    r5 = (values >> 11) & 0x1F
    g6 = (values >> 5) & 0x3F
    b5 = values & 0x1F
    channels = ((r5 << 3) | (r5 >> 2), (g6 << 2) | (g6 >> 4), (b5 << 3) | (b5 >> 2))
    return np.stack(channels, axis=-1).astype(np.uint8)


def rgb888_to_rgb565(image: np.ndarray) -> np.ndarray:
    """(height, width) uint16 RGB565 from an (height, width, 3) uint8 image: each channel to its
    nearest 5- or 6-bit level (v * 31 / 255 and v * 63 / 255, rounded), so that
    `rgb565_to_rgb888` gives back the nearest value it can.

    Not truncation (v >> 3, v >> 2): that darkens every channel by half a step on average,
    3.5 of 255 in red and blue but 1.5 in green, and a dark photo sent to the board turned
    darker and green before its exposure gain (up to 32x) made both visible (one SICE night
    photo at 160x120: frame mean 7.1 -> 4.3)."""
    pixels = np.asarray(image, dtype=np.uint32)
    r5 = (pixels[..., 0] * 31 + 127) // 255
    g6 = (pixels[..., 1] * 63 + 127) // 255
    b5 = (pixels[..., 2] * 31 + 127) // 255
    return (r5 << 11 | g6 << 5 | b5).astype(np.uint16)


def at_rgb565_precision(image: np.ndarray) -> np.ndarray:
    """An (height, width, 3) uint8 image as the device holds it after an upload (or its camera):
    `rgb888_to_rgb565`, then expanded back as the device does."""
    height, width = image.shape[:2]
    return rgb565_to_rgb888(rgb888_to_rgb565(image), width, height)


def yuv422_to_rgb888(frame: bytes | np.ndarray, width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8 from YUV422 exactly as the device converts it (pixels.h).

    The frame is the camera's byte stream Y0 U Y1 V for each pair of pixels (YUYV), read as
    one little-endian u16 per pixel: the even pixel holds Y0 | U << 8, the odd one Y1 | V << 8.
    Each pixel's chroma is 3/4 its pair's and 1/4 the neighbour pair's on its side (libjpeg's
    triangle upsampling; a row's end pixels take their own pair's): c(2k) = (3 c_k + c_(k-1) + 2)
    >> 2, c(2k+1) = (3 c_k + c_(k+1) + 2) >> 2. Then full-range BT.601 (the OV7675 at COM15 =
    00-FF), in integers: with d = U - 128, e = V - 128, R = Y + (359 e + 128) >> 8,
    G = Y - (88 d + 183 e + 128) >> 8, B = Y + (454 d + 128) >> 8, each clamped to [0, 255]
    (>> floors, as on the device)."""
    if width % 2:
        raise ValueError(f"a YUV422 frame needs an even width, not {width}")
    values = _frame_values(frame, width, height).astype(np.int32)
    luma = values & 0xFF
    chroma = values >> 8

    def upsample(pairs: np.ndarray) -> np.ndarray:  # (height, width / 2) -> (height, width)
        before = np.concatenate([pairs[:, :1], pairs[:, :-1]], axis=1)
        after = np.concatenate([pairs[:, 1:], pairs[:, -1:]], axis=1)
        full = np.empty((height, width), dtype=np.int32)
        full[:, 0::2] = (3 * pairs + before + 2) >> 2
        full[:, 1::2] = (3 * pairs + after + 2) >> 2
        return full

    d = upsample(chroma[:, 0::2]) - 128
    e = upsample(chroma[:, 1::2]) - 128
    red = luma + ((359 * e + 128) >> 8)
    green = luma - ((88 * d + 183 * e + 128) >> 8)
    blue = luma + ((454 * d + 128) >> 8)
    return np.clip(np.stack((red, green, blue), axis=-1), 0, 255).astype(np.uint8)


def rgb888_to_yuv422(image: np.ndarray) -> np.ndarray:
    """(height, width) uint16 YUV422 (see `yuv422_to_rgb888`) from an (height, width, 3) uint8
    image of even width: full-range BT.601 luma for every pixel, and each pair's chroma from
    the pair's mean colour, rounded to the nearest level (the chroma of the pair's centre, which
    the device's 3:1 interpolation assumes)."""
    pixels = np.asarray(image, dtype=np.float64)
    height, width = pixels.shape[:2]
    if width % 2:
        raise ValueError(f"a YUV422 frame needs an even width, not {width}")
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    luma = 0.299 * red + 0.587 * green + 0.114 * blue
    pair = (pixels[:, 0::2] + pixels[:, 1::2]) / 2
    cb = 128 - 0.168736 * pair[..., 0] - 0.331264 * pair[..., 1] + 0.5 * pair[..., 2]
    cr = 128 + 0.5 * pair[..., 0] - 0.418688 * pair[..., 1] - 0.081312 * pair[..., 2]
    def level(v: np.ndarray) -> np.ndarray:
        return np.clip(np.floor(v + 0.5), 0, 255).astype(np.uint16)
    chroma = np.empty((height, width), dtype=np.uint16)
    chroma[:, 0::2] = level(cb)
    chroma[:, 1::2] = level(cr)
    return (level(luma) | chroma << 8).astype(np.uint16)


def at_yuv422_precision(image: np.ndarray) -> np.ndarray:
    """An (height, width, 3) uint8 image as the device holds it in YUV422 (its camera's format,
    and what the host uploads): `rgb888_to_yuv422`, then converted back as the device does. An
    odd width (never a board's frame) pairs the last column with a copy of itself."""
    height, width = image.shape[:2]
    if width % 2:
        padded = np.concatenate([image, image[:, -1:]], axis=1)
        return yuv422_to_rgb888(rgb888_to_yuv422(padded), width + 1, height)[:, :width]
    return yuv422_to_rgb888(rgb888_to_yuv422(image), width, height)


def frame_to_rgb888(frame: bytes | np.ndarray, pixel_format: int, width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8 from a frame of either wire format, as the device converts it."""
    if check_pixel_format(pixel_format) == PIXEL_FORMAT_RGB565:
        return rgb565_to_rgb888(frame, width, height)
    return yuv422_to_rgb888(frame, width, height)


def rgb888_to_frame(image: np.ndarray, pixel_format: int) -> np.ndarray:
    """(height, width) uint16 frame of the wire format `pixel_format` from an RGB888 image."""
    if check_pixel_format(pixel_format) == PIXEL_FORMAT_RGB565:
        return rgb888_to_rgb565(image)
    return rgb888_to_yuv422(image)


def at_frame_precision(image: np.ndarray, pixel_format: int) -> np.ndarray:
    """An RGB888 image as the device holds it in a frame of `pixel_format`."""
    if check_pixel_format(pixel_format) == PIXEL_FORMAT_RGB565:
        return at_rgb565_precision(image)
    return at_yuv422_precision(image)


def wire_bytes(frame: np.ndarray | bytes) -> bytes:
    """Wire bytes (little-endian u16 per pixel) of a uint16 frame of either format."""
    if isinstance(frame, (bytes, bytearray, memoryview)):
        return bytes(frame)
    return np.asarray(frame, dtype="<u2").tobytes()


def stitch_tiles(tiles: Iterable[Tile], width: int, height: int) -> np.ndarray:
    image = np.zeros((height, width, 3), dtype=np.uint8)
    for tile in tiles:
        image[tile.y:tile.y + tile.height, tile.x:tile.x + tile.width] = tile.pixels()
    return image
