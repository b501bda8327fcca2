"""Atomic file writes: a file is written next to its destination under a temporary name and
renamed into place, so a crash never leaves a half-written output (or clobbers a good one)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Calls write(tmp_path) and renames tmp_path to path once it has returned."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file ordinary permissions
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def atomic_write_json(path: str | Path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_save_image(img, path: str | Path) -> Path:
    """Saves a PIL image; the format comes from the destination's suffix."""
    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), "PNG")
    return atomic_write(path, lambda p: img.save(p, format=fmt))


def atomic_save_weights(model, path: str | Path) -> Path:
    """Keras save_weights through a temporary name that keeps the .weights.h5 suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    model.save_weights(str(tmp))
    os.replace(tmp, path)
    return path


def unique_stem(stem: str, used: set[str]) -> str:
    """`stem`, or `stem_2`, `stem_3`, ... : the first not in `used` (which it joins). Two inputs
    with one stem (a/1.bmp, b/1.jpg) never write one output."""
    name, n = stem, 2
    while name in used:
        name, n = f"{stem}_{n}", n + 1
    used.add(name)
    return name


def report_path(path: str | Path) -> str:
    """A path as reports record it: relative to the current folder (no machine paths)."""
    return os.path.relpath(Path(path).resolve(), Path.cwd().resolve())


TOOLS = ("tensorflow", "tf_keras", "tensorflow-model-optimization", "tflite-micro", "numpy", "pillow")


def provenance(inputs: dict[str, str | Path] | None = None) -> dict:
    """What a report was computed with: the git commit of the code, the versions of the tools,
    and the SHA-256 of each input file."""
    from importlib.metadata import PackageNotFoundError, version
    tools = {}
    for name in TOOLS:
        try:
            tools[name] = version(name)
        except PackageNotFoundError:
            tools[name] = None
    try:
        commit = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        commit = None
    files = {name: hashlib.sha256(Path(p).read_bytes()).hexdigest()
             for name, p in (inputs or {}).items() if p is not None and Path(p).is_file()}
    return {"git_commit": commit, "tools": tools, "inputs_sha256": files}


def write_report(path: str | Path, report: dict, markdown: str) -> tuple[Path, Path]:
    """The one way a report is written: REPORT.json and its markdown twin REPORT.md beside it,
    each atomically (a failure leaves neither half-written); the JSON goes last, so that a reader
    who finds it finds the markdown too."""
    path = Path(path).with_suffix(".json")
    md = atomic_write_text(path.with_suffix(".md"), markdown)
    return atomic_write_json(path, report), md
