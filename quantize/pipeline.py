"""`tinymirnet quantize`: float weights -> pruned -> int8 -> C array + headers, verified on the
real TFLM kernels, with budgets checked and a JSON + markdown report.

Regenerates every shipped artifact from the float weights in one command:
  quantize/artifacts/tiny_mirnet_int8.tflite (the tile model), tiny_mirnet_context_int8.tflite
  (a frame-context network's context model), tiny_mirnet_pruned.weights.h5,
  quantize_report.json, quantize_report.md; firmware/lib/tinymirnet_model/*.
The network it quantizes becomes the firmware's (unless firmware_dir is None: --no-firmware).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tinymirnet.model.data import (context_crop_dataset, crop_dataset, find_pairs, find_photos, load_pairs,
                                   read_rgb, resolve_split, scene_crop_dataset, split_photos, split_train_val)
from tinymirnet.model.evaluate import evaluate
from tinymirnet.model.exposure import normalize_exposure
from tinymirnet.model.files import (atomic_save_weights, atomic_write_bytes, atomic_write_text, provenance,
                                    report_path, write_report)
from tinymirnet.model.inference import FloatEnhancer, load_model
from tinymirnet.model.network import MirnetConfig, build_frame_context_trainer
from tinymirnet.model.network_cost import conv_macs, count_params
from tinymirnet.model.paths import ARTIFACTS_DIR, CONTEXT_INT8_NAME, FIRMWARE_MODEL_DIR, INT8_NAME
from tinymirnet.model.thumbnail import thumbnail
from tinymirnet.model.tiling import TilingConfig, iter_tiles, load_tiling, tile_grid

from .budget import Measured, budget_violations, check_budgets, firmware_buffers, ram_table
from .convert import convert_int8, fixed_frame_context_models, fixed_shape_model, representative_tiles
from .export import ContextExport, ExportInfo, write_firmware_files
from .flatbuffer import op_names
from .mirnet_graph import check_mirnet
from .prune import distilled, finetune, gzip_size, prune, prune_filters, sparsity_report
from .qat import quantization_aware_finetune
from .quantize_report import markdown
from .tflm import (ReferenceModel, TflmModel, arena_after_one_run, int8_frame_context_method, int8_method,
                   quantize_pixels, requantize)


# Projection of device time: CMSIS-NN's paper (Lai, Suda, Chandra 2018, arXiv:1801.06601)
# runs a 12.3 M-MAC CIFAR-10 CNN in 99.1 ms on a 216 MHz Cortex-M7, 0.57 MAC per cycle. The
# Cortex-M4 has the same 2x16-bit SMLAD but no dual issue: 0.5 MAC/cycle is taken, i.e.
# 32 M-MAC/s at 64 MHz, for the convolutions only (the other ops are not counted).
CMSIS_NN_MACS_PER_CYCLE = 0.5
NANO_CLOCK_HZ = 64_000_000


def verify_bit_exact(flatbuffer: bytes, tiles_u8: list[np.ndarray], context: np.ndarray | None = None,
                     runtime: str = "python") -> dict:
    """TFLM output vs tf.lite.Interpreter's reference kernels, tile by tile (with one int8
    context vector for a frame-context tile model). The converter's check: the tflite_micro
    runtime (`runtime="python"`) must agree bit for bit. The board's TFLM (`runtime="board"`,
    Chirale 2.0.0) does not on models with MEAN (its reference Mean truncates where TFLite
    rounds): the pipeline reports how far it differs."""
    tflm, ref = TflmModel(flatbuffer, runtime=runtime), ReferenceModel(flatbuffer)
    differing, max_diff = 0, 0
    for t in tiles_u8:
        x = quantize_pixels(t, tflm.input_quant)
        a, b = tflm.invoke(x, context).astype(np.int16), ref.invoke(x, context).astype(np.int16)
        differing += int(np.sum(a != b))
        max_diff = max(max_diff, int(np.max(np.abs(a - b))))
    return {"tiles": len(tiles_u8), "values_differing": differing, "max_abs_diff": max_diff,
            "bit_exact": differing == 0, "tflm": tflm.library, "reference_kernels": ref.resolver}


class ExposureMismatch(ValueError):
    """The weights were trained for another exposure normalisation than model/tiling.json's."""


