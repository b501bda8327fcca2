"""The `tinymirnet` command line: one subcommand per step of the pipeline. Each room registers
its own commands (host/model_commands.py, host/quantize_commands.py, the device commands below,
host/naturalness_cli.py); this module builds the parser and is the one error boundary."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tinymirnet.model.paths import DEFAULT_WEIGHTS

from . import model_commands, naturalness_cli, quantize_commands
from .checks import UsageError, precheck


class _Parser(argparse.ArgumentParser):
    """A command-line mistake is one line starting with `error:` and exit code 1, like every
    other ordinary mistake (argparse's own is the usage text and exit code 2)."""

    def error(self, message):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


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
    p = _Parser(prog="tinymirnet", formatter_class=_DefaultsFormatter,
                description="Low-light image enhancement with a tiny MIRNet on an Arduino Nano 33 BLE "
                            "Sense: train, quantize, run on a board (or the qemu/sim boards), score. "
                            "`tinymirnet COMMAND --help` for each command.")
    p.add_argument("--version", action="version", version=f"tinymirnet {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_parser = sub.add_parser
    sub.add_parser = lambda *a, **k: add_parser(*a, formatter_class=_DefaultsFormatter, **k)
    model_commands.register(sub)
    quantize_commands.register(sub)
    register_device_commands(sub)
    naturalness_cli.add_parser(sub)
    return p


def register_device_commands(sub) -> None:
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

    r = sub.add_parser("device-report", help="instructions per frame, per-op shares, arena, stack and flash of "
                                              "the firmware on the emulated Cortex-M4 (QEMU) with the board's TFLM")
    r.add_argument("--report", type=Path, default=Path("device_report.json"),
                   help="JSON report to write, the markdown beside it (default ./device_report.json; the "
                        "committed one is firmware/reports/device_report.json)")
    r.add_argument("--artifacts", type=Path, default=None,
                   help="price another quantized network: a `tinymirnet quantize --out DIR` folder "
                        "(default: the network the firmware ships)")
    r.add_argument("--compare", type=Path, nargs="*", default=[], metavar="REPORT",
                   help="earlier device reports (JSON) to set beside this one: instructions and per-op shares "
                        "before and after")
    r.add_argument("--no-cycle-model", action="store_true",
                   help="leave out the cycle estimate (firmware/qemu/cycle_model.c, a QEMU plugin built with "
                        "this machine's C compiler; default: included)")
    r.set_defaults(func=lambda a: __import__("tinymirnet.host.device_report", fromlist=["x"]).cmd_device_report(a))

    k = sub.add_parser("bench-link", help="link efficiency, throughput and time per frame on the virtual board")
    k.add_argument("--report", type=Path, default=Path("link_benchmark.json"),
                   help="JSON report, the markdown beside it (the committed one: host/reports/link_benchmark.json)")
    k.add_argument("--frames", type=int, default=5, help="frames to measure (medians are reported)")
    k.add_argument("--port", default="sim", help="sim (default) or a board's serial port")
    k.set_defaults(func=_bench_link)


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


def _error_text(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return str(e)


def main(argv=None) -> int:
    from tinymirnet.model.data import DataError
    try:
        args = build_parser().parse_args(argv)
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
