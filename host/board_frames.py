"""Frames on the board: `capture` (a camera frame) and `enhance --port` (image files uploaded in
the camera's format). The board enhances the frame tile by tile; the host stitches the tiles and
scores them against its own pipelines on the same raw frame (host/host_model.py score_frame).

Outputs per frame, each written atomically, report.json last: raw.png (the RGB888 of the frame
the board enhanced, as the board converts it), device.png, float.png, side_by_side.png,
report.json. Serial and protocol failures end the command with one line on stderr and exit code
1 (board_link.run_guarded), and leave no output folder.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from tinymirnet.model.data import DataError, read_rgb, to_float, to_uint8
from tinymirnet.model.files import atomic_save_image, atomic_write_json, report_path, unique_stem
from tinymirnet.model.inference import load_enhancer
from tinymirnet.model.lightness_order import finish
from tinymirnet.model.metrics import psnr
from tinymirnet.model.plots import comparison_grid
from tinymirnet.model.samples import resize_to, sample_photo, synthesize_low_light
from tinymirnet.model.tiling import seam_ratio

from .board_link import CommandError, TileProgress, check_handshake, end_progress_line, open_device
from .host_model import HostModel
from .protocol import PIXEL_FORMAT_NAMES, frame_to_rgb888, rgb888_to_frame


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


def _time_summary(values: list[int]) -> dict:
    a = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(a)), "mean": round(float(a.mean()), 1),
            "min": int(a.min()), "max": int(a.max()), "total": int(a.sum())}


def score_frame(raw888: np.ndarray, enhanced, host: HostModel, enhancer) -> tuple[dict, dict]:
    """The host's pipelines on the raw frame the board enhanced, and the comparisons.
    Returns (images: raw/device/host_int8/float as uint8, report section)."""
    t = host.tiling
    started = time.perf_counter()
    host_int8 = host.int8_frame(raw888)
    int8_s = time.perf_counter() - started
    started = time.perf_counter()
    float_img = enhancer.enhance(raw888, t.tile, t.halo)
    float_s = time.perf_counter() - started
    device = enhanced.image
    diff = np.abs(device.astype(np.int16) - host_int8.astype(np.int16))
    tiles = []
    for tile in enhanced.tiles:
        d = diff[tile.y:tile.y + tile.height, tile.x:tile.x + tile.width]
        tiles.append({"index": tile.index, "x": tile.x, "y": tile.y, "width": tile.width,
                      "height": tile.height, "invoke_us": tile.invoke_us,
                      "differing_values": int(np.count_nonzero(d)),
                      "max_abs_diff": int(d.max(initial=0))})
    done = enhanced.done
    # What a user gets: the stitched tiles finished by the host (the lightness-order step and the
    # guards again, model/lightness_order.py), as the float image is; the parity above is the
    # board's own output.
    device = finish(raw888, device)
    host_int8 = device if not diff.any() else finish(raw888, host_int8)  # bit-exact: the same frame
    report = {
        "device_vs_host_int8": {
            "differing_values": int(np.count_nonzero(diff)), "total_values": int(diff.size),
            "max_abs_diff": int(diff.max(initial=0)), "bit_exact": bool(not diff.any()),
            "differing_tiles": [t_["index"] for t_ in tiles if t_["differing_values"]]},
        "psnr_db": {
            "device_int8_vs_host_float": _finite(psnr(to_float(device), float_img)),
            "host_int8_vs_host_float": _finite(psnr(to_float(host_int8), float_img)),
            "raw_vs_host_float": _finite(psnr(to_float(raw888), float_img)),
            "note": "on [0,1] images, each finished by the host (lightness-order step); the float "
                    "network runs on the same raw frame with the same tiling (tile by tile), so "
                    "this measures int8 + device fidelity"},
        "tile_seam_ratio": {
            "device": round(seam_ratio(device, t.tile), 3),
            "host_float_tiled": round(seam_ratio(to_uint8(float_img), t.tile), 3),
            "note": "mean |neighbour difference| across tile boundaries / elsewhere "
                    "(model.tiling.seam_ratio); 1.0: the tile grid does not show"},
        "device_time_us": {
            "per_tile_invoke": _time_summary([t_["invoke_us"] for t_ in tiles]),
            "inference_total": done.inference_us if done else enhanced.device_inference_us,
            # a frame-context network's context model, once per frame: DONE's total - the tiles'
            "context_model": (done.inference_us - enhanced.device_inference_us
                              if done and host.context_tflite is not None else None),
            "job_elapsed": done.elapsed_us if done else None},
        "host_time_s": {"host_int8": round(int8_s, 3), "host_float": round(float_s, 3)},
        "repaired_tiles": list(enhanced.repaired_tiles),
        "tiles": tiles,
    }
    images = {"raw": raw888, "device": device, "host_int8": host_int8,
              "float": to_uint8(float_img)}
    return images, report


def write_outputs(out_dir: Path, images: dict, report: dict) -> list[Path]:
    """raw.png, device.png, float.png, side_by_side.png, then report.json (each atomic: a
    failure never leaves a half-written file, and report.json exists only when all do)."""
    out_dir = Path(out_dir)
    written = []
    for name in ("raw", "device", "float"):
        written.append(atomic_save_image(Image.fromarray(images[name]), out_dir / f"{name}.png"))
    side = out_dir / "side_by_side.png"
    comparison_grid(side, [[images["raw"], images["device"], images["float"]]],
                    ["raw frame", "device (int8)", "host float"], width=320)
    written.append(side)
    report = dict(report, files=[p.name for p in written] + ["report.json"])
    written.append(atomic_write_json(out_dir / "report.json", report))
    return written


def _device_section(info, link, port: str) -> dict:
    """The board a frame came from (--port auto: the port it found)."""
    return {"port": port if port != "auto" else link.name, "firmware_version": info.firmware_version,
            "model_sha256": info.model_sha256, "frame_context": info.frame_context,
            "context_model_sha256": info.context_model_sha256 if info.frame_context else None,
            "frame": [info.frame_width, info.frame_height],
            "camera_pixel_format": PIXEL_FORMAT_NAMES.get(info.camera_pixel_format,
                                                          str(info.camera_pixel_format)),
            "tile": info.tile_size, "halo": info.halo, "tile_count": info.tile_count,
            "arena_size": info.arena_size, "arena_used_bytes": info.arena_used_bytes,
            "model_bytes": info.model_bytes}


def _host_section(host: HostModel, weights: Path) -> dict:
    return {"tflite": report_path(host.tflite), "sha256": host.sha256, "tflm": host.tflm.library,
            "weights": report_path(weights)}


def _print_summary(report: dict, out_dir: Path) -> None:
    cmp_ = report["device_vs_host_int8"]
    times = report["device_time_us"]
    psnr_ = report["psnr_db"]
    per_tile = times["per_tile_invoke"]
    job = times["job_elapsed"]
    print(f"device: {len(report['tiles'])} tiles, inference {times['inference_total'] / 1000:.1f} ms "
          f"(median {per_tile['median'] / 1000:.1f} ms/tile)"
          + (f", job {job / 1000:.1f} ms" if job is not None else "")
          + f"; host wall time {report['link']['wall_s']:.2f} s")
    if cmp_["bit_exact"]:
        print(f"device vs host int8 (TFLM): bit-exact ({cmp_['total_values']} values)")
    else:
        print(f"device vs host int8 (TFLM): {cmp_['differing_values']} of {cmp_['total_values']} "
              f"values differ, max difference {cmp_['max_abs_diff']}")

    def db(v):
        return "inf" if v is None else f"{v:.2f}"
    print(f"PSNR vs host float: device {db(psnr_['device_int8_vs_host_float'])} dB, host int8 "
          f"{db(psnr_['host_int8_vs_host_float'])} dB, raw {db(psnr_['raw_vs_host_float'])} dB")
    if "tile_seam_ratio" in report:
        seams = report["tile_seam_ratio"]
        print(f"tile seams (boundary / elsewhere): device {seams['device']:.2f}, float tiled "
              f"{seams['host_float_tiled']:.2f} (1.00: no grid)")
    print(f"wrote {out_dir}/raw.png, device.png, float.png, side_by_side.png, report.json")


def _require_weights(weights: Path) -> Path:
    weights = Path(weights)
    if not weights.is_file():
        raise CommandError(f"{weights}: no float weights (the reference the device is scored "
                           f"against); train first or give --weights")
    return weights


def _default_capture_dir() -> Path:
    base = Path("captures") / time.strftime("%Y%m%d-%H%M%S")
    out, n = base, 2
    while out.exists():
        out, n = base.with_name(f"{base.name}-{n}"), n + 1
    return out


def _link_section(link, wall_s: float) -> dict:
    return dict(asdict(link.stats), wall_s=round(wall_s, 3))


def capture(args) -> int:
    """`tinymirnet capture`: one camera frame enhanced on the board, scored, written."""
    host = HostModel.load(args.int8)
    weights = _require_weights(args.weights)
    with open_device(args.port, stream_timeout=args.timeout,
                     camera_dir=getattr(args, "camera_dir", None),
                     board_speed=args.board_speed) as (link, board):
        info = link.hello()
        check_handshake(info, host, link.name)
        if not info.camera_ready:
            raise CommandError(f"the board on {link.name} reports no camera (OV7675 not "
                               f"detected); use `tinymirnet enhance --port` with image files")
        progress = TileProgress(info.tile_count, "capture")
        started = time.perf_counter()
        result = link.capture(on_tile=progress)
        wall_s = time.perf_counter() - started
        progress.close()
        link_report = _link_section(link, wall_s)
        device = _device_section(info, link, args.port)
    raw888 = result.raw_rgb888
    images, report = score_frame(raw888, result.enhanced, host, load_enhancer(weights))
    report = {"command": "capture", "device": device, "host_model": _host_section(host, weights),
              "link": link_report, **report}
    out_dir = Path(args.out) if args.out else _default_capture_dir()
    write_outputs(out_dir, images, report)
    _print_summary(report, out_dir)
    return 0


def crop_kept(w: int, h: int, width: int, height: int) -> float:
    """The fraction of a w x h photo's cropped dimension that scaling to cover width x height and
    centre-cropping keeps (1.0: nothing cropped)."""
    scale = max(width / w, height / h)
    return min(width / (w * scale), height / (h * scale))


def enhance_on_board(args) -> int:
    """`tinymirnet enhance --port`: image files (or a bundled sample) enhanced on the board."""
    if not args.images and not args.sample:
        raise CommandError("give IMAGE files or --sample")
    host = HostModel.load(args.int8)
    weights = _require_weights(args.weights)
    jobs: list[tuple[str, Path | None, np.ndarray | None]] = [
        (Path(p).stem, Path(p), None) for p in args.images]
    if args.sample:
        jobs.append((f"sample_{args.sample}_low", None,
                     synthesize_low_light(sample_photo(args.sample))))
    failures = 0
    used_names: set[str] = set()
    with open_device(args.port, stream_timeout=args.timeout,
                     board_speed=args.board_speed) as (link, board):
        info = link.hello()
        check_handshake(info, host, link.name)
        width, height = info.frame_width, info.frame_height
        for stem, src, img in jobs:
            try:
                img = read_rgb(src) if img is None else img
            except DataError as e:
                end_progress_line()
                print(f"error: {e}", file=sys.stderr)
                failures += 1
                continue
            kept = crop_kept(img.shape[1], img.shape[0], width, height)
            if kept < 0.99:  # say what the board will not see, never crop unannounced
                end_progress_line()
                print(f"note: {stem}: {img.shape[1]}x{img.shape[0]} scaled to cover the board's "
                      f"{width}x{height} frame and centre-cropped: {100 * kept:.0f} % of its "
                      f"{'height' if img.shape[0] * width > img.shape[1] * height else 'width'} is kept",
                      file=sys.stderr)
            # The photo reaches the board in its camera's format: what a capture would hold.
            pixel_format = info.camera_pixel_format
            frame = rgb888_to_frame(resize_to(img, width, height), pixel_format)
            progress = TileProgress(info.tile_count, stem)
            started = time.perf_counter()
            result = link.enhance(frame, pixel_format=pixel_format, on_tile=progress)
            wall_s = time.perf_counter() - started
            progress.close()
            raw888 = frame_to_rgb888(frame, pixel_format, width, height)
            images, scored = score_frame(raw888, result, host, load_enhancer(weights))  # built once
            name = unique_stem(stem, used_names)
            report = {
                "command": "enhance", "source": str(src) if src else stem,
                "source_size": [int(img.shape[1]), int(img.shape[0])],
                "resize_rule": f"scale to cover {width}x{height} (bilinear), centre crop, "
                               f"then the camera's {PIXEL_FORMAT_NAMES[pixel_format]} "
                               f"(model.samples.resize_to, protocol.rgb888_to_frame)",
                "device": _device_section(info, link, args.port),
                "host_model": _host_section(host, weights),
                "link": _link_section(link, wall_s), **scored}
            out_dir = Path(args.out) / name
            write_outputs(out_dir, images, report)
            print(f"{report['source']}:")
            _print_summary(report, out_dir)
    return 1 if failures else 0


