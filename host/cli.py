"""The `tinymirnet` command line: one subcommand per step of the pipeline."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parents[1]


def in_checkout() -> bool:
    """True when this package runs from a git checkout (pip install -e), where regenerating the
    committed artifacts in place is a documented step; an installed wheel's folders are never
    written."""
    return (REPO_ROOT / ".git").exists()


def default_in_checkout(path: Path, option: str) -> Path:
    if not in_checkout():
        raise UsageError(f"give {option}: this command's default ({path.relative_to(REPO_ROOT)}) is a folder of the "
                         f"installed package, which commands never write into")
    return path


def cmd_train(args) -> int:
    from tinymirnet.model.network import MirnetConfig
    from tinymirnet.model.train import TrainConfig, train
    from dataclasses import asdict
    cfg = None
    if not args.resume or args.epochs:
        if args.init:
            from tinymirnet.model.inference import config_path_for
            model_cfg = MirnetConfig.load(config_path_for(args.init))
        else:
            model_cfg = MirnetConfig(channels=args.channels, growth=args.growth,
                                     num_rrg=args.rrg, num_mrb=args.mrb)
        if args.frame_context is not None:
            from dataclasses import replace
            w, h = args.frame_context
            model_cfg = replace(model_cfg, thumbnail_width=w, thumbnail_height=h)
        cfg = TrainConfig(data=str(args.data), epochs=args.epochs or 200, batch=args.batch,
                          crop=args.crop, steps_per_epoch=args.steps, lr=args.lr,
                          schedule=args.schedule, val_percent=args.val_percent,
                          exclude=args.exclude, seed=args.seed, model=asdict(model_cfg),
                          init_weights=str(args.init or ""), loss_margin=args.loss_margin,
                          val_tiled=args.val_tiled, plateau_patience=args.plateau_patience,
                          plateau_factor=args.plateau_factor, loss=args.loss,
                          exposure_target=(model_cfg.exposure_target if args.exposure is None
                                           else args.exposure))
    train(args.out, cfg, resume=args.resume)
    return 0


def _size(text: str) -> tuple[int, int]:
    """'WxH' -> (W, H), for argparse."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH (e.g. 32x24), got {text!r}") from None
    if w < 0 or h < 0 or (w == 0) != (h == 0):
        raise argparse.ArgumentTypeError(f"expected WxH with both positive or both 0, got {text!r}")
    return w, h


def cmd_publish(args) -> int:
    """Copies a finished run's best weights, config, log and curves into model/weights/."""
    import shutil
    from tinymirnet.model.files import atomic_write
    from tinymirnet.model.paths import DEFAULT_WEIGHTS, WEIGHTS_DIR
    # Named after the shipped weights (tiny_mirnet_frame_context.weights.h5 -> *_frame_context.*).
    suffix = DEFAULT_WEIGHTS.name.removeprefix("tiny_mirnet").removesuffix(".weights.h5")
    files = {"best.weights.h5": DEFAULT_WEIGHTS.name, "best.json": f"tiny_mirnet{suffix}.json",
             "config.json": f"training_config{suffix}.json", "log.csv": f"training_log{suffix}.csv",
             "curves.png": f"training_curves{suffix}.png"}
    missing = [name for name in files if not (args.run / name).is_file()]
    if missing:
        print(f"error: {args.run}: not a finished run (missing {', '.join(missing)})", file=sys.stderr)
        return 1
    target = args.to or default_in_checkout(WEIGHTS_DIR, "--to")
    for src, dst in files.items():
        atomic_write(target / dst, lambda p, s=args.run / src: shutil.copyfile(s, p))
        print(f"{args.run / src} -> {target / dst}")
    return 0


