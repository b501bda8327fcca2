"""The board commands: `devices`, `capture`, `sim`, `device-report`, `bench-link` (`enhance
--port` is `enhance`'s: host/model_commands.py). Each is a thin layer over its library module;
those that need TensorFlow import it when they run, so that `--help` and a mistake cost no wait."""
from __future__ import annotations

import platform
import signal
import sys
import time
from pathlib import Path

from tinymirnet.model.files import write_report
from tinymirnet.model.paths import DEFAULT_WEIGHTS
from tinymirnet.quantize.native_build import NativeBuildError

from . import soak
from .board_link import CommandError, add_device_options, list_serial_ports, run_guarded, wanted_ids
from .device_report import DeviceReportError, device_report
from .link_benchmark import TARGET_RATIO, markdown, run_benchmark
from .qemu_board import BOARD_HZ, QemuBoardError
from .virtual_board import VirtualBoard


# Commands that never load TensorFlow (they start in a fraction of a second).
NO_TENSORFLOW = {"devices", "sim", "device-report", "bench-link", "soak"}


def register(sub) -> None:
    d = sub.add_parser("devices", help="list Arduino Nano 33 BLE boards found by USB VID/PID")
    d.add_argument("--all", action="store_true", help="also list the other serial ports")
    d.set_defaults(func=cmd_devices)

    c = sub.add_parser("capture", help="capture a frame on the board, enhance it there, score it "
                                       "against the host's float and int8 pipelines")
    add_device_options(c, port_required=True)
    c.add_argument("--out", type=Path, default=None, help="output folder (default captures/<timestamp>)")
    c.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="float reference weights")
    c.add_argument("--camera-dir", type=Path, default=None, help="with --port sim or qemu: image files for the virtual camera")
    c.set_defaults(func=cmd_capture)

    s = sub.add_parser("sim", help="run a virtual board (the firmware core on this machine) on a pseudo-terminal")
    s.add_argument("--camera-dir", type=Path, default=None,
                   help="image files the virtual camera cycles through (default: a synthetic low-light frame)")
    s.set_defaults(func=cmd_sim)

    r = sub.add_parser("device-report", help="instructions per frame, per-op shares, arena, stack and flash of "
                                              "the firmware on the emulated Cortex-M4 (QEMU) with the board's TFLM")
    r.add_argument("--report", type=Path, default=Path("device_report.json"),
                   help="JSON report to write, the markdown beside it (default ./device_report.json; the "
                        "committed one is docs/reports/device/device_report.json)")
    r.add_argument("--artifacts", type=Path, default=None,
                   help="price another quantized network: a `tinymirnet quantize --out DIR` folder "
                        "(default: the network the firmware ships)")
    r.add_argument("--compare", type=Path, nargs="*", default=[], metavar="REPORT",
                   help="earlier device reports (JSON) to set beside this one: instructions and per-op shares "
                        "before and after")
    r.add_argument("--no-cycle-model", action="store_true",
                   help="leave out the cycle estimate (firmware/qemu/cycle_model.c, a QEMU plugin built with "
                        "this machine's C compiler; default: included)")
    r.set_defaults(func=cmd_device_report)

    k = sub.add_parser("bench-link", help="link efficiency, throughput and time per frame on the virtual board")
    k.add_argument("--report", type=Path, default=Path("link_benchmark.json"),
                   help="JSON report, the markdown beside it (the committed one: docs/reports/link/link_benchmark.json)")
    k.add_argument("--frames", type=int, default=5, help="frames to measure (medians are reported)")
    k.add_argument("--port", default="sim", help="sim (default) or a board's serial port")
    k.set_defaults(func=cmd_bench_link)

    w = sub.add_parser("soak", help="capture frames back to back while faults hit the board and its cable "
                                    "(a bad cable, resets, unplugs, a stalled model); report wrong tiles, "
                                    "recoveries, frame times and memory")
    w.add_argument("--port", required=True, help="qemu (every fault kind), sim, or a board's serial port "
                                                 "(link faults; pull the cable by hand for the rest)")
    w.add_argument("--frames", type=int, default=500, help="frames to capture")
    w.add_argument("--faults", default="all", help="comma list of link, reset, unplug, stall; or all "
                                                   "(every kind the port can take)")
    w.add_argument("--seed", type=int, default=0, help="seeds the fault plan and the cable's errors")
    w.add_argument("--report", type=Path, default=Path("soak_report.json"),
                   help="JSON report, the markdown beside it (the committed one: docs/reports/device/soak_report.json)")
    w.add_argument("--board-speed", action="store_true",
                   help="with --port qemu: at about a 64 MHz Cortex-M4's pace (QEMU -icount shift=4,align=on,sleep=on)")
    w.set_defaults(func=cmd_soak)


def cmd_capture(args) -> int:
    from .board_frames import capture
    return run_guarded(capture, args)


def cmd_devices(args) -> int:
    ports = list_serial_ports()
    boards = [p for p in ports if p.is_nano33ble]
    for board in boards:
        print(board.line())
    if args.all:
        for other in (p for p in ports if not p.is_nano33ble):
            print(other.line())
    if not boards:
        print(f"no Arduino Nano 33 BLE found (looked for USB {wanted_ids()} among "
              f"{len(ports)} serial ports); plug it in, or use --port qemu or --port sim for a virtual board")
        return 1
    return 0


