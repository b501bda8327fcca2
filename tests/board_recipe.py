"""The board's compile recipe for one sketch file, built from the sources platformio.ini pins
(../shared/firmware-deps): the Arduino mbed core's `recipe.cpp.o.pattern` for `nano33ble`
(platform.txt, boards.txt, the variant's defines.txt / cxxflags.txt / includes.txt) with the
flags platformio.ini removes (build_unflags) and adds (build_flags, and build_src_flags for the
project's own files), all read from the files themselves, never retyped.

The compiler is this machine's arm-none-eabi-g++ (Debian's 12); the board's is GCC 7.2.1.
"""
from __future__ import annotations

import configparser
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEPS = ROOT.parent / "shared" / "firmware-deps"
CORE = DEPS / "ArduinoCore-mbed"
VARIANT = CORE / "variants" / "ARDUINO_NANO33BLE"
CORE_PATH = CORE / "cores" / "arduino"
# Each library's src folder, as the Arduino builder and PlatformIO add them (-I).
LIBRARY_DIRS = [
    DEPS / "Chirale_TensorFlowLite" / "src",
    DEPS / "Arduino_OV767X" / "src",
    CORE / "libraries" / "Wire",
    ROOT / "firmware" / "lib" / "tinymirnet_core",
    ROOT / "firmware" / "lib" / "tinymirnet_model",
]


def available() -> bool:
    return (VARIANT / "defines.txt").is_file() and (DEPS / "Chirale_TensorFlowLite").is_dir()


def _ini_list(env: configparser.SectionProxy, key: str) -> list[str]:
    # platformio.ini values are shell-like: -DNAME=\"text\" keeps its quotes for the compiler.
    return [word for line in env.get(key, "").splitlines() for word in shlex.split(line)]


def _board(key: str) -> str:
    for line in (CORE / "boards.txt").read_text().splitlines():
        if line.startswith(f"nano33ble.{key}="):
            return line.split("=", 1)[1]
    raise KeyError(key)


def _response_file(name: str) -> list[str]:
    # gcc reads @file arguments shell-like: -DX=\\"cmsis_nvic.h\\" means -DX="cmsis_nvic.h".
    return shlex.split((VARIANT / name).read_text())


def compile_command(source: Path, output: Path, compiler: str = "arm-none-eabi-g++",
                    project_file: bool = True, model_dir: Path | None = None) -> list[str]:
    """The argument list that compiles `source` as PlatformIO would for env:nano33ble;
    `model_dir` stands in for firmware/lib/tinymirnet_model (another export)."""
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "platformio.ini")
    env = config["env:nano33ble"]
    unflags = set(_ini_list(env, "build_unflags"))
    flags = ["-c", "-g3", "-nostdlib", *_response_file("defines.txt"),
             *_response_file("cxxflags.txt"), "-MMD", f"-mcpu={_board('build.mcu')}",
             _board("build.float-abi"), _board("build.fpu"),
             "-DARDUINO=10607", f"-D{_board('build.board')}",
             "-DARDUINO_ARCH_NRF52840", "-DARDUINO_ARCH_MBED"]
    flags = [f for f in flags if f not in unflags and f != "-c"]
    flags += _ini_list(env, "build_flags")
    if project_file:
        flags += _ini_list(env, "build_src_flags")
    libraries = [model_dir if model_dir and d.name == "tinymirnet_model" else d for d in LIBRARY_DIRS]
    includes = [f"-I{CORE_PATH}", f"-I{VARIANT}", *(f"-I{d}" for d in libraries),
                f"-I{CORE_PATH / 'api' / 'deprecated'}",
                f"-I{CORE_PATH / 'api' / 'deprecated-avr-comp'}", f"-iprefix{CORE_PATH}",
                *_response_file("includes.txt")]
    return [compiler, "-c", *flags, *includes, str(source), "-o", str(output)]
