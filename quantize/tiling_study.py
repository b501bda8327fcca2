"""`tinymirnet tiling-study`: where the tiling loss comes from.

On the board every tile is enhanced on its own, and MIRNet's channel attention and SKFF pool
over their whole input: each tile picks its own brightness and colour from its own 28² of
context. This study splits the loss (full frame − tiled, float network) into

* what a per-tile, per-channel gain would recover if it were set from the full-frame output
  (an oracle: it needs the full-frame result, which the board never has), i.e. the part of the
  loss that is each tile's overall level; the rest is structure inside the tiles;
* what a global tone curve would recover if it were fitted on the full-frame output (an
  oracle again): is one curve per frame enough to set the tile levels?
* what two practical, non-oracle estimates of that curve recover, each setting the tile
  means: a per-channel curve fitted on the whole stitched frame (mean tiled output per input
  level), and a curve fitted on the network's output for a thumbnail of the whole frame
  (THUMB_WIDTH px wide; and one as wide as the model's input, tile + 2·halo, the only
  thumbnail the board's fixed-shape int8 model can take in one extra inference per frame).

The scores are computed with the same code and images as `tinymirnet eval`; nothing here
changes what the board or the CLI ships.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from tinymirnet.model.data import find_pairs, resolve_split, split_train_val, to_float
from tinymirnet.model.evaluate import evaluate
from tinymirnet.model.exposure import normalize_exposure
from tinymirnet.model.files import write_report
from tinymirnet.quantize.tflm import dequantize_pixels, int8_tiled, quantize_pixels


CURVE_BINS = 32
THUMB_WIDTH = 56


def tile_means(img: np.ndarray, tile: int) -> np.ndarray:
    """Per-tile, per-channel means (border tiles: the pixels they have)."""
    h, w, c = img.shape
    ty, tx = -(-h // tile), -(-w // tile)
    sums = np.zeros((ty, tx, c))
    counts = np.zeros((ty, tx, 1))
    ys, xs = np.arange(h) // tile, np.arange(w) // tile
    np.add.at(sums, (ys[:, None], xs[None, :]), img)
    np.add.at(counts, (ys[:, None], xs[None, :]), 1)
    return sums / counts


def set_tile_means(img: np.ndarray, target: np.ndarray, tile: int, eps: float = 1e-3) -> np.ndarray:
    """Scales every tile of `img`, per channel, so its mean becomes `target`'s (gain clipped
    to [1/4, 4] so a near-black tile cannot blow up)."""
    gain = np.clip((tile_means(target, tile) + eps) / (tile_means(img, tile) + eps), 0.25, 4.0)
    h, w = img.shape[:2]
    per_pixel = np.repeat(np.repeat(gain, tile, axis=0), tile, axis=1)[:h, :w]
    return img * per_pixel


def frame_tone_curve(low: np.ndarray, out: np.ndarray, bins: int = CURVE_BINS,
                     fit_on: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """A per-channel curve: the mean of `out` for each level of `low` (quantile bins),
    interpolated back onto `low`. With `fit_on=(low2, out2)` the curve is fitted on that pair
    (e.g. a thumbnail and its output) and applied to `low`."""
    curve = np.empty(low.shape, dtype=np.float64)
    src_low, src_out = fit_on if fit_on is not None else (low, out)
    for c in range(low.shape[-1]):
        x, y = src_low[..., c].ravel(), src_out[..., c].ravel()
        edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
        if len(edges) < 2:  # a flat channel: one level
            curve[..., c] = y.mean()
            continue
        idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
        n = np.maximum(1, np.bincount(idx, minlength=len(edges) - 1))
        centres = np.bincount(idx, x, len(edges) - 1) / n
        levels = np.bincount(idx, y, len(edges) - 1) / n
        curve[..., c] = np.interp(low[..., c], centres, levels)
    return curve


def thumbnail(img: np.ndarray, width: int = THUMB_WIDTH) -> np.ndarray:
    """The whole frame box-filtered down to `width` px (aspect kept)."""
    h, w = img.shape[:2]
    size = (width, max(1, round(width * h / w)))
    return np.stack([np.asarray(Image.fromarray(img[..., c].astype(np.float32), "F").resize(size, Image.BOX))
                     for c in range(img.shape[-1])], axis=-1)


def pad_to_square(img: np.ndarray, side: int) -> np.ndarray:
    """Edge-pads an image up to side x side, as the board's fixed-shape model takes it."""
    h, w = img.shape[:2]
    return np.pad(img, ((0, max(0, side - h)), (0, max(0, side - w)), (0, 0)), mode="edge")