def cmd_sim(args) -> int:
    return run_guarded(_sim, args)


def _stop_on_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM stop a served board cleanly, even when the parent process
    started it with those signals blocked or ignored (a supervisor, a background job)."""

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def _sim(args) -> int:
    _stop_on_signals()
    board = VirtualBoard(camera_dir=args.camera_dir).start()
    try:
        info = board.info
        print(board.port, flush=True)
        print(f"virtual board ready on {board.port}: {info.frame_width}x{info.frame_height} "
              f"frames, {info.tile_count} tiles of {info.tile_size} px (halo {info.halo}), model "
              f"{info.model_sha256[:12]}..., camera: {board.camera.sources[0]}"
              + (f" (+{len(board.camera.sources) - 1} more)" if len(board.camera.sources) > 1
                 else ""))
        print(f"use it as a board, e.g. tinymirnet capture --port {board.port}; Ctrl-C stops it",
              flush=True)
        while board.running:
            time.sleep(0.2)
        raise CommandError("the virtual board stopped by itself")
    except KeyboardInterrupt:
        print("virtual board stopped", flush=True)
        return 0
    finally:
        board.stop()


def cmd_device_report(args) -> int:
    try:
        report = device_report(args.report, args.artifacts, cycle_model=not args.no_cycle_model,
                               compare=args.compare)
    except (QemuBoardError, NativeBuildError, DeviceReportError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    ins = report["instructions"]
    cycles = ""
    if c := report.get("cycle_estimate"):
        sec = c["seconds_per_frame_at_64_mhz"]
        cycles = f"; the cycle model: {sec['low']:.1f} to {sec['high']:.1f} s"
    print(f"one frame: {ins['per_frame'] / 1e6:,.1f} M instructions "
          f"({ins['per_frame'] / BOARD_HZ:.1f} s at 64 MHz and one instruction per cycle{cycles}); "
          f"wrote {args.report} and {args.report.with_suffix('.md')}")
    return 0


def cmd_bench_link(args) -> int:
    return run_guarded(_bench_link, args)


def _measured(args) -> dict:
    """When and where a benchmark ran: its report's first keys (after checking --frames)."""
    if args.frames < 1:
        raise CommandError("--frames must be at least 1")
    return {"measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "host": f"{platform.machine()}, Python {platform.python_version()}"}


def _bench_link(args) -> int:
    report = {**_measured(args), **run_benchmark(args.frames, args.port)}
    json_path, md_path = write_report(args.report, report, markdown(report))
    c = report["capture_frame"]
    t = report["tile_traffic"]
    print(f"tile traffic payload efficiency {t['payload_efficiency']:.3f} "
          f"(pixels {t['pixel_efficiency']:.3f}); raw frame read "
          f"{report['throughput']['raw_frame_read']['wire_bytes_per_s'] / 1e6:.2f} MB/s")
    print(f"capture frame: {c['end_to_end_s'] * 1e3:.1f} ms end to end, inference "
          f"{c['inference_s'] * 1e3:.1f} ms, transfer {c['transfer_s'] * 1e3:.1f} ms, host "
          f"{c['host_overhead_s'] * 1e3:.1f} ms; ratio {c['ratio']:.3f} (target <= {TARGET_RATIO})")
    print(f"wrote {json_path} and {md_path}")
    return 0


def cmd_soak(args) -> int:
    return run_guarded(_soak, args)


def _soak(args) -> int:
    stamp = _measured(args)
    kinds = soak.parse_faults(args.faults, args.port)

    walls: list[float] = []

    def progress(record) -> None:
        walls.append(record.wall_s)
        slow = record.wall_s > 1.5 * sorted(walls)[len(walls) // 2]
        if record.hit or slow or (record.index + 1) % 25 == 0:
            print(f"frame {record.index + 1}/{args.frames}: {record.wall_s:.2f} s"
                  + (f", {record.fault}" if record.fault else "")
                  + (f", {record.attempts} attempts" if record.attempts > 1 else "")
                  + (", reset noticed" if record.reset_noticed else "")
                  + (f", {record.wrong_tiles} WRONG TILES" if record.wrong_tiles else "")
                  + (f", link: {record.repairs}" if record.repairs else ""), flush=True)

    report = soak.Soak(args.port, kinds, args.seed, args.board_speed).run(args.frames, progress)
    report.update(stamp, command=f"tinymirnet soak --port {args.port} --frames {args.frames} --faults {args.faults} "
                                 f"--seed {args.seed}{' --board-speed' if args.board_speed else ''} --report {args.report}")
    json_path, md_path = write_report(args.report, report, soak.markdown(report))
    met = soak.targets(report)
    for name, ok in met.items():
        print(f"{'met    ' if ok else 'NOT MET'} {name}")
    print(f"wrote {json_path} and {md_path}")
    hard = ("no wrong tiles", "no hangs", "every fault recovered")
    return 0 if all(met[name] for name in hard) else 1
