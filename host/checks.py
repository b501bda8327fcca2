"""The CLI's checks that need no model: run before TensorFlow loads, so that an ordinary mistake
costs no wait and is one `error:` line."""
from __future__ import annotations

import os
from pathlib import Path

from tinymirnet.model.data import find_pairs, resolve_split
from tinymirnet.model.paths import REPO_ROOT, config_path_for
from tinymirnet.quantize.tflm import load_tile_model


class UsageError(Exception):
    """An ordinary mistake in the command line, worded as the one line the user sees."""


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


def check_output_dir(path: Path, what: str) -> None:
    """A folder the command may create or write into: not an existing file, and a parent that exists
    or can be created and is writable. Checked before any model is loaded."""
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


def _check_weights(path: Path | None, flag: str = "--weights") -> None:
    if path is None:
        return
    _check_input_file(path, flag)
    config = config_path_for(path)
    if not config.is_file():
        raise UsageError(f"{flag} {path}: its network config {config} is missing (the weights alone do not "
                         f"say which network they are for)")


def precheck(args) -> None:
    """The checks that need no model: done before TensorFlow loads, so a mistake costs no wait."""
    command = args.command
    if command in ("train",) and not args.resume and args.data is None:
        raise UsageError("train needs --data (the LoL root, with our485/ or our450/)")
    if getattr(args, "data", None) is not None and not Path(args.data).is_dir():
        raise UsageError(f"--data {args.data}: no such folder")
    split = {"eval": "eval", "tiling-study": "eval", "quantize": "train", "train": "train"}.get(command)
    if getattr(args, "split", None) == "val":  # eval --split val reads the training pairs
        split = "train"
    if split and getattr(args, "data", None) is not None:
        find_pairs(resolve_split(args.data, split))  # DataError: no such split, or no pairs in it
    for name in ("weights", "init"):
        if command in ("enhance", "eval", "capture", "quantize", "tiling-study", "naturalness", "train") or name == "init":
            _check_weights(getattr(args, name, None))
    if command == "train":
        _check_weights(args.teacher, "--teacher")
        if not 0.0 < args.teacher_weight <= 1.0:
            raise UsageError(f"--teacher-weight {args.teacher_weight:g} is outside (0, 1]")
    if command == "naturalness" and args.darker_than is not None and not 0 < args.darker_than <= 256:
        raise UsageError(f"--darker-than {args.darker_than:g} is outside 0..256 (a mean 8-bit value)")
    _check_tflite(getattr(args, "int8", None))
    if command == "enhance":
        check_output_dir(args.out, "--out")
    if command == "capture" and args.out is not None:
        check_output_dir(args.out, "--out")


def load_int8(path: Path, tiling):
    """The --int8 tile model on TFLM, checked against the tiling; a bad file is one error line."""
    try:
        return load_tile_model(path, tiling.tile, tiling.halo)
    except ValueError as e:  # missing, unreadable, not a TFLite model, wrong input size
        raise UsageError(str(e)) from None