class PrunedMismatch(ValueError):
    """`--pruned` weights that are not a pruned copy of `--weights`' network."""


def eval_tiles(data_dir, tiling: TilingConfig, count: int = 64) -> list[np.ndarray]:
    """Tile inputs (with halo) cut from eval15 low-light frames (exposure-normalised as on the
    board), spread over all images."""
    pairs = find_pairs(resolve_split(data_dir, "eval"))
    lows = [normalize_exposure(low, tiling.exposure_target) for low in load_pairs(pairs)[0]]
    tiles = [x for low in lows for _, x in iter_tiles(low, tiling.tile, tiling.halo)]
    step = max(1, len(tiles) // count)
    return tiles[::step][:count]


@dataclass
class QuantizeRun:
    """What the stages of `run_quantize` pass on: the settings, the models made so far, the report.
    A frame-context network (`context`) has two int8 models; their fields are None otherwise."""
    data_dir: Path
    weights: Path
    tiling: TilingConfig
    float_model: object
    cfg: MirnetConfig
    report: dict
    log: object
    scenes: Path | None = None  # real photos: in the int8 calibration, and (scene_weight) the fine-tunes
    scene_weight: float = 0.0
    pruned_cfg: MirnetConfig | None = None  # the pruned network's (narrower after structured pruning)
    pruned: object = None  # the network the int8 model is converted from (pruned, QAT'd)
    pruned_only: object = None  # pruned, before QAT (its own ladder row)
    flatbuffer: bytes = b""  # the tile model
    context_flatbuffer: bytes = b""
    dense_flatbuffer: bytes = b""  # the unpruned network converted alike (sizes only)
    tile_fixed: object = None
    context_fixed: object = None
    tflm: TflmModel | None = None
    context_tflm: TflmModel | None = None
    arena: int = 0  # the larger model's

    @property
    def context(self) -> bool:
        return self.cfg.frame_context

    @property
    def thumb_size(self) -> tuple[int, int]:
        return self.cfg.thumbnail_width, self.cfg.thumbnail_height

    @property
    def size(self) -> int:
        return self.tiling.model_input


# The pruning fraction each design ships with (`tinymirnet quantize` without --sparsity), chosen
# on the validation split: the tiny MIRNet loses a quarter of each DAU's inner filters (int8
# 20.09 dB against 20.10 with one in 8, 294.4 against 304.0 M instructions per frame; against
# its float twin on SICE night 42.3 dB mean, 37.7 dB min); the half-resolution network one
# filter in 16 (20.13 dB with 1/16 removed, 20.08 with 1/8, 20.19 unpruned); the older designs
# half their conv weights.
DEFAULT_SPARSITY = {"mrb_half_resolution": 0.25, "half_resolution": 0.0625}
STRUCTURED = ("mrb_half_resolution", "half_resolution")
OLDER_DESIGNS_SPARSITY = 0.5


def run_quantize(data_dir, weights: Path, sparsity: float | None = None, finetune_steps: int = 400,
                 finetune_batch: int = 32, finetune_crop: int | None = None,
                 finetune_lr: float = 1e-3, finetune_loss: str = "mse", finetune_schedule: str = "cosine",
                 finetune_distill: bool = False, qat_steps: int = 0, qat_lr: float = 3e-4,
                 out_dir: Path | None = None, firmware_dir: Path | None = FIRMWARE_MODEL_DIR,
                 eval_limit: int | None = None, scenes: Path | None = None, scene_weight: float = 0.0,
                 pruned_weights: Path | None = None, log=print) -> dict:
    """Prune and fine-tune, (QAT,) convert to int8, verify on TFLM, check budgets, score the ladder
    on eval15, then write the artifacts and the firmware files: one stage function each. With
    `pruned_weights` (an earlier run's tiny_mirnet_pruned.weights.h5) the pruning and both
    fine-tunes are skipped and those weights are converted for model/tiling.json's tiling."""
    t_start = time.monotonic()
    run = start_run(data_dir, weights, log)
    if sparsity is None:
        sparsity = DEFAULT_SPARSITY.get(run.cfg.design, OLDER_DESIGNS_SPARSITY)
    run.scenes = Path(scenes) if scenes else None
    run.scene_weight = scene_weight
    if pruned_weights is None:
        prune_stage(run, sparsity, finetune_steps, finetune_batch, finetune_crop or run.size, finetune_lr,
                    finetune_loss, finetune_schedule, finetune_distill, qat_steps, qat_lr)
    else:
        reuse_pruned_stage(run, Path(pruned_weights))
    convert_stage(run)
    verify_stage(run)
    budget_stage(run)
    ladder_stage(run, eval_limit)
    write_stage(run, out_dir or ARTIFACTS_DIR, firmware_dir, t_start)
    return run.report


def start_run(data_dir, weights: Path, log) -> QuantizeRun:
    """The float network, checked against model/tiling.json, and the report's first fields."""
    tiling = load_tiling()
    float_model, cfg = load_model(weights)
    if cfg.exposure_target != tiling.exposure_target:
        raise ExposureMismatch(
            f"{weights}: trained with exposure_target {cfg.exposure_target}, but "
            f"model/tiling.json sets {tiling.exposure_target}: the board would feed the model "
            f"frames it was not trained on (retrain, or set exposure_target to {cfg.exposure_target})")
    report: dict = {"weights": report_path(weights), "provenance": provenance({"weights": weights}),
                    "model": asdict(cfg), "tiling": asdict(tiling),
                    "params": count_params(float_model)}
    return QuantizeRun(Path(data_dir), Path(weights), tiling, float_model, cfg, report, log)


def unpruned_teacher(run: QuantizeRun, crop: int):
    """The unpruned float network as `--distill`'s teacher on crops: with its context model on
    the frame's thumbnail for a frame-context network."""
    return build_frame_context_trainer(run.cfg, run.float_model, crop) if run.context else run.float_model


def prune_stage(run: QuantizeRun, sparsity, steps, batch, crop, lr, loss, schedule, distill,
                qat_steps, qat_lr) -> None:
    """1. Pruning, fine-tuned on training crops (eval15 is never seen); then the
    quantization-aware fine-tune of the pruned network (quantize/qat.py) on other crops."""
    tiling, log = run.tiling, run.log
    train_pairs, _ = split_train_val(find_pairs(resolve_split(run.data_dir, "train")))
    lows, highs = load_pairs(train_pairs)
    lows = [normalize_exposure(low, tiling.exposure_target) for low in lows]
    thumbs = [thumbnail(low, *run.thumb_size) for low in lows] if run.context else None

    def crops(count: int, seed: int):
        return (context_crop_dataset(lows, highs, thumbs, crop, batch, count, seed=seed) if run.context
                else crop_dataset(lows, highs, crop, batch, count, seed=seed)).repeat()

    # --distill: both fine-tunes train towards the unpruned network's outputs, not the ground
    # truth, which pulls the pruned and int8 twins away from it (and, for the textbook designs,
    # re-fits their exposure decisions on a few crops).
    target = "unpruned model (distillation)" if distill else "ground truth"
    teacher = unpruned_teacher(run, crop) if distill else None

    def targeted_crops(count: int, seed: int):
        return crops(count, seed) if teacher is None else distilled(crops(count, seed), teacher)

    scene_crops = None
    if run.scenes and run.scene_weight and run.context:
        photos, _ = split_photos(find_photos(run.scenes))
        raws = [read_rgb(p) for p in photos]
        prepared = [normalize_exposure(r, tiling.exposure_target) for r in raws]
        scene_thumbs = [thumbnail(p, *run.thumb_size) for p in prepared]
        log(f"naturalness loss x {run.scene_weight:g} on {len(raws)} photos of {run.scenes} in every fine-tune step")

        def scene_crops(count: int, seed: int):
            return scene_crop_dataset(raws, prepared, scene_thumbs, crop, batch, count, seed=seed).repeat()

    margin = tiling.halo if crop == run.size else 0
    structured = run.cfg.design in STRUCTURED
    where = "each DAU's first convolution" if run.cfg.design == "mrb_half_resolution" else "every layer"
    log((f"structured pruning: the {sparsity * 100:g} % of filters with the smallest L1 norm removed from {where}, "
         if structured else f"pruning to {sparsity:.0%} sparsity: ")
        + f"{steps} steps of {batch} {crop}x{crop} crops at {lr:g} ({schedule}), {loss} loss"
        + (" towards the unpruned model's outputs" if distill else "")
        + (f" on the {tiling.tile}x{tiling.tile} centre the board keeps" if margin else ""))
    if structured:
        narrow, run.pruned_cfg = prune_filters(run.float_model, run.cfg, sparsity)
        trainer = (lambda m: build_frame_context_trainer(run.pruned_cfg, m, crop)) if run.context else None
        run.pruned = run.pruned_only = finetune(narrow, targeted_crops(steps, 1234), steps, lr=lr, margin=margin, loss=loss,
                                                trainer=trainer, schedule=schedule,
                                                scenes=scene_crops(steps, 1234) if scene_crops else None,
                                                scene_weight=run.scene_weight, log=log)
        run.report["structured_pruning"] = {
            "criterion": "L1 norm of each filter's kernel (Li et al., ICLR 2017)",
            "fraction_removed": sparsity, "model_before": asdict(run.cfg), "model_after": asdict(run.pruned_cfg),
            "widths_before": run.cfg.pruned_widths(), "widths_after": run.pruned_cfg.pruned_widths(),
            "params_before": count_params(run.float_model), "params_after": count_params(run.pruned)}
        log(f"pruned: widths {run.cfg.pruned_widths()} -> {run.pruned_cfg.pruned_widths()}, "
            f"{count_params(run.float_model):,} -> {count_params(run.pruned):,} parameters")
    else:
        run.pruned_cfg = run.cfg
        trainer = (lambda clone: build_frame_context_trainer(run.cfg, clone, crop)) if run.context else None
        run.pruned = run.pruned_only = prune(run.float_model, targeted_crops(steps, 1234), steps, sparsity=sparsity,
                                             lr=lr, margin=margin, loss=loss, trainer=trainer, schedule=schedule)
    run.report["pruning_finetune"] = {"steps": steps, "batch": batch, "crop": crop, "lr": lr,
                                      "schedule": schedule,
                                      "target": target, "loss": loss, "loss_margin": margin,
                                      "scene_weight": run.scene_weight if scene_crops else 0.0}
    if qat_steps:
        run.pruned = quantization_aware_finetune(run.pruned, run.pruned_cfg, targeted_crops(qat_steps, 4321), qat_steps, crop,
                                                 lr=qat_lr, margin=margin, loss=loss, log=log,
                                                 scenes=scene_crops(qat_steps, 4321) if scene_crops else None,
                                                 scene_weight=run.scene_weight)
        run.report["qat_finetune"] = {"steps": qat_steps, "batch": batch, "crop": crop, "lr": qat_lr,
                                      "schedule": "cosine to lr/100", "target": target, "loss": loss,
                                      "loss_margin": margin}


def reuse_pruned_stage(run: QuantizeRun, weights: Path) -> None:
    """1'. Instead of pruning: an earlier run's pruned, fine-tuned weights, so that a new tiling
    (model/tiling.json) changes only the conversion (the fine-tunes' crops follow the tile size).
    The earlier run's pruning and fine-tune records come along from its report."""
    run.pruned, run.pruned_cfg = load_model(weights)
    keys = ("design", "channels", "depth", "frame_context", "thumbnail_width", "thumbnail_height", "exposure_target")
    differing = [k for k in keys if getattr(run.pruned_cfg, k) != getattr(run.cfg, k)]
    if differing:
        raise PrunedMismatch(f"{weights}: not a pruned {run.weights} ({', '.join(differing)} differ)")
    run.pruned_only = run.pruned
    run.report["pruned_weights"] = {"path": report_path(weights),
                                    "note": "pruned and fine-tuned by an earlier run; only converted here"}
    try:
        earlier = json.loads((weights.parent / "quantize_report.json").read_text())
    except (OSError, ValueError):
        earlier = {}
    for key in ("structured_pruning", "pruning_finetune", "qat_finetune"):
        if key in earlier:
            run.report[key] = {**earlier[key], "from": report_path(weights.parent / "quantize_report.json")}
    run.log(f"converting the pruned, fine-tuned weights {weights} (no pruning, no fine-tune)")


def convert_stage(run: QuantizeRun) -> None:
    """2. int8 conversion of the pruned network; the unpruned one converted too, for the sizes.
    A frame-context network becomes two models: the context model calibrated on thumbnails, the
    tile model on tiles with the (float) context of the frame each was cut from."""
    size, target = run.size, run.tiling.exposure_target
    if run.context:
        calib, calib_thumbs = representative_tiles(run.data_dir, size, exposure_target=target,
                                                   thumbnail_size=run.thumb_size, scenes=run.scenes)
        run.log(f"converting the context model ({run.thumb_size[0]}x{run.thumb_size[1]} thumbnail) and the "
                f"tile model ({size}x{size}) to int8 with {len(calib)} calibration frames"
                + (f" (half of them real photos from {run.scenes})" if run.scenes else ""))
        run.report["calibration"] = {"frames": len(calib), "scenes": str(run.scenes) if run.scenes else None}
        run.context_fixed, run.tile_fixed = fixed_frame_context_models(run.pruned, run.pruned_cfg, size)
        calib_context = run.context_fixed.predict(calib_thumbs, batch_size=32, verbose=0)
        run.context_flatbuffer = convert_int8(run.context_fixed, calib_thumbs)
        run.flatbuffer = convert_int8(run.tile_fixed, (calib, calib_context))
        dense_context, dense_tile = fixed_frame_context_models(run.float_model, run.cfg, size)
        run.dense_flatbuffer = convert_int8(dense_tile, (calib, dense_context.predict(calib_thumbs, batch_size=32,
                                                                                      verbose=0)))
    else:
        calib = representative_tiles(run.data_dir, size, exposure_target=target, scenes=run.scenes)
        run.log(f"converting to int8 at {size}x{size} with {len(calib)} calibration tiles")
        run.tile_fixed = fixed_shape_model(run.pruned, run.pruned_cfg, size)
        run.flatbuffer = convert_int8(run.tile_fixed, calib)
        run.dense_flatbuffer = convert_int8(fixed_shape_model(run.float_model, run.cfg, size), calib)


def verify_stage(run: QuantizeRun) -> None:
    """3. Verification on the TFLM kernels: arenas, the reference check, the report's sizes."""
    tiling, report = run.tiling, run.report
    run.tflm = tflm = TflmModel(run.flatbuffer)
    run.arena = arena = arena_after_one_run(tflm)
    check_context = None
    if run.context:
        run.context_tflm = context_tflm = TflmModel(run.context_flatbuffer)
        context_arena = arena_after_one_run(context_tflm)
        first_low = normalize_exposure(load_pairs(find_pairs(resolve_split(run.data_dir, "eval"))[:1])[0][0],
                                       tiling.exposure_target)
        first_thumb = thumbnail(first_low, *run.thumb_size)
        thumb_q = quantize_pixels(first_thumb, context_tflm.input_quant)
        context_exactness = verify_bit_exact(run.context_flatbuffer, [first_thumb])
        check_context = requantize(context_tflm.invoke(thumb_q), context_tflm.output_quant, tflm.context_quant)
    check_tiles = eval_tiles(run.data_dir, tiling)
    exactness = verify_bit_exact(run.flatbuffer, check_tiles, check_context)
    board_vs_reference = verify_bit_exact(run.flatbuffer, check_tiles, check_context, runtime="board")
    run.log(f"TFLM: arena {arena:,} B; bit-exact vs reference kernels: {exactness}")
    if run.context:
        run.log(f"TFLM context model: arena {context_arena:,} B, flatbuffer {len(run.context_flatbuffer):,} B; "
                f"bit-exact: {context_exactness}")
        report["frame_context"] = {
            "thumbnail": list(run.thumb_size), "context_values": int(tflm.context_shape[-1]),
            "context_flatbuffer_bytes": len(run.context_flatbuffer), "context_arena_bytes": context_arena,
            "tile_model_flatbuffer_bytes": len(run.flatbuffer), "tile_model_arena_bytes": arena,
            "context_model_ops": op_names(run.context_flatbuffer), "context_reference_check": context_exactness,
            "context_input_quant": asdict(context_tflm.input_quant),
            "context_output_quant": asdict(context_tflm.output_quant),
            "tile_context_quant": asdict(tflm.context_quant),
            "context_macs_per_frame": conv_macs(run.context_fixed),
            "budget_basis": "the two models run one after the other (the context model once per frame, "
                            "then every tile), so the arena budget applies to the larger of the two and "
                            "the flash budget to both flatbuffers together"}
        run.arena = max(arena, context_arena)
    if run.cfg.design == "mrb_half_resolution":
        # The graphs the board runs must still be a tiny MIRNet (raises NotAMirnet naming the part).
        report["mirnet_parts"] = check_mirnet(run.flatbuffer, run.context_flatbuffer)
    report["sparsity"] = sparsity_report(run.pruned)
    report["sizes"] = {
        "flatbuffer_bytes": len(run.flatbuffer), "flatbuffer_gzip_bytes": gzip_size(run.flatbuffer),
        "dense_flatbuffer_bytes": len(run.dense_flatbuffer),
        "dense_flatbuffer_gzip_bytes": gzip_size(run.dense_flatbuffer),
        "note": ("structured pruning removed whole filters: the pruned network is narrower, so its flatbuffer, "
                 "MACs and instructions shrink (dense = the unpruned network converted alike)"
                 if "structured_pruning" in report else
                 "unstructured sparsity leaves the flatbuffer size and the device's work unchanged "
                 "(int8 weights are stored densely and TFLM multiplies the zeros); only the "
                 "compressed (gzip) size shrinks")}
    report["conversion"] = {
        "widen_tied_ranges": True,
        "note": "tensors the quantizer ties to one scale through CONCATENATION or REDUCE_MAX get the "
                "union of their calibrated ranges (quantize/convert.py widen_tied_ranges): the "
                "converter alone clipped the DAU features to the spatial-attention concatenation's range"}
    report["tflm"] = {"library": tflm.library, "arena_bytes": run.arena, "ops": op_names(run.flatbuffer),
                      "input_quant": asdict(tflm.input_quant), "output_quant": asdict(tflm.output_quant),
                      "reference_check": exactness, "board_tflm_vs_reference": board_vs_reference}


def budget_stage(run: QuantizeRun) -> None:
    """4. Budgets (raises BudgetError naming the one broken) and the RAM table."""
    tiling, report = run.tiling, run.report
    measured = Measured(len(run.flatbuffer) + len(run.context_flatbuffer), run.arena)
    report["budgets"] = {"problems": budget_violations(measured)}
    buffers = firmware_buffers(tiling.frame_width, tiling.frame_height, tiling.tile, tiling.model_input,
                               *((run.thumb_size, int(run.tflm.context_shape[-1])) if run.context else ()))
    macs_tile = conv_macs(run.tile_fixed)
    macs_once = conv_macs(run.context_fixed) if run.context else 0  # the context model, once per frame
    tiles = len(tile_grid(tiling.frame_width, tiling.frame_height, tiling.tile))
    macs_frame = macs_tile * tiles + macs_once
    macs_per_s = CMSIS_NN_MACS_PER_CYCLE * NANO_CLOCK_HZ
    report["compute"] = {
        "macs_per_tile": macs_tile, "tiles_per_frame": tiles, "macs_per_frame": macs_frame,
        "macs_context_model_per_frame": macs_once,
        "macs_per_output_pixel": macs_frame / (tiling.frame_width * tiling.frame_height),
        "projected_seconds_per_frame": macs_frame / macs_per_s,
        "projection_basis": f"{CMSIS_NN_MACS_PER_CYCLE} MAC/cycle x {NANO_CLOCK_HZ / 1e6:.0f} MHz "
                            "(CMSIS-NN, Lai et al. 2018, arXiv:1801.06601: 12.3 M-MAC CIFAR-10 CNN in "
                            "99.1 ms on a 216 MHz Cortex-M7 = 0.57 MAC/cycle); convolutions only; a projection, "
                            "not a measurement (docs/reports/device/device_report.md counts instructions)"}
    check_budgets(measured)
    report["ram"] = ram_table(run.arena, buffers)


def ladder_stage(run: QuantizeRun, eval_limit: int | None) -> None:
    """5. The quality ladder on eval15, tile by tile like the board."""
    tiling, cfg = run.tiling, run.cfg
    run.log("evaluating the ladder on eval15 (float / pruned float / int8 on TFLM, tiled)")
    target = tiling.exposure_target
    float_enh = FloatEnhancer(run.float_model, target, cfg)
    pruned_enh = FloatEnhancer(run.pruned_only, target, run.pruned_cfg)
    int8 = (int8_frame_context_method(run.context_tflm, run.tflm, tiling.tile, tiling.halo, run.thumb_size,
                                      exposure_target=target)
            if run.context else int8_method(run.tflm, tiling.tile, tiling.halo, exposure_target=target))
    methods = {
        "tiny_mirnet_float_full": float_enh.enhance,
        "tiny_mirnet_float_tiled": lambda lo: float_enh.enhance(lo, tiling.tile, tiling.halo),
        "tiny_mirnet_pruned_tiled": lambda lo: pruned_enh.enhance(lo, tiling.tile, tiling.halo),
        "tiny_mirnet_int8_tiled": int8,
    }
    if run.pruned is not run.pruned_only:  # QAT'd: the weights the int8 model was converted from, in float
        qat_enh = FloatEnhancer(run.pruned, target, run.pruned_cfg)
        methods["tiny_mirnet_pruned_qat_tiled"] = lambda lo: qat_enh.enhance(lo, tiling.tile, tiling.halo)
    ladder = evaluate(run.data_dir, methods, limit=eval_limit, log=run.log)
    report = run.report
    report["quality"] = {k: {"psnr": v["psnr"], "ssim": v["ssim"], "psnr_gt_mean": v["psnr_gt_mean"]}
                         for k, v in ladder.items() if k != "meta"}
    q = report["quality"]
    q["int8_minus_float_tiled_db"] = q["tiny_mirnet_int8_tiled"]["psnr"] - q["tiny_mirnet_float_tiled"]["psnr"]
    report["quality_per_image"] = {k: v["images"] for k, v in ladder.items() if k != "meta"}


def write_stage(run: QuantizeRun, out_dir: Path, firmware_dir: Path | None, t_start: float) -> None:
    """6. Artifacts and firmware files, written only once everything above has passed: a broken
    budget or a failed check leaves the previous export untouched."""
    tflm, report = run.tflm, run.report
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_save_weights(run.pruned, out_dir / "tiny_mirnet_pruned.weights.h5")
    atomic_write_text(out_dir / "tiny_mirnet_pruned.json", run.pruned_cfg.to_json() + "\n")
    atomic_write_bytes(out_dir / INT8_NAME, run.flatbuffer)
    context_export = None
    if run.context:
        atomic_write_bytes(out_dir / CONTEXT_INT8_NAME, run.context_flatbuffer)
        context_export = ContextExport(
            run.context_flatbuffer, run.thumb_size, int(tflm.context_shape[-1]), run.context_tflm.input_quant,
            run.context_tflm.output_quant, tflm.context_quant, tflm.image_index, tflm.context_index,
            op_names(run.context_flatbuffer))
    info = ExportInfo(run.flatbuffer, run.tiling, tflm.input_quant, tflm.output_quant, run.arena,
                      op_names(run.flatbuffer), context_export)
    report["export"] = {"sha256": info.sha256, "arena_size_in_firmware": info.arena_size}
    if run.context:
        report["export"]["context_sha256"] = context_export.sha256
    if firmware_dir is None:
        report["export"]["files"] = []
        report["export"]["firmware"] = "not exported (--no-firmware): the firmware keeps its previous model"
    else:
        report["export"]["files"] = [p.relative_to(firmware_dir).as_posix()
                                     for p in write_firmware_files(info, firmware_dir)]
    report["seconds"] = round(time.monotonic() - t_start, 1)
    write_report(out_dir / "quantize_report.json", report, markdown(report))
