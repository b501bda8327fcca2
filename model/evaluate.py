"""`tinymirnet eval`: PSNR and SSIM per image and mean for the network and the baselines, all
computed in one run on the same images, printed as a table and written as JSON, plus a
comparison grid PNG (input | autocontrast | tiny MIRNet | ground truth). Given the training
pairs, each method is also scored apart on the frames that show a training scene again at its
training target's brightness and on the others (model/scene_overlap.py)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
from PIL import Image, ImageOps

from .data import find_pairs, load_pair, resolve_split, to_float
from .files import atomic_write_json, report_path
from .metrics import brightness_log_ratio, psnr, psnr_gt_mean, ssim
from .plots import comparison_grid
from .scene_overlap import GROUP_TITLES, GROUPS


if TYPE_CHECKING:
    from .scene_overlap import TrainingScenes

GAMMA = 1 / 2.2  # the gamma-curve baseline: out = in ** (1/2.2)

Method = Callable[[np.ndarray], np.ndarray]  # uint8 HxWx3 low-light -> float HxWx3 in [0, 1]


def baseline_methods() -> dict[str, Method]:
    return {
        "input": to_float,
        "autocontrast": lambda lo: to_float(np.asarray(ImageOps.autocontrast(Image.fromarray(lo)))),
        "histogram_equalization": lambda lo: to_float(np.asarray(ImageOps.equalize(Image.fromarray(lo)))),
        "gamma": lambda lo: to_float(lo) ** GAMMA,
    }


def network_methods(enhancer, tile: int, halo: int) -> dict[str, Method]:
    """The float network on the whole frame and tile by tile (tile + halo as on the board),
    each after the exposure normalisation the weights were trained with."""
    return {
        "tiny_mirnet_float_full": enhancer.enhance,
        "tiny_mirnet_float_tiled": lambda lo: enhancer.enhance(lo, tile, halo),
    }


def evaluate(data_dir: str | Path, methods: dict[str, Method], report: Path | None = None,
             grid: Path | None = None, grid_method: str | None = None, meta: dict | None = None,
             limit: int | None = None, log=print, pairs: list | None = None,
             dataset_name: str | None = None, agreement: tuple[str, str] | None = None,
             training_scenes: TrainingScenes | None = None) -> dict:
    """Scores `methods` on eval15 under `data_dir`, or on `pairs` when given (e.g. the
    validation split, for decisions that must not be taken on the benchmark). `agreement`
    (method a, method b): also the PSNR of a's 8-bit output against b's, per image, with mean
    and min (the int8 network against its float twin on the same tiling). `training_scenes`
    (scene_overlap.TrainingScenes of the pairs the weights were trained on): each frame's nearest
    training scene, and every method's mean PSNR, SSIM and GT-mean PSNR in each scene group
    (`by_scene`: seen, known scene at another brightness, new scene)."""
    if pairs is None:
        pairs = find_pairs(resolve_split(data_dir, "eval"))
    pairs = pairs[:limit]
    results = {name: {"psnr": 0.0, "ssim": 0.0, "psnr_gt_mean": 0.0, "seconds": 0.0, "images": []}
               for name in methods}
    grid_rows = []
    agreeing: list[dict] = []
    scenes: list[dict] = []
    for pair in pairs:
        low, high = load_pair(pair)
        ref = to_float(high)
        if training_scenes is not None:
            scenes.append({"name": pair.stem, **training_scenes.match(high)})
        outputs = {}
        for name, method in methods.items():
            t0 = time.perf_counter()
            out = np.asarray(method(low), dtype=np.float32)
            results[name]["seconds"] += time.perf_counter() - t0
            if out.shape != ref.shape:
                raise ValueError(f"method {name} returned {out.shape} for {pair.low} ({ref.shape})")
            # Scores are taken on the 8-bit image a user would save.
            out8 = np.clip(np.round(out * 255.0), 0, 255) / 255.0
            results[name]["images"].append({"name": pair.stem, "psnr": psnr(out8, ref), "ssim": ssim(out8, ref),
                                            "psnr_gt_mean": psnr_gt_mean(out8, ref),
                                            "brightness_log_ratio": brightness_log_ratio(out8, ref)})
            outputs[name] = out8
        if agreement:
            agreeing.append({"name": pair.stem, "psnr": psnr(outputs[agreement[0]], outputs[agreement[1]])})
        log(f"  {pair.stem:>6}: " + "  ".join(f"{n} {results[n]['images'][-1]['psnr']:.2f}" for n in methods))
        if grid_method and len(grid_rows) < 5:
            grid_rows.append([low, _u8(outputs["autocontrast"]), _u8(outputs[grid_method]), high])
    for r in results.values():
        r["psnr"] = float(np.mean([i["psnr"] for i in r["images"]]))
        r["ssim"] = float(np.mean([i["ssim"] for i in r["images"]]))
        r["psnr_gt_mean"] = float(np.mean([i["psnr_gt_mean"] for i in r["images"]]))
        # Exposure error against the ground truth: mean (bias) and root mean square.
        b = np.array([i["brightness_log_ratio"] for i in r["images"]])
        r["brightness_log_ratio_mean"] = float(np.mean(b))
        r["brightness_log_ratio_rms"] = float(np.sqrt(np.mean(b * b)))
        r["seconds_per_image"] = r.pop("seconds") / len(pairs)
        if scenes:
            r["by_scene"] = _by_scene(r["images"], scenes)
    # Keyed by method; "meta" (the one key that is not a method) says what was measured.
    dataset = dataset_name or report_path(resolve_split(data_dir, "eval"))
    summary = {**results, "meta": {"dataset": dataset, "images": len(pairs),
                                   **(meta or {})}}
    if agreement:
        values = [a["psnr"] for a in agreeing]
        summary["meta"]["agreement"] = {"output": agreement[0], "against": agreement[1],
                                        "psnr_mean": float(np.mean(values)), "psnr_min": float(np.min(values)),
                                        "images": agreeing}
        log(f"{agreement[0]} against {agreement[1]}: PSNR mean {np.mean(values):.2f} dB, min {np.min(values):.2f} dB")
    if "tiny_mirnet_float_full" in results and "tiny_mirnet_float_tiled" in results:
        summary["meta"]["tiling_loss_db"] = (results["tiny_mirnet_float_full"]["psnr"]
                                             - results["tiny_mirnet_float_tiled"]["psnr"])
    if scenes:
        from .scene_overlap import GROUPS, RULE
        summary["meta"]["scene_overlap"] = {"rule": RULE, "images": scenes,
                                            **{g: sum(s["group"] == g for s in scenes) for g in GROUPS}}
    log(format_table(results))
    if scenes:
        log(format_scene_table(results))
    if report:
        atomic_write_json(report, summary)
    if grid and grid_rows:
        comparison_grid(grid, grid_rows, ["input", "autocontrast", grid_method.replace("_", " "), "ground truth"])
    return summary


def _by_scene(images: list[dict], scenes: list[dict]) -> dict:
    out = {}
    for group in GROUPS:
        chosen = [i for i, s in zip(images, scenes) if s["group"] == group]
        out[group] = {"images": len(chosen), **({k: float(np.mean([i[k] for i in chosen]))
                                                 for k in ("psnr", "ssim", "psnr_gt_mean")} if chosen else {})}
    return out


def format_scene_table(results: dict) -> str:
    """PSNR (and GT-mean PSNR) of each method in each scene group (model/scene_overlap.py)."""
    any_result = next(iter(results.values()))["by_scene"]
    heads = [f"{GROUP_TITLES[g]} ({any_result[g]['images']})" for g in GROUPS]
    lines = [f"{'method':<28}" + "".join(f" {h:>32}" for h in heads) + "   PSNR (GT-mean PSNR), dB",
             "-" * (28 + 33 * len(GROUPS) + 27)]
    for name, r in results.items():
        cells = [f"{g['psnr']:.2f} ({g['psnr_gt_mean']:.2f})" if g["images"] else "-"
                 for g in (r["by_scene"][k] for k in GROUPS)]
        lines.append(f"{name:<28}" + "".join(f" {c:>32}" for c in cells))
    return "\n".join(lines)


def _u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def format_table(results: dict) -> str:
    """PSNR, SSIM, the GT-mean PSNR diagnostic (output brightness matched to the ground
    truth's, metrics.gt_mean_scaled) and the exposure error ln(output / ground-truth mean grey)
    as mean ± root mean square, for each method."""
    lines = [f"{'method':<28} {'PSNR (dB)':>10} {'SSIM':>7} {'GT-mean PSNR':>13} {'exposure ln':>12}"
             f" {'s/image':>8}", "-" * 83]
    for name, r in results.items():
        lines.append(f"{name:<28} {r['psnr']:>10.2f} {r['ssim']:>7.4f} {r['psnr_gt_mean']:>13.2f}"
                     f" {r['brightness_log_ratio_mean']:>+6.2f}±{r['brightness_log_ratio_rms']:<5.2f}"
                     f" {r['seconds_per_image']:>8.2f}")
    return "\n".join(lines)