def cmd_compare_runs(args) -> int:
    from tinymirnet.model.compare_runs import RunError, compare_runs
    try:
        compare_runs(args.runs, args.report, data=args.data)
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_tiling_study(args) -> int:
    from tinymirnet.model.tiling import load_tiling
    from tinymirnet.quantize.tiling_study import tiling_study
    tiling = load_tiling()
    enhancer, _, cfg = _load_enhancer(args.weights)
    int8_model = _load_int8(args.int8, tiling) if args.int8 else None
    if int8_model is not None and int8_model.context_index is not None:
        raise SystemExit(f"error: {args.int8} is a frame-context tile model; the tiling study is about "
                         f"attention pooled per tile (give quantize/artifacts/per_tile_attention/"
                         f"tiny_mirnet_int8.tflite)")
    tiling_study(args.data, enhancer, tiling.tile, tiling.halo, args.report,
                 meta={"weights": str(args.weights), "model": cfg.__dict__},
                 split=args.split, val_percent=args.val_percent, int8_model=int8_model)
    return 0


def _load_int8(path, tiling):
    """The --int8 model on TFLM, checked against the tiling; a bad file is one error line."""
    from tinymirnet.quantize.tflm import load_tile_model
    try:
        return load_tile_model(path, tiling.tile, tiling.halo)
    except ValueError as e:  # missing, unreadable, not a TFLite model, wrong input size
        raise SystemExit(f"error: {e}")


def _load_enhancer(weights):
    from tinymirnet.model.inference import FloatEnhancer, load_model
    model, cfg = load_model(weights)
    return FloatEnhancer(model, cfg.exposure_target, cfg), model, cfg


def cmd_eval(args) -> int:
    from tinymirnet.model.evaluate import baseline_methods, evaluate, network_methods
    from tinymirnet.model.network import MirnetConfig, count_params, macs_per_pixel
    from tinymirnet.model.tiling import load_tiling
    tiling = load_tiling()
    enhancer, model, cfg = _load_enhancer(args.weights)
    methods = {**baseline_methods(), **network_methods(enhancer, tiling.tile, tiling.halo)}
    from tinymirnet.model.files import provenance, report_path
    meta = {"weights": report_path(args.weights), "model": cfg.__dict__, "params": count_params(model),
            "macs_per_pixel": round(macs_per_pixel(cfg), 1), "tile": tiling.tile, "halo": tiling.halo,
            "exposure_target": cfg.exposure_target}
    if args.int8:
        from tinymirnet.quantize.tflm import int8_frame_context_method, int8_method
        tile_model = _load_int8(args.int8, tiling)
        if tile_model.context_index is None:
            method = int8_method(tile_model, tiling.tile, tiling.halo, exposure_target=tiling.exposure_target)
        else:  # a frame-context network: its context model lies beside the tile model
            from tinymirnet.quantize.pipeline import CONTEXT_INT8_NAME
            from tinymirnet.quantize.tflm import TflmModel
            context_path = args.int8.with_name(CONTEXT_INT8_NAME)
            if not cfg.frame_context:
                raise SystemExit(f"error: {args.int8} takes a frame context, but {args.weights} is not a "
                                 "frame-context network")
            try:
                context_model = TflmModel(context_path.read_bytes())
            except (OSError, ValueError) as e:
                raise SystemExit(f"error: {context_path}: the frame-context tile model's context model "
                                 f"is missing or unreadable ({e})")
            method = int8_frame_context_method(context_model, tile_model, tiling.tile, tiling.halo,
                                               (cfg.thumbnail_width, cfg.thumbnail_height),
                                               exposure_target=tiling.exposure_target)
            meta["int8_context_model"] = report_path(context_path)
        methods["tiny_mirnet_int8_tiled"] = method
        meta["int8_model"] = report_path(args.int8)
        meta["int8_tflm"] = tile_model.library
    meta["provenance"] = provenance({"weights": args.weights, "int8_model": args.int8,
                                     "int8_context_model": meta.get("int8_context_model")})
    grid = args.grid or args.report.with_suffix(".png")
    evaluate(args.data, methods, report=args.report, grid=grid,
             grid_method="tiny_mirnet_float_full", meta=meta, limit=args.limit)
    print(f"wrote {args.report} and {grid}")
    return 0