def _per_image(compute):
    """`compute(low_u8)` memoized for the last image: the methods of one study share it, and
    `evaluate` calls them one image at a time."""
    last = {"key": None, "value": None}

    def cached(low_u8: np.ndarray):
        key = hashlib.sha1(low_u8.tobytes()).hexdigest()
        if key != last["key"]:
            last["key"], last["value"] = key, compute(low_u8)
        return last["value"]
    return cached


def int8_thumbnail_methods(tflm_model, tile: int, halo: int, *, exposure_target: int) -> dict:
    """The board's own numbers: the int8 model tile by tile on the TFLM kernels, and the same
    with its tile means set from a curve fitted on the int8 model's output for a thumbnail
    of the frame (uint8, box-filtered to the model's input width, edge-padded to its square
    input): exactly one extra inference of the shipped model per frame."""
    width = tile + 2 * halo
    tiled = _per_image(lambda lo: int8_tiled(tflm_model, lo, tile, halo, exposure_target=exposure_target).astype(np.float64) / 255.0)

    def harmonized(lo):
        tiled_out = tiled(lo)
        lo = normalize_exposure(lo, exposure_target)  # what the board's tiler sees
        small = np.clip(np.round(thumbnail(lo.astype(np.float32), width)), 0, 255).astype(np.uint8)
        h, w = small.shape[:2]
        out_q = tflm_model.invoke(quantize_pixels(pad_to_square(small, width), tflm_model.input_quant))
        small_out = dequantize_pixels(out_q, tflm_model.output_quant)[:h, :w] / 255.0
        curve = frame_tone_curve(to_float(lo), None, fit_on=(to_float(small), small_out))
        return np.clip(set_tile_means(tiled_out, curve, tile), 0, 1)

    return {"int8_tiled": tiled, "int8_tiled_harmonized_model_input_thumbnail_curve": harmonized}


def study_methods(enhancer, tile: int, halo: int) -> dict:
    def prepared_full_and_tiled(low_u8):
        x = enhancer.prepare(low_u8)
        return x, np.clip(enhancer.full_frame(x), 0, 1), np.clip(enhancer.tiled(x, tile, halo), 0, 1)
    outputs = _per_image(prepared_full_and_tiled)

    def harmonized(lo):
        x, _, tiled = outputs(lo)
        return np.clip(set_tile_means(tiled, frame_tone_curve(x, tiled), tile), 0, 1)

    def full_curve_oracle(lo):
        x, full, tiled = outputs(lo)
        return np.clip(set_tile_means(tiled, frame_tone_curve(x, full), tile), 0, 1)

    def thumbnail_curve(width, square: bool = False):
        """`square`: edge-pad the thumbnail to width² before the network, as the board's
        fixed-shape model would see it, and keep the thumbnail's own pixels of the output."""
        def method(lo):
            x, _, tiled = outputs(lo)
            small = thumbnail(x, width)
            if square:
                h, w = small.shape[:2]
                small_out = np.clip(enhancer.full_frame(pad_to_square(small, width)), 0, 1)[:h, :w]
            else:
                small_out = np.clip(enhancer.full_frame(small), 0, 1)
            curve = frame_tone_curve(x, None, fit_on=(small, small_out))
            return np.clip(set_tile_means(tiled, curve, tile), 0, 1)
        return method

    return {
        "float_full": lambda lo: outputs(lo)[1],
        "float_tiled": lambda lo: outputs(lo)[2],
        "tiled_with_full_frame_tile_means_oracle":
            lambda lo: np.clip(set_tile_means(outputs(lo)[2], outputs(lo)[1], tile), 0, 1),
        "tiled_with_full_frame_curve_oracle": full_curve_oracle,
        "tiled_harmonized_frame_curve": harmonized,
        "tiled_harmonized_thumbnail_curve": thumbnail_curve(THUMB_WIDTH),
        "tiled_harmonized_model_input_thumbnail_curve": thumbnail_curve(tile + 2 * halo, square=True),
    }


def study_pairs(data: str | Path, split: str, val_percent: float = 10.0):
    """The pairs a study runs on: 'eval15' (the benchmark: report only) or 'val' (the
    deterministic validation split of the training folder, the one training uses; decide on
    this one). Returns (pairs, dataset name for the report)."""
    if split == "eval15":
        folder = resolve_split(data, "eval")
        return find_pairs(folder), str(folder)
    if split == "val":
        folder = resolve_split(data, "train")
        _, val = split_train_val(find_pairs(folder), val_percent)
        if not val:
            raise ValueError(f"{folder}: the validation split is empty at {val_percent} %")
        return val, f"{folder} (validation split, {val_percent:g} %)"
    raise ValueError(f"unknown split {split!r}: use eval15 or val")


