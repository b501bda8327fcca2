"""The model room's commands: train, publish, compare-runs, eval, enhance (host path; `--port`
hands enhance to the board: host/board_frames.py)."""
from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import asdict, replace
from pathlib import Path

from PIL import Image

from tinymirnet.host.protocol import PIXEL_FORMAT_NAMES, at_frame_precision
from tinymirnet.model.data import DataError, find_pairs, read_rgb, resolve_split, split_train_val
from tinymirnet.model.files import atomic_save_image, atomic_write, provenance, report_path, unique_stem
from tinymirnet.model.network_config import DESIGNS, LOSS_NAMES
from tinymirnet.model.paths import CONTEXT_INT8_NAME, DEFAULT_WEIGHTS, WEIGHTS_DIR, config_path_for
from tinymirnet.model.samples import SAMPLE_PHOTOS, sample_photo, synthesize_low_light
from tinymirnet.model.scene_overlap import TrainingScenes
from tinymirnet.quantize.export import tiling_for
from tinymirnet.quantize.tflm import TflmModel, int8_frame_context_method, int8_method

from .board_link import add_device_options, run_guarded
from .checks import default_in_checkout, load_int8


def cmd_train(args) -> int:
    from tinymirnet.model.network import MirnetConfig
    from tinymirnet.model.train import TrainConfig, TrainConfigError, train
    cfg = None
    if not args.resume or args.epochs:
        if args.init:
            model_cfg = MirnetConfig.load(config_path_for(args.init))
        else:
            model_cfg = MirnetConfig(design=args.design, channels=args.channels, depth=args.depth,
                                     mrb_rounds=args.rounds, growth=args.growth, num_rrg=args.rrg,
                                     num_mrb=args.mrb)
        if args.frame_context is not None:
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
                                           else args.exposure),
                          scenes=str(args.scenes or ""), scene_weight=args.scene_weight,
                          scene_crop=args.scene_crop, teacher=str(args.teacher or ""),
                          teacher_weight=args.teacher_weight, context_jitter=args.context_jitter,
                          teacher_photos=args.teacher_photos,
                          **({} if args.order_weight is None else {"order_weight": args.order_weight}))
    try:
        train(args.out, cfg, resume=args.resume)
    except TrainConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
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

    # Named after the shipped weights (tiny_mirnet_half_resolution.weights.h5 -> *_half_resolution.*).
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


def cmd_eval(args) -> int:
    from tinymirnet.model.evaluate import baseline_methods, evaluate, network_methods
    from tinymirnet.model.network_cost import count_params, macs_per_pixel
    tiling = tiling_for(args.int8)  # an alternative network's int8 folder may carry another halo
    from tinymirnet.model.inference import load_enhancer
    enhancer = load_enhancer(args.weights)
    model, cfg = enhancer.model, enhancer.cfg
    methods = {**baseline_methods(), **network_methods(enhancer, tiling.tile, tiling.halo)}
    meta = {"weights": report_path(args.weights), "model": cfg.__dict__, "params": count_params(model),
            "macs_per_pixel": round(macs_per_pixel(cfg), 1), "tile": tiling.tile, "halo": tiling.halo,
            "exposure_target": cfg.exposure_target}
    if args.int8:
        tile_model = load_int8(args.int8, tiling)
        if tile_model.context_index is None:
            method = int8_method(tile_model, tiling.tile, tiling.halo, exposure_target=tiling.exposure_target)
        else:  # a frame-context network: its context model lies beside the tile model
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
    if args.frame_format:  # what a board's camera delivers: every method sees that frame
        fmt = {name.lower(): code for code, name in PIXEL_FORMAT_NAMES.items()}[args.frame_format]
        methods = {name: (lambda low, m=m: m(at_frame_precision(low, fmt))) for name, m in methods.items()}
        meta["frames"] = (f"each low-light frame at {args.frame_format.upper()} precision, as a board "
                          f"holds it (host/protocol/pixels.py at_frame_precision)")
    meta["provenance"] = provenance({"weights": args.weights, "int8_model": args.int8,
                                     "int8_context_model": meta.get("int8_context_model")})
    grid = args.grid or args.report.with_suffix(".png")
    pairs = None
    if args.split == "val":  # the held-out part of the training pairs: for choosing, never eval15
        training, pairs = split_train_val(find_pairs(resolve_split(args.data, "train")))
        meta["split"] = "LoL validation (10 % of the training pairs, model/data.py split_train_val)"
    else:
        training = _training_pairs_beside(args.data)
    scenes = None
    if training:
        scenes = TrainingScenes.from_pairs(training)
    else:
        print("no LoL training split beside the test frames: the scene groups are not scored")
    evaluate(args.data, methods, report=args.report, grid=grid,
             grid_method="tiny_mirnet_float_full", meta=meta, limit=args.limit, pairs=pairs,
             dataset_name="LoL validation split" if pairs else None,
             agreement=("tiny_mirnet_int8_tiled", "tiny_mirnet_float_tiled") if args.int8 else None,
             training_scenes=scenes)
    print(f"wrote {args.report} and {grid}")
    return 0