def _output_path(src: Path, out_dir: Path, used: set[str]) -> Path:
    """`<stem>_enhanced.png` (`<stem>_2_enhanced.png` for a second input with that stem): never the
    input's own name, so an input is never overwritten, and never another input's output."""
    from tinymirnet.model.files import unique_stem
    return out_dir / f"{unique_stem(src.stem, used)}_enhanced.png"


# Photos above this many pixels are enhanced in tiles (bounded memory, a progress line): the
# whole-frame path needs ~550 B per pixel (6.6 GB for 12 MP).
LARGE_PHOTO_PIXELS = 1_000_000
PHOTO_TILE, PHOTO_HALO, PHOTO_BATCH = 192, 32, 2


def enhance_photo(enhancer, img, name: str):
    """The float network on one photo of any size: whole, or in 192 px tiles with a 32 px halo
    (wider than the network's receptive field) when it is large."""
    h, w = img.shape[:2]
    if h * w <= LARGE_PHOTO_PIXELS:
        return enhancer.enhance(img)

    def progress(done: int, total: int) -> None:
        print(f"\r{name}: {done}/{total} tiles", end="" if done < total else "\n", file=sys.stderr, flush=True)

    return enhancer.enhance(img, PHOTO_TILE, PHOTO_HALO, batch=PHOTO_BATCH, progress=progress)


def cmd_enhance(args) -> int:
    if getattr(args, "port", None):  # on a board (or the virtual board): host/device_cli.py
        from tinymirnet.host.device_cli import cmd_enhance_on_device
        return cmd_enhance_on_device(args)
    from PIL import Image
    from tinymirnet.model.data import DataError, read_rgb, to_uint8
    from tinymirnet.model.files import atomic_save_image
    if not args.images and not args.sample:
        print("error: give IMAGE files or --sample", file=sys.stderr)
        return 2
    enhancer, _, _ = _load_enhancer(args.weights)
    failures = 0
    used: set[str] = set()
    jobs = [(Path(p), None) for p in args.images]
    if args.sample:
        from tinymirnet.model.samples import sample_photo, synthesize_low_light
        low = synthesize_low_light(sample_photo(args.sample))
        atomic_save_image(Image.fromarray(low), args.out / f"sample_{args.sample}_low.png")
        jobs.append((args.out / f"sample_{args.sample}_low.png", low))
    for src, img in jobs:
        try:
            img = read_rgb(src) if img is None else img
            out = to_uint8(enhance_photo(enhancer, img, src.name))
            dst = atomic_save_image(Image.fromarray(out), _output_path(src, args.out, used))
            print(f"{src} -> {dst}")
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            failures += 1
    return 1 if failures else 0


def cmd_quantize(args) -> int:
    from tinymirnet.quantize.budget import BudgetError
    from tinymirnet.quantize.pipeline import ARTIFACTS, FIRMWARE_MODEL_DIR, ExposureMismatch, run_quantize
    args.out = args.out or default_in_checkout(ARTIFACTS, "--out")
    if not args.no_firmware:
        args.firmware_dir = args.firmware_dir or default_in_checkout(FIRMWARE_MODEL_DIR, "--firmware-dir or --no-firmware")
    try:
        r = run_quantize(args.data, args.weights, sparsity=args.sparsity, finetune_steps=args.steps,
                         finetune_lr=args.lr, finetune_loss=args.loss, finetune_schedule=args.schedule,
                         finetune_distill=args.distill, qat_steps=args.qat_steps, qat_lr=args.qat_lr,
                         eval_limit=args.limit,
                         out_dir=args.out, firmware_dir=None if args.no_firmware else args.firmware_dir)
    except (BudgetError, ExposureMismatch) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    q = r["quality"]
    print(f"int8 tiled PSNR {q['tiny_mirnet_int8_tiled']['psnr']:.2f} dB "
          f"(float tiled {q['tiny_mirnet_float_tiled']['psnr']:.2f} dB); arena {r['tflm']['arena_bytes']:,} B; "
          f"flatbuffer {r['sizes']['flatbuffer_bytes']:,} B; RAM headroom {r['ram']['headroom']:,} B")
    return 0


