"""The one way native code is built on this machine: `make` in a firmware folder, rerun when its
output is missing or older than a source. Used for the virtual board's library
(firmware/tests), the QEMU board's ELFs (firmware/qemu) and the board's TFLM built for this
machine (firmware/tflm)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

APT_HINT = {"g++": "apt-get install build-essential", "make": "apt-get install make",
            "arm-none-eabi-g++": "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi "
                                 "libstdc++-arm-none-eabi-newlib"}


class NativeBuildError(RuntimeError):
    """A native build cannot run or failed; the message says which command and what to do."""


def run_make(folder: Path, targets: tuple[str, ...], variables: dict | None = None, *,
             tools: tuple[str, ...] = ("make", "g++"), jobs: int | None = None,
             timeout: float = 1800) -> None:
    """`make -C FOLDER TARGETS [NAME=value ...]`; one NativeBuildError naming the command and
    the last lines of its output when it fails."""
    for tool in tools:
        if shutil.which(tool) is None:
            raise NativeBuildError(f"building {folder.name} needs {tool}: {APT_HINT.get(tool, 'install it')}")
    settings = [f"{name}={value}" for name, value in (variables or {}).items()]
    command = ["make", "-s", *([f"-j{jobs}"] if jobs else []), "-C", str(folder), *targets, *settings]
    shown = f"make -C {folder.relative_to(folder.parents[1])} {' '.join([*targets, *settings])}"
    try:
        build = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise NativeBuildError(f"`{shown}` ran past {timeout:.0f} s") from None
    if build.returncode != 0:
        tail = (build.stdout + build.stderr).strip().splitlines()[-15:]
        raise NativeBuildError(f"`{shown}` failed:\n" + "\n".join(tail))


def files_under(*folders: Path) -> list[Path]:
    """Every file below the folders that exist (the sources a target is rebuilt from)."""
    return [p for d in folders if d.is_dir() for p in d.rglob("*") if p.is_file()]


def ensure_built(output: Path, folder: Path, target: str, sources: list[Path] | None, *,
                 tools: tuple[str, ...] = ("make", "g++"), jobs: int | None = None) -> Path:
    """OUTPUT, built with `make -C FOLDER TARGET` when it is missing or, given `sources`, older
    than any of them (without sources: built once)."""
    if not (folder / "Makefile").is_file():
        raise NativeBuildError(f"{output.name} is built from the repository checkout, but {folder} is "
                               f"missing: install tinymirnet from a git clone with `pip install -e .`")
    if output.is_file() and (not sources or output.stat().st_mtime >= max(p.stat().st_mtime for p in sources)):
        return output
    run_make(folder, (target,), tools=tools, jobs=jobs)
    if not output.is_file():
        raise NativeBuildError(f"`make -C {folder} {target}` made no {output}")
    return output