def _training_pairs_beside(data) -> list:
    """The LoL training pairs beside eval15 under `data` (our485 or our450), for the scene groups;
    none when `data` is itself a folder of test pairs or holds no training split."""
    try:
        train, test = resolve_split(data, "train"), resolve_split(data, "eval")
    except DataError:
        return []
    return [] if train == test else find_pairs(train)


def _output_path(src: Path, out_dir: Path, used: set[str]) -> Path:
    """`<stem>_enhanced.png` (`<stem>_2_enhanced.png` for a second input with that stem): never the
    input's own name, so an input is never overwritten, and never another input's output."""
    return out_dir / f"{unique_stem(src.stem, used)}_enhanced.png"


# Photos above this many pixels are enhanced in tiles (bounded memory, a progress line): the
# whole-frame path needs ~550 B per pixel (6.6 GB for 12 MP).
LARGE_PHOTO_PIXELS = 1_000_000


PHOTO_TILE, PHOTO_HALO, PHOTO_BATCH = 192, 32, 2


def enhance_photo(enhancer, img, name: str):
    """The float network on one photo of any size, as 8-bit values: whole, or in 192 px tiles with
    a 32 px halo (wider than the network's receptive field) when it is large."""
    h, w = img.shape[:2]
    if h * w <= LARGE_PHOTO_PIXELS:
        return enhancer.enhance_u8(img)

    def progress(done: int, total: int) -> None:
        print(f"\r{name}: {done}/{total} tiles", end="" if done < total else "\n", file=sys.stderr, flush=True)

    return enhancer.enhance_u8(img, PHOTO_TILE, PHOTO_HALO, batch=PHOTO_BATCH, progress=progress)


def cmd_enhance(args) -> int:
    if getattr(args, "port", None):  # on a board (or a virtual board): host/board_frames.py
        from .board_frames import enhance_on_board
        return run_guarded(enhance_on_board, args)
    if not args.images and not args.sample:
        print("error: give IMAGE files or --sample", file=sys.stderr)
        return 2
    from tinymirnet.model.inference import load_enhancer
    enhancer = load_enhancer(args.weights)
    failures = 0
    used: set[str] = set()
    jobs = [(Path(p), None) for p in args.images]
    if args.sample:
        low = synthesize_low_light(sample_photo(args.sample))
        atomic_save_image(Image.fromarray(low), args.out / f"sample_{args.sample}_low.png")
        jobs.append((args.out / f"sample_{args.sample}_low.png", low))
    for src, img in jobs:
        try:
            img = read_rgb(src) if img is None else img
            out = enhance_photo(enhancer, img, src.name)
            dst = atomic_save_image(Image.fromarray(out), _output_path(src, args.out, used))
            print(f"{src} -> {dst}")
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            failures += 1
    return 1 if failures else 0