def cmd_export(args) -> int:
    from tinymirnet.model.tiling import load_tiling
    from tinymirnet.quantize.export import ExportError, export_info_from_artifacts, write_firmware_files
    from tinymirnet.quantize.pipeline import FIRMWARE_MODEL_DIR, record_export
    try:
        info = export_info_from_artifacts(args.artifacts, load_tiling())
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


def cmd_budget(args) -> int:
    from tinymirnet.model.files import atomic_write_json, atomic_write_text
    from tinymirnet.model.tiling import load_tiling
    from tinymirnet.quantize.candidates import DEFAULT_CANDIDATES, budget_markdown, choose, measure_candidates
    tiling = load_tiling()
    rows = measure_candidates(DEFAULT_CANDIDATES, tiling.frame_width, tiling.frame_height,
                              weights=args.weights if args.data else (), data_dir=args.data)
    chosen = choose(rows)
    atomic_write_json(args.report, {"frame": [tiling.frame_width, tiling.frame_height], "candidates": rows,
                                    "chosen": chosen["label"] if chosen else None})
    atomic_write_text(args.report.with_suffix(".md"), budget_markdown(rows, chosen))
    print(f"wrote {args.report} and {args.report.with_suffix('.md')}")
    return 0


# The names of model/metrics.py's LOSSES, spelled here so that parsing the command line does not
# import TensorFlow (a test holds the two equal).
LOSS_NAMES = ("charbonnier", "mse")


class _Parser(argparse.ArgumentParser):
    """A command-line mistake is one line starting with `error:` and exit code 1, like every
    other ordinary mistake (argparse's own is the usage text and exit code 2)."""

    def error(self, message):
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(1)


