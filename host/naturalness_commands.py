"""`tinymirnet naturalness DIR...`: highlights, lightness order and colour of the network's output
on real photographs (no ground truth), beside gamma 1/2.2 and histogram equalization, per image and
mean, as JSON, markdown and a contact sheet (model/naturalness.py defines the metrics).

Host path (default): the float network on the photo, downscaled to --max-side first. With
--int8: also the int8 pair on the board's TFLM, tiled as the board runs it. With --port (qemu,
sim or a board): also the board path, on each photo scaled to cover the board's 160x120 frame
and centre-cropped; then
every method is scored on that fitted frame.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tinymirnet.host.protocol import PIXEL_FORMAT_NAMES, frame_to_rgb888, rgb888_to_frame
from tinymirnet.model.data import IMAGE_SUFFIXES, DataError, read_rgb, split_photos, to_float, to_uint8
from tinymirnet.model.files import provenance, report_path, write_report
from tinymirnet.model.lightness_order import finish
from tinymirnet.model.naturalness import BASELINES, contact_sheet, evaluate_naturalness
from tinymirnet.model.paths import DEFAULT_WEIGHTS
from tinymirnet.model.samples import SAMPLE_PHOTOS, resize_to, sample_photo, synthesize_low_light

from .board_link import check_handshake, open_device
from .host_model import HostModel


def register(sub) -> None:
    p = sub.add_parser("naturalness", help="highlights darkened, lightness-order error and chromaticity shift "
                                           "on real photos (no ground truth), beside gamma and equalization")
    p.add_argument("dirs", nargs="*", type=Path, help="folders (or files) of photographs")
    p.add_argument("--samples", action="store_true",
                   help="also the bundled CC0/public-domain sample photos, darkened as the demo frame is "
                        "(model/samples/): the README's before/after sheet")
    p.add_argument("--report", type=Path, default=Path("naturalness.json"),
                   help="JSON report; the markdown and the contact sheet (.png) go beside it (default ./naturalness.json)")
    p.add_argument("--weights", type=Path, default=None, help="float weights (default: the shipped network)")
    p.add_argument("--int8", type=Path, default=None,
                   help="also the int8 model (tile model .tflite; a frame-context pair's context model beside it) "
                        "on the board's TFLM, tiled as on the board")
    p.add_argument("--port", default=None, help="also the board path: qemu, sim or a board's serial port")
    p.add_argument("--max-side", type=int, default=512, help="photos are downscaled to this long side first (default 512)")
    p.add_argument("--split", choices=("all", "val"), default="all",
                   help="val: only the photos of the validation split (the 10 %% stem-hash split that "
                        "training's naturalness loss never sees, model/data.py split_photos) (default all)")
    p.add_argument("--darker-than", type=float, default=None, metavar="MEAN",
                   help="only the photos whose mean 8-bit value is below MEAN: the low-light ones of a "
                        "folder of mixed exposures such as SICE train/")
    p.add_argument("--limit", type=int, default=None, help="at most this many photos (sorted by path)")
    p.set_defaults(func=cmd_naturalness)


def photo_paths(items: list[Path]) -> list[Path]:
    paths: list[Path] = []
    for item in items:
        if item.is_dir():
            paths += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            paths.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    return paths


def _downscale(img: np.ndarray, max_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    if max(h, w) <= max_side:
        return img
    s = max_side / max(h, w)
    return np.asarray(Image.fromarray(img).resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS))


def int8_against_float(images, enhancer, host) -> dict:
    """The design card's figure on real photos: each photo fitted to the board's frame (scaled
    to cover it and centre-cropped), then the int8 network (host TFLM, the board's pipeline)
    against the float network on the same tiling, both finished by the host's lightness-order
    step: PSNR per image, mean and min."""
    from tinymirnet.model.metrics import psnr
    t = host.tiling
    rows = []
    for name, img in images:
        frame = resize_to(img, t.frame_width, t.frame_height)
        float_tiled = to_uint8(enhancer.enhance(frame, t.tile, t.halo))
        rows.append({"name": name, "psnr": psnr(to_float(host.finished_frame(frame)), to_float(float_tiled))})
    values = [r["psnr"] for r in rows]
    return {"frame": [t.frame_width, t.frame_height], "tiling": [t.tile, t.halo],
            "psnr_mean": float(np.mean(values)), "psnr_min": float(np.min(values)), "images": rows}


def cmd_naturalness(args) -> int:
    try:
        paths = photo_paths(args.dirs)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.split == "val" and paths:
        paths = split_photos(paths)[1]
    if not paths and not args.samples:
        print(f"error: no photographs ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, args.dirs)) or 'no folder'}"
              f" (give folders, or --samples)", file=sys.stderr)
        return 1
    images = []
    if args.samples:
        images += [(f"sample:{name} (low-light, seed {i})", synthesize_low_light(sample_photo(name), seed=i))
                   for i, name in enumerate(SAMPLE_PHOTOS)]
    chosen = 0
    for path in paths:
        if args.limit is not None and chosen >= args.limit:
            break
        try:
            img = read_rgb(path)
        except DataError as e:
            print(f"error: {e} (skipped)", file=sys.stderr)
            continue
        if args.darker_than is not None and img.mean() >= args.darker_than:
            continue
        images.append((path.name, _downscale(img, args.max_side)))
        chosen += 1
    if not images:
        print(f"error: no photograph left in {', '.join(map(str, args.dirs))} after --split {args.split}"
              + (f" and --darker-than {args.darker_than:g}" if args.darker_than is not None else ""), file=sys.stderr)
        return 1
    weights = args.weights or DEFAULT_WEIGHTS
    from tinymirnet.model.inference import load_enhancer
    enhancer = load_enhancer(weights)
    methods = {"network_float": lambda img: to_uint8(enhancer.enhance(img)), **BASELINES}
    meta = {"weights": report_path(weights), "max_side": args.max_side,
            "selection": {"dirs": [report_path(d) for d in args.dirs], "split": args.split,
                          "darker_than": args.darker_than, "samples": args.samples},
            "provenance": provenance({"weights": weights, "int8": args.int8})}
    if args.int8:
        host = HostModel.load(args.int8)
        methods["network_int8_tiled"] = host.finished_frame
        meta["int8"] = {"tflite": report_path(args.int8), "tflm": host.tflm.library}
    link_cm = None
    if args.port:

        host = HostModel.load(args.int8)
        link_cm = open_device(args.port)
        link, _ = link_cm.__enter__()
        info = link.hello()
        check_handshake(info, host, link.name)
        w, h = info.frame_width, info.frame_height
        # The board sees each photo scaled to cover its frame and centre-cropped, in its camera's
        # format: every method is scored on that frame, and the board gets the very frame (a
        # YUV422 frame converted to RGB888 and back need not be the same frame).
        fmt = info.camera_pixel_format
        board_frames = {}
        for k, (n, img) in enumerate(images):
            frame = rgb888_to_frame(resize_to(img, w, h), fmt)
            images[k] = (n, frame_to_rgb888(frame, fmt, w, h))
            board_frames[images[k][1].tobytes()] = frame
        methods["board_int8"] = lambda img: finish(img, link.enhance(board_frames[img.tobytes()], pixel_format=fmt).image)
        meta["board"] = {"port": args.port, "firmware": info.firmware_version, "frame": [w, h],
                         "pixel_format": PIXEL_FORMAT_NAMES.get(fmt, str(fmt))}
    try:
        result = evaluate_naturalness(images, methods, progress=lambda n: print(f"  {n}", file=sys.stderr))
    finally:
        if link_cm is not None:
            link_cm.__exit__(None, None, None)
    means = result.means()
    if args.int8:
        meta["int8_vs_float"] = int8_against_float(images, enhancer, host)
    report = {"what": "model/naturalness.py metrics on real photos; lower is better for all three",
              **meta, "images": result.images, "mean": means, "per_image": result.per_image}
    sheet = contact_sheet(result, [img for _, img in images], args.report.with_suffix(".png"))
    write_report(args.report, report, markdown(report))
    if args.int8:
        a = meta["int8_vs_float"]
        print(f"int8 against float (same tiling, {a['frame'][0]}x{a['frame'][1]} frames): PSNR mean "
              f"{a['psnr_mean']:.2f} dB, min {a['psnr_min']:.2f} dB")
    for method, m in means.items():
        print(f"{method:20s} highlights darkened {_fmt(m['highlights_darkened_pct'])} %, "
              f"LOE {_fmt(m['loe_pct'])} %, chromaticity shift {_fmt(m['chromaticity_shift'])}")
    print(f"wrote {args.report}, {args.report.with_suffix('.md')} and {sheet}")
    return 0


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _selection(sel: dict | None) -> str:
    if not sel or not sel["dirs"]:
        return ""
    parts = [", ".join(f"`{d}`" for d in sel["dirs"])]
    if sel["split"] == "val":
        parts.append("validation split")
    if sel["darker_than"] is not None:
        parts.append(f"mean below {sel['darker_than']:g}")
    return " (" + ", ".join(parts) + ")"


def markdown(report: dict) -> str:
    lines = ["# Naturalness on real photographs", "",
             f"{len(report['images'])} photos{_selection(report.get('selection'))}; {report['what']}.", ""]
    if b := report.get("board"):
        lines += [f"Board path (`--port {b['port']}`, firmware {b['firmware']}): every method ran on the "
                  f"frame the board sees, each photo scaled to cover {b['frame'][0]}x{b['frame'][1]}, "
                  f"centre-cropped and sent in the camera's format ({b.get('pixel_format', 'RGB565')}), "
                  f"and is scored against that frame.", ""]
    lines += ["| method | highlights darkened (%) | LOE (%) | LOE: broken ties + reversed pairs | chromaticity shift |",
              "|---|---|---|---|---|"]
    for method, m in report["mean"].items():
        parts = (f"{_fmt(m['loe_broken_ties_pct'])} + {_fmt(m['loe_reversed_pct'])}"
                 if m.get("loe_reversed_pct") is not None else "n/a")
        lines.append(f"| {method} | {_fmt(m['highlights_darkened_pct'])} | {_fmt(m['loe_pct'])} | {parts} | "
                     f"{_fmt(m['chromaticity_shift'])} |")
    if a := report.get("int8_vs_float"):
        lines += ["", f"int8 against float on the same tiling, each photo fitted to the board's "
                  f"{a['frame'][0]}x{a['frame'][1]} frame: PSNR mean {a['psnr_mean']:.2f} dB, "
                  f"min {a['psnr_min']:.2f} dB."]
    return "\n".join(lines) + "\n"