def register(sub) -> None:
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
    t.add_argument("--design", choices=list(DESIGNS), default="mrb_half_resolution",
                   help="mrb_half_resolution: the tiny MIRNet the board runs (its MRB at half resolution); "
                        "mrb: the textbook tiny MIRNet at full resolution; half_resolution: the alternative "
                        "without streams (model/network.py) (default mrb_half_resolution)")
    t.add_argument("--channels", type=int, default=8)
    t.add_argument("--depth", type=int, default=2,
                   help="half_resolution: attention-scaled convolutions (default 2)")
    t.add_argument("--rounds", type=int, default=2,
                   help="mrb_half_resolution: rounds of DAUs and SKFF in the MRB (default 2, as MIRNet-v2)")
    t.add_argument("--growth", type=float, default=1.0)
    t.add_argument("--rrg", type=int, default=1)
    t.add_argument("--mrb", type=int, default=1)
    t.add_argument("--init", type=Path, default=None,
                   help="start from these weights (their config); for the tile-adaptation stage")
    t.add_argument("--loss-margin", type=int, default=0,
                   help="leave this many border pixels out of the loss (the halo, when training on tiles)")
    t.add_argument("--scenes", type=Path, default=None,
                   help="folder of unpaired real photos (SICE train/) for the naturalness loss (default none)")
    t.add_argument("--scene-weight", type=float, default=1.0, help="weight of the naturalness loss (default 1.0)")
    t.add_argument("--scene-crop", type=int, default=0,
                   help="side of the real-photo crops (default: --crop)")
    t.add_argument("--order-weight", type=float, default=None,
                   help="weight of the lightness-order term inside the naturalness loss "
                        "(default: model/metrics.py ORDER_WEIGHT; 0: without it)")
    t.add_argument("--teacher", type=Path, default=None,
                   help="distil: train towards this network's output (its weights; e.g. the tiny MIRNet, "
                        "model/weights/tiny_mirnet_frame_context.weights.h5) instead of the ground truth alone")
    t.add_argument("--teacher-weight", type=float, default=1.0,
                   help="with --teacher: target = w x teacher + (1 - w) x ground truth (default 1)")
    t.add_argument("--teacher-photos", type=int, default=0, metavar="N",
                   help="with --teacher and --scenes: N photos of --scenes (training split, evenly spaced) join "
                        "the training frames with the teacher's output as their target, so that its choices on "
                        "scenes LoL lacks are learnt too (default 0)")
    t.add_argument("--context-jitter", type=float, default=0.0, metavar="F",
                   help="frame context: take each training crop's thumbnail from a random window keeping "
                        "1 - F to all of each side of its frame, so that the attention cannot recognise a "
                        "training frame by its thumbnail (default 0: the whole frame, as the board)")
    t.add_argument("--val-tiled", action="store_true", help="validate tile by tile (model/tiling.json)")
    t.add_argument("--loss", choices=LOSS_NAMES, default="charbonnier",
                   help="training loss: Charbonnier (MIRNet's), MSE (what PSNR measures) or MSE + 0.02 x "
                        "(1 - SSIM) (mse_ssim: also the structure SSIM scores)")
    t.add_argument("--exposure", type=int, default=None,
                   help="normalise every low-light frame to this mean (8-bit units) before cropping, "
                        "as the board does (model/tiling.json: exposure_target); 0: off "
                        "(default: the --init weights' setting, else off)")
    t.add_argument("--frame-context", type=_size, default=None, metavar="WxH",
                   help="compute every attention weight on a WxH thumbnail of the whole frame (e.g. "
                        "32x24) instead of on the network's own input (one tile on the board); 0x0: "
                        "off (default: the --init weights' setting, else off)")
    t.set_defaults(func=cmd_train)

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

    e = sub.add_parser("eval", help="PSNR/SSIM of the network and baselines on eval15",
                       description="PSNR/SSIM of the network and baselines on eval15 (or the validation split), "
                                   "also apart on three groups of frames: a training scene again at its "
                                   "training target's brightness ('seen'), a training scene at another "
                                   "brightness, and a new scene: the training split beside eval15 is read "
                                   "for that (model/scene_overlap.py)")
    e.add_argument("--data", type=Path, required=True, help="LoL root (with eval15/) or a folder with low/ and high/")
    e.add_argument("--report", type=Path, default=Path("eval_report.json"))
    e.add_argument("--grid", type=Path, default=None, help="comparison grid PNG (default: beside the report)")
    e.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    e.add_argument("--int8", type=Path, default=None,
                   help="also run this int8 .tflite tile by tile on TFLM (a frame-context tile model: with "
                        "the tiny_mirnet_context_int8.tflite beside it)")
    e.add_argument("--limit", type=int, default=None, help="only the first N pairs")
    e.add_argument("--split", choices=["eval15", "val"], default="eval15",
                   help="eval15 (the benchmark) or val, the held-out 10 %% of the training pairs that "
                        "choices are made on (default eval15)")
    e.add_argument("--frame-format", choices=["yuv422", "rgb565"], default=None,
                   help="score every method on the frames as a board holds them: each low-light frame at that "
                        "format's precision. yuv422: what the board's camera (and an upload) delivers, 8-bit luma "
                        "per pixel and chroma per pixel pair; rgb565: 5 bits of red and blue, 6 of green (the "
                        "camera format before protocol v3)")
    e.set_defaults(func=cmd_eval)

    n = sub.add_parser("enhance", help="enhance image files with the float network")
    n.add_argument("images", nargs="*", type=Path)
    n.add_argument("--out", type=Path, default=Path("enhanced"), help="output folder")
    n.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    n.add_argument("--sample", nargs="?", const="coffee", default=None, choices=SAMPLE_PHOTOS,
                   help="also enhance a low-light frame synthesized from this bundled sample photo "
                        "(the name alone means coffee)")
    add_device_options(n, port_required=False)
    n.set_defaults(func=cmd_enhance)
