"""Sample low-light frames for demos and the virtual camera, synthesized from a CC0 or
public-domain photograph bundled in `samples/` (see its README for sources and terms): the
photo is darkened with a gamma curve and given Poisson-Gaussian sensor noise."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .data import read_rgb


SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
SAMPLE_PHOTOS = ("coffee", "chelsea", "astronaut", "rocket")


def sample_photo(name: str = "coffee") -> np.ndarray:
    """One of the bundled sample photographs as HxWx3 uint8."""
    if name not in SAMPLE_PHOTOS:
        raise ValueError(f"unknown sample '{name}' (known: {', '.join(SAMPLE_PHOTOS)})")
    for suffix in (".png", ".jpg"):
        path = SAMPLES_DIR / f"{name}{suffix}"
        if path.is_file():
            return read_rgb(path)
    raise FileNotFoundError(f"{SAMPLES_DIR}: sample photo '{name}' is missing from this installation")


def synthesize_low_light(img: np.ndarray, seed: int = 0, exposure: float = 0.3, gamma: float = 2.0,
                         photons: float = 300.0, read_noise: float = 0.008) -> np.ndarray:
    """A low-light version of a well-exposed uint8 image: exposure * x**gamma, then shot noise
    (Poisson, `photons` per unit of intensity) and read noise (Gaussian), quantized to 8 bit."""
    rng = np.random.default_rng(seed)
    dark = exposure * (img.astype(np.float64) / 255.0) ** gamma
    noisy = rng.poisson(dark * photons) / photons + rng.normal(0.0, read_noise, dark.shape)
    return np.clip(np.round(noisy * 255.0), 0, 255).astype(np.uint8)


def resize_to(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scales to cover width x height and centre-crops (the rule for frames sent to the board)."""
    h, w = img.shape[:2]
    scale = max(width / w, height / h)
    nw, nh = max(width, round(w * scale)), max(height, round(h * scale))
    im = Image.fromarray(img).resize((nw, nh), Image.BILINEAR)
    x, y = (nw - width) // 2, (nh - height) // 2
    return np.asarray(im)[y:y + height, x:x + width].copy()