class _DefaultsFormatter(argparse.HelpFormatter):
    """Every option's help says its default, unless the text already does."""

    def _format_action(self, action):
        if action.option_strings and not action.help:
            action.help = action.dest.replace("_", " ")  # a name, then the default
        return super()._format_action(action)

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.option_strings and action.default not in (None, False, argparse.SUPPRESS)
                and "default" not in text.lower()):
            text += " (default: %(default)s)"
        return text


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("tinymirnet")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tinymirnet", description=__doc__, formatter_class=_DefaultsFormatter)
    p.add_argument("--version", action="version", version=f"tinymirnet {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_parser = sub.add_parser
    sub.add_parser = lambda *a, **k: add_parser(*a, formatter_class=_DefaultsFormatter, **k)

    t = sub.add_parser("train", help="train the float network on LoL")
    t.add_argument("--data", type=Path, help="LoL root (with our485/) or a folder with low/ and high/")
    t.add_argument("--out", type=Path, default=Path("runs/train"), help="run directory")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--epochs", type=int, default=0, help="total epochs (default 200)")
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--crop", type=int, default=128)
    t.add_argument("--steps", type=int, default=0, help="steps per epoch (0: one pass)")
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--schedule", choices=["cosine", "plateau"], default="cosine",
                   help="warm-up + cosine decay, or halve on a validation-PSNR plateau")
    t.add_argument("--plateau-patience", type=int, default=5,
                   help="plateau schedule: epochs without a better validation PSNR before the rate drops")
    t.add_argument("--plateau-factor", type=float, default=0.5,
                   help="plateau schedule: factor applied to the rate at each drop")
    t.add_argument("--val-percent", type=float, default=10.0)
    t.add_argument("--exclude", nargs="*", default=[], help="pair stems to leave out")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--channels", type=int, default=8)
    t.add_argument("--growth", type=float, default=1.0)
    t.add_argument("--rrg", type=int, default=1)
    t.add_argument("--mrb", type=int, default=1)
    t.add_argument("--init", type=Path, default=None,
                   help="start from these weights (their config); for the tile-adaptation stage")
    t.add_argument("--loss-margin", type=int, default=0,
                   help="leave this many border pixels out of the loss (the halo, when training on tiles)")
    t.add_argument("--val-tiled", action="store_true", help="validate tile by tile (model/tiling.json)")
    t.add_argument("--loss", choices=LOSS_NAMES, default="charbonnier",
                   help="training loss: Charbonnier (MIRNet's) or MSE (what PSNR measures)")
    t.add_argument("--exposure", type=int, default=None,
                   help="normalise every low-light frame to this mean (8-bit units) before cropping, "
                        "as the board does (model/tiling.json: exposure_target); 0: off "
                        "(default: the --init weights' setting, else off)")
    t.add_argument("--frame-context", type=_size, default=None, metavar="WxH",
                   help="compute every attention weight on a WxH thumbnail of the whole frame (e.g. "
                        "32x24) instead of on the network's own input (one tile on the board); 0x0: "
                        "off (default: the --init weights' setting, else off)")
    t.set_defaults(func=cmd_train)

    from tinymirnet.model.paths import DEFAULT_WEIGHTS, PER_TILE_WEIGHTS
    pub = sub.add_parser("publish", help="ship a finished run's best weights, log and curves in model/weights/")
    pub.add_argument("run", type=Path, help="run directory of `tinymirnet train`")
    pub.add_argument("--to", type=Path, default=None,
                     help="destination folder (default, in a git checkout only: model/weights)")
    pub.set_defaults(func=cmd_publish)

    cr = sub.add_parser("compare-runs", help="training runs side by side (e.g. the two schedules): "
                        "best validation PSNR, curves, and optionally eval15 PSNR of each best weights")
    cr.add_argument("runs", type=Path, nargs="+", help="run directories of `tinymirnet train`")
    cr.add_argument("--report", type=Path, required=True,
                    help="report path; .json, .md and .png are written beside it")
    cr.add_argument("--data", type=Path, default=None,
                    help="LoL root (with eval15/): also score each run's best weights full-frame")
    cr.set_defaults(func=cmd_compare_runs)

    ts = sub.add_parser("tiling-study", help="split the tiling loss: per-tile level (oracle) vs structure, "
                        "and what a frame-fitted tone curve recovers")
    ts.add_argument("--data", type=Path, required=True, help="LoL root (with eval15/) or a folder with low/ and high/")
    ts.add_argument("--weights", type=Path, default=PER_TILE_WEIGHTS,
                    help="weights of a per-tile-attention network (default: the one the study was made with)")
    ts.add_argument("--split", choices=["eval15", "val"], default="eval15",
                    help="eval15 (the benchmark, report only) or val (the training folder's validation "
                    "split: decide on this one)")
    ts.add_argument("--val-percent", type=float, default=10.0)
    ts.add_argument("--int8", type=Path, default=None,
                    help="also score this int8 .tflite tile by tile on TFLM, plain and with the thumbnail curve")
    ts.add_argument("--report", type=Path, required=True, help="report path; .json and .md are written")
    ts.set_defaults(func=cmd_tiling_study)

    e = sub.add_parser("eval", help="PSNR/SSIM of the network and baselines on eval15")
    e.add_argument("--data", type=Path, required=True, help="LoL root (with eval15/) or a folder with low/ and high/")
    e.add_argument("--report", type=Path, default=Path("eval_report.json"))
    e.add_argument("--grid", type=Path, default=None, help="comparison grid PNG (default: beside the report)")
    e.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    e.add_argument("--int8", type=Path, default=None,
                   help="also run this int8 .tflite tile by tile on TFLM (a frame-context tile model: with "
                        "the tiny_mirnet_context_int8.tflite beside it)")
    e.add_argument("--limit", type=int, default=None, help="only the first N pairs")
    e.set_defaults(func=cmd_eval)

    q = sub.add_parser("quantize", help="prune, int8-convert, verify on TFLM, check budgets, export the C array")
    q.add_argument("--data", type=Path, required=True, help="LoL root (training split for fine-tuning/calibration, eval15 for the report)")
    q.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    q.add_argument("--sparsity", type=float, default=0.5)
    q.add_argument("--steps", type=int, default=1200, help="pruning fine-tune steps (batches of 32 tiles)")
    q.add_argument("--lr", type=float, default=1e-3, help="pruning fine-tune rate")
    q.add_argument("--schedule", choices=["constant", "cosine"], default="cosine",
                   help="pruning fine-tune rate schedule: constant, or cosine (constant while the "
                        "sparsity ramps up, then decayed to 1e-5 over the recovery half)")
    q.add_argument("--loss", choices=LOSS_NAMES, default="mse",
                   help="pruning fine-tune loss: the one the weights were trained with (the shipped "
                        "weights' last stage: mse)")
    q.add_argument("--distill", action="store_true",
                   help="fine-tune the pruned model towards the unpruned model's outputs instead of the ground truth")
    q.add_argument("--qat-steps", type=int, default=600,
                   help="quantization-aware fine-tune steps after pruning (int8 rounding in the forward "
                        "pass, quantize/qat.py); 0 = none")
    q.add_argument("--qat-lr", type=float, default=3e-4, help="quantization-aware fine-tune rate (cosine to 1/100 of it)")
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
    x.add_argument("artifacts", type=Path, nargs="?", default=Path(__file__).resolve().parents[1] / "quantize" / "artifacts",
                   help="a quantize output folder (default quantize/artifacts; the per-tile-attention network: "
                        "quantize/artifacts/per_tile_attention)")
    x.add_argument("--firmware-dir", type=Path, default=None, help="default firmware/lib/tinymirnet_model")
    x.set_defaults(func=cmd_export)

    b = sub.add_parser("budget", help="sweep network size x tiling candidates: flash, arena, MACs, int8 PSNR")
    b.add_argument("--data", type=Path, default=None, help="LoL root: adds int8 tiled PSNR for trained candidates")
    b.add_argument("--weights", type=Path, nargs="+", default=[PER_TILE_WEIGHTS],
                   help="trained weights (one or more architectures) whose candidates get a PSNR")
    b.add_argument("--report", type=Path, default=Path("budget_report.json"))
    b.set_defaults(func=cmd_budget)

    n = sub.add_parser("enhance", help="enhance image files with the float network")
    n.add_argument("images", nargs="*", type=Path)
    n.add_argument("--out", type=Path, default=Path("enhanced"), help="output folder")
    n.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    from tinymirnet.model.samples import SAMPLE_PHOTOS
    n.add_argument("--sample", nargs="?", const="coffee", default=None, choices=SAMPLE_PHOTOS,
                   help="also enhance a low-light frame synthesized from this bundled sample photo "
                        "(the name alone means coffee)")
    add_device_options(n, port_required=False)
    n.set_defaults(func=cmd_enhance)

    # Device commands (host/device_cli.py, host/virtual_board.py, host/link_benchmark.py).
    d = sub.add_parser("devices", help="list Arduino Nano 33 BLE boards found by USB VID/PID")
    d.add_argument("--all", action="store_true", help="also list the other serial ports")
    d.set_defaults(func=lambda a: _device_cli().cmd_devices(a))

    c = sub.add_parser("capture", help="capture a frame on the board, enhance it there, score it "
                                       "against the host's float and int8 pipelines")
    add_device_options(c, port_required=True)
    c.add_argument("--out", type=Path, default=None, help="output folder (default captures/<timestamp>)")
    c.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="float reference weights")
    c.add_argument("--camera-dir", type=Path, default=None, help="with --port sim or qemu: image files for the virtual camera")
    c.set_defaults(func=lambda a: _device_cli().cmd_capture(a))

    s = sub.add_parser("sim", help="run a virtual board (the firmware core on this machine) on a pseudo-terminal")
    s.add_argument("--camera-dir", type=Path, default=None,
                   help="image files the virtual camera cycles through (default: a synthetic low-light frame)")
    s.set_defaults(func=lambda a: _device_cli().cmd_sim(a))

    from tinymirnet.host import naturalness_cli
    naturalness_cli.add_parser(sub)

    r = sub.add_parser("device-report", help="instructions per frame, per-op shares, arena, stack and flash of "
                                              "the firmware on the emulated Cortex-M4 (QEMU) with the board's TFLM")
    r.add_argument("--report", type=Path, default=Path("device_report.json"),
                   help="JSON report to write, the markdown beside it (default ./device_report.json; the "
                        "committed one is firmware/reports/device_report.json)")
    r.add_argument("--artifacts", type=Path, default=None,
                   help="price another quantized network: a `tinymirnet quantize --out DIR` folder "
                        "(default: the network the firmware ships)")
    r.set_defaults(func=lambda a: __import__("tinymirnet.host.device_report", fromlist=["x"]).cmd_device_report(a))

    k = sub.add_parser("bench-link", help="link efficiency, throughput and time per frame on the virtual board")
    k.add_argument("--report", type=Path, default=Path("link_benchmark.json"),
                   help="JSON report, the markdown beside it (the committed one: host/reports/link_benchmark.json)")
    k.add_argument("--frames", type=int, default=5, help="frames to measure (medians are reported)")
    k.add_argument("--port", default="sim", help="sim (default) or a board's serial port")
    k.set_defaults(func=_bench_link)
    return p