def tiling_study(data: str | Path, enhancer, tile: int, halo: int, report: Path,
                 meta: dict | None = None, log=print, split: str = "eval15",
                 val_percent: float = 10.0, int8_model=None) -> dict:
    """`int8_model`: a TflmModel of the shipped int8 model, to add the board's own figures."""
    pairs, name = study_pairs(data, split, val_percent)
    methods = study_methods(enhancer, tile, halo)
    if int8_model is not None:
        methods.update(int8_thumbnail_methods(int8_model, tile, halo,
                                              exposure_target=enhancer.exposure_target))
    result = evaluate(data, methods, meta=meta, log=log, pairs=pairs, dataset_name=name)
    full, tiled = result["float_full"]["psnr"], result["float_tiled"]["psnr"]
    oracle = result["tiled_with_full_frame_tile_means_oracle"]["psnr"]
    harmonized = result["tiled_harmonized_frame_curve"]["psnr"]
    curve_oracle = result["tiled_with_full_frame_curve_oracle"]["psnr"]
    thumb = result["tiled_harmonized_thumbnail_curve"]["psnr"]
    thumb_model = result["tiled_harmonized_model_input_thumbnail_curve"]["psnr"]
    result["meta"].update({
        "tile": tile, "halo": halo,
        "tiling_loss_db": full - tiled,
        "recovered_by_tile_means_oracle_db": oracle - tiled,
        "left_inside_tiles_db": full - oracle,
        "recovered_by_full_frame_curve_oracle_db": curve_oracle - tiled,
        "recovered_by_frame_curve_db": harmonized - tiled,
        "recovered_by_thumbnail_curve_db": thumb - tiled,
        "recovered_by_model_input_thumbnail_curve_db": thumb_model - tiled,
        "thumbnail_width": THUMB_WIDTH,
        "model_input_thumbnail_width": tile + 2 * halo,
        "split": split,
    })
    if int8_model is not None:
        i8, i8h = result["int8_tiled"]["psnr"], result["int8_tiled_harmonized_model_input_thumbnail_curve"]["psnr"]
        result["meta"]["int8_recovered_by_model_input_thumbnail_curve_db"] = i8h - i8
    write_report(report, result, markdown(result))
    log(markdown(result))
    return result


def markdown(result: dict) -> str:
    m = result["meta"]
    rows = [f"| {name} | {r['psnr']:.2f} | {r['ssim']:.3f} |" for name, r in result.items() if name != "meta"]
    return "\n".join([
        f"# Tiling study ({m['images']} images of {Path(m['dataset']).name}, tile {m['tile']} + halo {m['halo']})",
        "", "| method | PSNR (dB) | SSIM |", "|---|---:|---:|", *rows, "",
        f"Tiling loss (float, full frame − tiled): {m['tiling_loss_db']:.2f} dB.",
        f"Recovered by giving each tile the full-frame output's per-channel means (oracle): "
        f"{m['recovered_by_tile_means_oracle_db']:.2f} dB; left inside the tiles: {m['left_inside_tiles_db']:.2f} dB.",
        f"Recovered by one per-channel tone curve per frame fitted on the full-frame output (oracle): "
        f"{m['recovered_by_full_frame_curve_oracle_db']:.2f} dB.",
        "Recovered without an oracle, the tile means set by a curve fitted on the stitched tiled frame: "
        f"{m['recovered_by_frame_curve_db']:.2f} dB; by a curve fitted on the network's output for a "
        f"{m['thumbnail_width']} px wide thumbnail of the frame: {m['recovered_by_thumbnail_curve_db']:.2f} dB; "
        f"by the same with a thumbnail as wide as the model's input ({m['model_input_thumbnail_width']} px, "
        f"what the board could run): {m['recovered_by_model_input_thumbnail_curve_db']:.2f} dB.",
        *([f"The board's own pipeline (int8 on the TFLM kernels) with that thumbnail curve, the thumbnail "
           f"also run by the int8 model: {m['int8_recovered_by_model_input_thumbnail_curve_db']:+.2f} dB."]
          if "int8_recovered_by_model_input_thumbnail_curve_db" in m else []), ""])
