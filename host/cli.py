"""The `tinymirnet` command line: one subcommand per step of the pipeline. Each command group
registers its own commands (`register(subparsers)` in host/*_commands.py); this module builds the
parser and is the one error boundary."""
from __future__ import annotations

import argparse
import sys

from tinymirnet.model.data import DataError

from . import device_commands, model_commands, naturalness_commands, quantize_commands
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
    for commands in (model_commands, quantize_commands, device_commands, naturalness_commands):
        commands.register(sub)
    return p


def _error_text(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return str(e)


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        precheck(args)
        if args.command not in device_commands.NO_TENSORFLOW:
            from tinymirnet.model import import_tensorflow_quietly
            import_tensorflow_quietly()
        return args.func(args)
    except (UsageError, DataError, FileNotFoundError, FileExistsError, NotADirectoryError,
            IsADirectoryError, PermissionError) as e:
        print(f"error: {_error_text(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