def _device_cli():
    from tinymirnet.host import device_cli
    return device_cli


def add_device_options(parser, *, port_required: bool) -> None:
    _device_cli().add_device_options(parser, port_required=port_required)


def _bench_link(args) -> int:
    from tinymirnet.host.link_benchmark import cmd_bench_link
    return cmd_bench_link(args)


# Commands that never load TensorFlow (they start in a fraction of a second).
NO_TENSORFLOW = {"devices", "sim", "device-report", "bench-link"}


class UsageError(Exception):
    """An ordinary mistake in the command line, worded as the one line the user sees."""


def _check_output_dir(path: Path, what: str) -> None:
    """A folder the command may create or write into: not an existing file, and a parent that exists
    or can be created and is writable. Checked before any model is loaded."""
    import os
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} {path} is an existing file, not a folder")
    parent = path if path.exists() else next((p for p in path.parents if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path}: cannot write in {parent}")


def _check_input_file(path: Path | None, what: str) -> None:
    if path is not None and not Path(path).is_file():
        raise UsageError(f"{what} {path}: no such file")


def _check_tflite(path: Path | None) -> None:
    _check_input_file(path, "--int8")
    if path is not None:
        with open(path, "rb") as f:
            head = f.read(8)
        if head[4:8] != b"TFL3":
            raise UsageError(f"--int8 {path}: not a TFLite model (no 'TFL3' file identifier)")


def _check_weights(path: Path | None) -> None:
    if path is None:
        return
    _check_input_file(path, "--weights")
    from tinymirnet.model.paths import config_path_for
    config = config_path_for(path)
    if not config.is_file():
        raise UsageError(f"--weights {path}: its network config {config} is missing (the weights alone do not "
                         f"say which network they are for)")


def precheck(args) -> None:
    """The checks that need no model: done before TensorFlow loads, so a mistake costs no wait."""
    command = args.command
    if command in ("train",) and not args.resume and args.data is None:
        raise UsageError("train needs --data (the LoL root, with our485/ or our450/)")
    if getattr(args, "data", None) is not None and not Path(args.data).is_dir():
        raise UsageError(f"--data {args.data}: no such folder")
    for name in ("weights", "init"):
        if command in ("enhance", "eval", "capture", "quantize", "tiling-study", "naturalness", "train") or name == "init":
            _check_weights(getattr(args, name, None))
    _check_tflite(getattr(args, "int8", None))
    if command == "enhance":
        _check_output_dir(args.out, "--out")
    if command == "capture" and args.out is not None:
        _check_output_dir(args.out, "--out")


def _error_text(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return str(e)


def main(argv=None) -> int:
    from tinymirnet.model.data import DataError
    args = build_parser().parse_args(argv)
    try:
        precheck(args)
        if args.command not in NO_TENSORFLOW:
            from tinymirnet.model import import_tensorflow_quietly
            import_tensorflow_quietly()
        return args.func(args)
    except (UsageError, DataError, FileNotFoundError, FileExistsError, NotADirectoryError,
            IsADirectoryError, PermissionError) as e:
        print(f"error: {_error_text(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
