"""The quantize room's commands: quantize, export, budget, tiling-study."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from tinymirnet.model.files import write_report
from tinymirnet.model.network_config import LOSS_NAMES
from tinymirnet.model.paths import (ARTIFACTS_DIR, DEFAULT_WEIGHTS, FIRMWARE_MODEL_DIR, PER_TILE_WEIGHTS,
                                    QEMU_BUILD_DIR)
from tinymirnet.model.tiling import load_tiling
from tinymirnet.quantize.budget import BudgetError
from tinymirnet.quantize.export import ExportError, export_info_from_artifacts, write_firmware_files
from tinymirnet.quantize.mirnet_graph import NotAMirnet
from tinymirnet.quantize.quantize_report import record_export

from .checks import default_in_checkout, load_int8
from .device_report import price_on_the_board


def cmd_tiling_study(args) -> int:
    from tinymirnet.quantize.tiling_study import tiling_study
    tiling = load_tiling()
    tiling = replace(tiling, tile=args.tile or tiling.tile, halo=tiling.halo if args.halo is None else args.halo)
    from tinymirnet.model.inference import load_enhancer
    enhancer = load_enhancer(args.weights)
    cfg = enhancer.cfg
    int8_model = load_int8(args.int8, tiling) if args.int8 else None
    if int8_model is not None and int8_model.context_index is not None:
        raise SystemExit(f"error: {args.int8} is a frame-context tile model; the tiling study is about "
                         f"attention pooled per tile (give quantize/artifacts/per_tile_attention/"
                         f"tiny_mirnet_int8.tflite)")
    tiling_study(args.data, enhancer, tiling.tile, tiling.halo, args.report,
                 meta={"weights": str(args.weights), "model": cfg.__dict__},
                 split=args.split, val_percent=args.val_percent, int8_model=int8_model)
    return 0


def cmd_quantize(args) -> int:
    from tinymirnet.quantize.pipeline import ExposureMismatch, PrunedMismatch, run_quantize
    if args.pruned is not None and not args.pruned.is_file():
        print(f"error: --pruned {args.pruned}: no such weights file (give an earlier quantize run's "
              f"tiny_mirnet_pruned.weights.h5)", file=sys.stderr)
        return 1
    args.out = args.out or default_in_checkout(ARTIFACTS_DIR, "--out")
    if not args.no_firmware:
        args.firmware_dir = args.firmware_dir or default_in_checkout(FIRMWARE_MODEL_DIR, "--firmware-dir or --no-firmware")
    try:
        r = run_quantize(args.data, args.weights, sparsity=args.sparsity, finetune_steps=args.steps,
                         finetune_lr=args.lr, finetune_loss=args.loss, finetune_schedule=args.schedule,
                         finetune_distill=args.distill, qat_steps=args.qat_steps, qat_lr=args.qat_lr,
                         eval_limit=args.limit, scenes=args.scenes, scene_weight=args.scene_weight,
                         pruned_weights=args.pruned, out_dir=args.out,
                         firmware_dir=None if args.no_firmware else args.firmware_dir)
    except (BudgetError, ExposureMismatch, PrunedMismatch) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except NotAMirnet as e:
        print(f"error: the int8 models are no longer a tiny MIRNet: {e}", file=sys.stderr)
        return 1
    q = r["quality"]
    print(f"int8 tiled PSNR {q['tiny_mirnet_int8_tiled']['psnr']:.2f} dB "
          f"(float tiled {q['tiny_mirnet_float_tiled']['psnr']:.2f} dB); arena {r['tflm']['arena_bytes']:,} B; "
          f"flatbuffer {r['sizes']['flatbuffer_bytes']:,} B; RAM headroom {r['ram']['headroom']:,} B")
    return 0


def cmd_export(args) -> int:
    try:
        info = export_info_from_artifacts(args.artifacts)
        firmware_dir = args.firmware_dir or default_in_checkout(FIRMWARE_MODEL_DIR, "--firmware-dir")
        written = write_firmware_files(info, firmware_dir)
        record_export(args.artifacts, [p.relative_to(firmware_dir).as_posix() for p in written])
    except (ExportError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    kind = "frame context: tile + context model" if info.context else "one model"
    print(f"exported {args.artifacts} ({kind}, sha256 {info.sha256[:16]}..., arena {info.arena_size:,} B) "
          f"to {', '.join(str(p) for p in written)}")
    return 0


def price_candidates(rows: list[dict], tiling) -> None:
    """Adds what the board pays to each candidate that fits: instructions per frame on the
    emulated Cortex-M4 with the board's TFLM (the flatbuffers the sweep measured: random or
    trained weights; the kernels' work does not depend on the weights' values), per tile, the
    32-bit arena and the tile model's per-op shares."""
    for row in rows:
        if not row["fits"]:
            continue
        tile_fb, context_fb = row["_flatbuffers"]
        label = f"{row['design']}_c{row['channels']}_g{row['growth']}_d{row['depth']}_t{row['tile']}_h{row['halo']}"
        print(f"pricing {row['label']} on the emulated Cortex-M4 ...", file=sys.stderr, flush=True)
        row.update(price_on_the_board(tile_fb, replace(tiling, tile=row["tile"], halo=row["halo"]),
                                      QEMU_BUILD_DIR / "budget" / label, context_fb))
        row["instructions_measured_with"] = (f"{row.get('measured_with', 'random weights')}, "
                                             "Chirale_TensorFlowLite 2.0.0 on QEMU mps2-an386")


