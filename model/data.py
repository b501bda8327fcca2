"""LoL data: the paired folder reader, the train/validation split, crops and the tf.data pipeline.

The LoL release (Wei et al., BMVC 2018) is laid out as `our485/{low,high}` (training) and
`eval15/{low,high}` (the 15 benchmark pairs). Any image format Pillow reads is accepted, and a
pair is matched by file stem (`low/2.png` with `high/2.jpg`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .thumbnail import thumbnail

TRAIN_FOLDERS = ("our485", "our450")
# What a folder of photos is read for (`find_photos`, `tinymirnet naturalness`, the virtual board).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
EVAL_FOLDER = "eval15"


class DataError(Exception):
    """A problem with the user's data, worded as one line that names the offending file."""


@dataclass(frozen=True)
class Pair:
    stem: str
    low: Path
    high: Path


def read_rgb(path: Path) -> np.ndarray:
    """Reads any image Pillow opens as an HxWx3 uint8 RGB array: EXIF orientation applied,
    16-bit and float images scaled to 8 bit, alpha dropped, grayscale expanded."""
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            return _to_rgb8(im)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from None


def _to_rgb8(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if a.max() > 255 or im.mode.startswith("I;16") else 255.0
        a = np.clip(np.round(a * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if im.mode == "F":
        a = np.clip(np.round(np.asarray(im, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        return np.asarray(im, dtype=np.uint8)[..., :3].copy()
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def _images_by_stem(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: missing folder (expected a LoL split with low/ and high/)")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.name.startswith("."):
            if p.stem in found:
                raise DataError(f"{p}: two files with stem '{p.stem}' ({found[p.stem].name})")
            found[p.stem] = p
    return found


def find_pairs(split_dir: str | Path, exclude: tuple[str, ...] = ()) -> list[Pair]:
    """The pairs of one split folder (`<split>/low`, `<split>/high`), sorted by stem, after
    checking that every image has its partner. `exclude` names stems to leave out."""
    split_dir = Path(split_dir)
    low = _images_by_stem(split_dir / "low")
    high = _images_by_stem(split_dir / "high")
    for stem, path in low.items():
        if stem not in high:
            raise DataError(f"{path}: no partner '{stem}.*' in {split_dir / 'high'}")
    for stem, path in high.items():
        if stem not in low:
            raise DataError(f"{path}: no partner '{stem}.*' in {split_dir / 'low'}")
    excluded = set(exclude)
    pairs = [Pair(s, low[s], high[s]) for s in sorted(low, key=_natural_key) if s not in excluded]
    if not pairs:
        raise DataError(f"{split_dir}: no image pairs")
    return pairs


def _natural_key(stem: str):
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def resolve_split(data_dir: str | Path, kind: str) -> Path:
    """Finds the split folder: `data_dir` itself when it holds low/ and high/, else the LoL
    sub-folder for `kind` ('train': our485 or our450; 'eval': eval15)."""
    data_dir = Path(data_dir)
    if (data_dir / "low").is_dir() and (data_dir / "high").is_dir():
        return data_dir
    names = TRAIN_FOLDERS if kind == "train" else (EVAL_FOLDER,)
    for name in names:
        if (data_dir / name / "low").is_dir():
            return data_dir / name
    raise DataError(f"{data_dir}: no LoL {kind} split here (looked for low/+high/ or {', '.join(names)}/)")


def load_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    low, high = read_rgb(pair.low), read_rgb(pair.high)
    if low.shape != high.shape:
        raise DataError(
            f"{pair.high}: size {high.shape[1]}x{high.shape[0]} differs from its partner "
            f"{pair.low.name} ({low.shape[1]}x{low.shape[0]})")
    return low, high


def load_pairs(pairs: list[Pair]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Decodes every pair once (LoL fits in memory: 485 pairs are ~0.7 GB as uint8)."""
    lows, highs = [], []
    for p in pairs:
        lo, hi = load_pair(p)
        lows.append(lo)
        highs.append(hi)
    return lows, highs


def split_train_val(pairs: list[Pair], val_percent: float = 10.0) -> tuple[list[Pair], list[Pair]]:
    """Deterministic split by a hash of each stem: a pair stays on its side whatever else is in
    the folder. eval15 is never part of this: it is for the benchmark only."""
    def bucket(stem: str) -> float:
        return int(hashlib.sha1(stem.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF * 100.0

    val = [p for p in pairs if bucket(p.stem) < val_percent]
    train = [p for p in pairs if bucket(p.stem) >= val_percent]
    if not train:
        raise DataError("the training split is empty: lower --val-percent or add pairs")
    return train, val


def _same_random_crop(rng: np.random.Generator, low: np.ndarray, high: np.ndarray, size: int):
    """The same random size x size window of both images."""
    h, w = low.shape[:2]
    if h < size or w < size:
        raise DataError(f"image of {w}x{h} is smaller than the {size}x{size} training crop")
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    return low[y:y + size, x:x + size], high[y:y + size, x:x + size]


def random_crop_pair(rng: np.random.Generator, low: np.ndarray, high: np.ndarray, size: int):
    """A random size x size crop of both images, then a random flip and 90-degree rotation."""
    lo, hi = _same_random_crop(rng, low, high, size)
    k = int(rng.integers(0, 4))
    lo, hi = np.rot90(lo, k), np.rot90(hi, k)
    if rng.integers(0, 2):
        lo, hi = lo[:, ::-1], hi[:, ::-1]
    return lo, hi


def crop_dataset(lows, highs, crop: int, batch: int, steps: int, seed: int):
    """A tf.data pipeline of `steps` batches of random crops, as float32 in [0, 1], prefetched.
    The images are decoded once (passed in as arrays); only crops are produced per step."""
    import tensorflow as tf

    def generate():
        rng = np.random.default_rng(seed)
        for _ in range(steps):
            idx = rng.integers(0, len(lows), size=batch)
            pairs = [random_crop_pair(rng, lows[i], highs[i], crop) for i in idx]
            lo = np.stack([p[0] for p in pairs]).astype(np.float32) / 255.0
            hi = np.stack([p[1] for p in pairs]).astype(np.float32) / 255.0
            yield lo, hi

    spec = tf.TensorSpec((batch, crop, crop, 3), tf.float32)
    return tf.data.Dataset.from_generator(generate, output_signature=(spec, spec)).prefetch(4)


def random_crop_with_context(rng: np.random.Generator, low: np.ndarray, high: np.ndarray,
                             thumb: np.ndarray, size: int):
    """A random size x size crop of both images with the low frame's thumbnail, each flipped
    alike (left-right, up-down; no 90-degree turn, which would change the thumbnail's shape)."""
    lo, hi = _same_random_crop(rng, low, high, size)
    if rng.integers(0, 2):
        lo, hi, thumb = lo[:, ::-1], hi[:, ::-1], thumb[:, ::-1]
    if rng.integers(0, 2):
        lo, hi, thumb = lo[::-1], hi[::-1], thumb[::-1]
    return thumb, lo, hi


# A context-jitter thumbnail is cut from this much finer thumbnail of the frame.
JITTER_FINENESS = 4


def fine_thumbnail(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """The thumbnail `jittered_thumbnail` cuts its windows from: `JITTER_FINENESS` times finer
    than width x height, or the frame itself where the frame is smaller than that."""
    h, w = frame.shape[:2]
    return thumbnail(frame, min(w, width * JITTER_FINENESS), min(h, height * JITTER_FINENESS))


def jittered_thumbnail(rng: np.random.Generator, fine: np.ndarray, width: int, height: int,
                       jitter: float) -> np.ndarray:
    """The width x height thumbnail of a random window of the frame, given the frame's
    `fine_thumbnail`: the window keeps between 1 - jitter and all of each side. A training
    augmentation: the attention must come from what the frame shows, not from where it shows
    it (no frame's context repeats exactly)."""
    h, w = fine.shape[:2]
    win_w = max(width, int(round(w * rng.uniform(1.0 - jitter, 1.0))))
    win_h = max(height, int(round(h * rng.uniform(1.0 - jitter, 1.0))))
    x, y = rng.integers(0, w - win_w + 1), rng.integers(0, h - win_h + 1)
    return thumbnail(fine[y:y + win_h, x:x + win_w], width, height)


def context_crop_dataset(lows, highs, thumbs, crop: int, batch: int, steps: int, seed: int,
                         jitter: float = 0.0, thumb_size: tuple[int, int] | None = None):
    """Like `crop_dataset`, for a frame-context network: batches of ((thumbnail, low crop),
    high crop), the thumbnail of the whole low frame each crop was cut from. With a `jitter`,
    `thumbs` are the frames' `fine_thumbnail`s and each crop gets the `thumb_size` (w, h)
    thumbnail of a random window of its frame (`jittered_thumbnail`)."""
    import tensorflow as tf

    def context(rng, i):
        return jittered_thumbnail(rng, thumbs[i], *thumb_size, jitter) if jitter else thumbs[i]

    def generate():
        rng = np.random.default_rng(seed)
        for _ in range(steps):
            idx = rng.integers(0, len(lows), size=batch)
            items = [random_crop_with_context(rng, lows[i], highs[i], context(rng, i), crop) for i in idx]
            th, lo, hi = (np.stack([it[k] for it in items]).astype(np.float32) / 255.0 for k in range(3))
            yield (th, lo), hi

    th_w, th_h = thumb_size if jitter else thumbs[0].shape[1::-1]
    spec = tf.TensorSpec((batch, crop, crop, 3), tf.float32)
    thumb_spec = tf.TensorSpec((batch, th_h, th_w, 3), tf.float32)
    return tf.data.Dataset.from_generator(generate, output_signature=((thumb_spec, spec), spec)).prefetch(4)


def find_photos(folder: str | Path) -> list[Path]:
    """The image files directly in `folder` (any format Pillow reads, by extension), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder of photos")
    photos = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: _natural_key(p.stem))
    if not photos:
        raise DataError(f"{folder}: no photos here ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return photos


def split_photos(photos: list[Path], val_percent: float = 10.0) -> tuple[list[Path], list[Path]]:
    """The same stem-hash split as `split_train_val`, for unpaired photos."""
    pairs = [Pair(p.stem, p, p) for p in photos]
    train, val = split_train_val(pairs, val_percent)
    return [p.low for p in train], [p.low for p in val]


def scene_crop_dataset(raws, prepared, thumbs, crop: int, batch: int, steps: int, seed: int):
    """Batches of ((thumbnail, prepared crop), raw crop) of unpaired photos: the network's input
    (exposure-normalised) and the same window of the photo as it was, which the naturalness loss
    compares with; `context_crop_dataset` with the photo in the ground truth's place."""
    return context_crop_dataset(prepared, raws, thumbs, crop, batch, steps, seed + 7919)


def to_float(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / 255.0


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(img, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