def cmd_budget(args) -> int:
    from tinymirnet.quantize.candidates import DEFAULT_CANDIDATES, choose, markdown, measure_candidates
    tiling = load_tiling()
    rows = measure_candidates(DEFAULT_CANDIDATES, tiling.frame_width, tiling.frame_height,
                              weights=args.weights if args.data else (), data_dir=args.data)
    if args.instructions:
        price_candidates(rows, tiling)
    for row in rows:
        row.pop("_flatbuffers", None)
    chosen = choose(rows)
    write_report(args.report, {"frame": [tiling.frame_width, tiling.frame_height], "candidates": rows,
                               "chosen": chosen["label"] if chosen else None}, markdown(rows, chosen))
    print(f"wrote {args.report} and {args.report.with_suffix('.md')}")
    return 0


def register(sub) -> None:
    ts = sub.add_parser("tiling-study", help="split the tiling loss: per-tile level (oracle) vs structure, "
                        "and what a frame-fitted tone curve recovers")
    ts.add_argument("--data", type=Path, required=True, help="LoL root (with eval15/) or a folder with low/ and high/")
    ts.add_argument("--weights", type=Path, default=PER_TILE_WEIGHTS,
                    help="weights of a per-tile-attention network (default: the one the study was made with)")
    ts.add_argument("--split", choices=["eval15", "val"], default="eval15",
                    help="eval15 (the benchmark, report only) or val (the training folder's validation "
                    "split: decide on this one)")
    ts.add_argument("--val-percent", type=float, default=10.0)
    ts.add_argument("--tile", type=int, default=None, help="tile size (default: model/tiling.json's)")
    ts.add_argument("--halo", type=int, default=None,
                    help="halo (default: model/tiling.json's; the per-tile-attention study used --tile 20 --halo 4)")
    ts.add_argument("--int8", type=Path, default=None,
                    help="also score this int8 .tflite tile by tile on TFLM, plain and with the thumbnail curve")
    ts.add_argument("--report", type=Path, required=True, help="report path; .json and .md are written")
    ts.set_defaults(func=cmd_tiling_study)

    q = sub.add_parser("quantize", help="prune, int8-convert, verify on TFLM, check budgets, export the C array")
    q.add_argument("--data", type=Path, required=True, help="LoL root (training split for fine-tuning/calibration, eval15 for the report)")
    q.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    q.add_argument("--sparsity", type=float, default=None,
                   help="the fraction of filters removed (structured): from each DAU's first convolution for "
                        "the tiny MIRNet (default 0.25), from every layer for the half_resolution network "
                        "(default 0.0625, one in 16); older designs: the fraction of conv weights zeroed (default 0.5)")
    q.add_argument("--scenes", type=Path, default=None,
                   help="folder of real photos (SICE train/): half the int8 calibration frames come from it, "
                        "and with --scene-weight the fine-tunes add the naturalness loss on them (default: LoL only)")
    q.add_argument("--scene-weight", type=float, default=0.0,
                   help="weight of the naturalness loss in the fine-tunes, with --scenes (default 0: with "
                        "--distill it pulls the pruned network away from its unpruned teacher on real photos)")
    q.add_argument("--steps", type=int, default=3000, help="pruning fine-tune steps (batches of 32 tiles; default 3000)")
    q.add_argument("--lr", type=float, default=1e-3, help="pruning fine-tune rate")
    q.add_argument("--schedule", choices=["constant", "cosine"], default="cosine",
                   help="pruning fine-tune rate schedule: constant, or cosine (constant while the "
                        "sparsity ramps up, then decayed to 1e-5 over the recovery half)")
    q.add_argument("--loss", choices=LOSS_NAMES, default="mse_ssim",
                   help="pruning fine-tune loss: the one the weights were trained with (default: the shipped "
                        "weights', mse_ssim; the half-resolution network's: mse)")
    q.add_argument("--distill", action="store_true",
                   help="fine-tune the pruned model towards the unpruned model's outputs instead of the ground truth")
    q.add_argument("--qat-steps", type=int, default=600,
                   help="quantization-aware fine-tune steps after pruning (int8 rounding in the forward "
                        "pass, quantize/qat.py); 0 = none")
    q.add_argument("--qat-lr", type=float, default=3e-4, help="quantization-aware fine-tune rate (cosine to 1/100 of it)")
    q.add_argument("--pruned", type=Path, default=None,
                   help="skip the pruning and both fine-tunes: convert these pruned, fine-tuned weights (an earlier "
                        "run's tiny_mirnet_pruned.weights.h5) for model/tiling.json's tiling, e.g. after changing "
                        "the tile size (default: prune and fine-tune --weights)")
    q.add_argument("--limit", type=int, default=None, help="evaluate on the first N eval15 pairs only")
    q.add_argument("--out", type=Path, default=None,
                   help="folder for the .tflite files, pruned weights and report (default, in a git checkout "
                        "only: quantize/artifacts)")
    q.add_argument("--firmware-dir", type=Path, default=None,
                   help="where to export the firmware's model files (default, in a git checkout only: "
                        "firmware/lib/tinymirnet_model)")
    q.add_argument("--no-firmware", action="store_true",
                   help="export no firmware files (the firmware keeps its model)")
    q.set_defaults(func=cmd_quantize)

    x = sub.add_parser("export", help="write the firmware's model files (C arrays, headers) from a "
                       "finished `tinymirnet quantize` folder, without quantizing again")
    x.add_argument("artifacts", type=Path, nargs="?", default=ARTIFACTS_DIR,
                   help="a quantize output folder (default quantize/artifacts; the per-tile-attention network: "
                        "quantize/artifacts/per_tile_attention)")
    x.add_argument("--firmware-dir", type=Path, default=None, help="default firmware/lib/tinymirnet_model")
    x.set_defaults(func=cmd_export)

    b = sub.add_parser("budget", help="sweep network size x tiling candidates: flash, arena, MACs, int8 PSNR")
    b.add_argument("--data", type=Path, default=None, help="LoL root: adds int8 tiled PSNR for trained candidates")
    b.add_argument("--weights", type=Path, nargs="+", default=[PER_TILE_WEIGHTS],
                   help="trained weights (one or more architectures) whose candidates get a PSNR")
    b.add_argument("--report", type=Path, default=Path("budget_report.json"))
    b.add_argument("--instructions", action="store_true",
                   help="also count each fitting candidate's instructions per frame on the emulated "
                        "Cortex-M4 (QEMU, the board's TFLM; about a minute per candidate)")
    b.set_defaults(func=cmd_budget)

