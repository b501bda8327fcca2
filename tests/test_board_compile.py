"""Every firmware/src file compiles against the board's real headers (../shared/firmware-deps:
Arduino mbed core 4.5.0 + ArduinoCore-API 1.5.2, Chirale_TensorFlowLite 2.0.0, Arduino_OV767X
0.0.2) with the board's recipe and platformio.ini's flags (tests/board_recipe.py), and any
warning in the project's own files is an error. No stand-in header is used: every header the
glue includes is the real one. What this cannot do is link (libmbed.a is not public) and use the
board's GCC 7.2.1 (this is Debian's arm-none-eabi-g++ 12)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import board_recipe

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "firmware" / "src"
FIRMWARE = ROOT / "firmware"

pytestmark = [
    pytest.mark.skipif(shutil.which("arm-none-eabi-g++") is None,
                       reason="needs arm-none-eabi-g++ (apt-get install gcc-arm-none-eabi)"),
    pytest.mark.skipif(not board_recipe.available(),
                       reason="needs ../shared/firmware-deps beside the repository"),
]


def compile_for_board(source: Path, out_dir: Path, project_file: bool = True) -> str:
    obj = out_dir / (source.name + ".o")
    result = subprocess.run(board_recipe.compile_command(source, obj, project_file=project_file),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{source.name} does not compile for the board:\n{result.stderr}"
    assert obj.stat().st_size > 0
    return result.stderr


def own_warnings(stderr: str) -> list[str]:
    """Diagnostics located in the project's own files (not in Mbed, TFLM or the camera library)."""
    return [line for line in stderr.splitlines()
            if re.match(rf"{re.escape(str(FIRMWARE))}/[^:]+:\d+:\d+: (warning|error)", line)]


@pytest.mark.parametrize("source", sorted(SRC.glob("*.cpp")), ids=lambda p: p.name)
def test_sketch_file_compiles_against_the_real_board_headers(source, tmp_path):
    stderr = compile_for_board(source, tmp_path)
    assert not own_warnings(stderr), "\n".join(own_warnings(stderr))


def test_every_sketch_file_is_covered():
    assert {p.name for p in SRC.glob("*.cpp")} >= {"main.cpp", "arduino_link.cpp",
                                                   "ov7675_camera.cpp", "tflm_model.cpp"}


def test_core_and_model_compile_with_the_board_recipe(tmp_path):
    """The local libraries get platformio.ini's build_flags but not build_src_flags; -Wall
    -Wextra are in the variant's cxxflags anyway."""
    sources = sorted((FIRMWARE / "lib").glob("*/*.cc"))
    assert len(sources) >= 7
    for source in sources:
        stderr = compile_for_board(source, tmp_path, project_file=False)
        assert not own_warnings(stderr), "\n".join(own_warnings(stderr))


def test_camera_library_compiles_with_the_projects_flags(tmp_path):
    """platformio.ini's build_flags reach the libraries too: they must not break them (gnu++17
    did: <chrono>'s two-argument abs() against Arduino.h's abs macro in OV767X.cpp)."""
    compile_for_board(board_recipe.DEPS / "Arduino_OV767X" / "src" / "OV767X.cpp", tmp_path,
                      project_file=False)


def test_core_headers_cannot_shadow_mbed_headers():
    """Mbed's HAL includes "device.h", Cordio "crc32.h", Nanostack "protocol.h": a library
    folder on -I is searched first, so the core's headers live under a tinymirnet/ prefix."""
    for lib in (FIRMWARE / "lib").iterdir():
        loose = sorted(p.name for p in lib.glob("*.h"))
        assert not loose, f"{lib.name} has headers outside tinymirnet/: {loose}"
        assert (lib / "tinymirnet").is_dir()


def test_recipe_reads_its_flags_from_platformio_ini(tmp_path):
    command = board_recipe.compile_command(SRC / "main.cpp", tmp_path / "x.o")
    ini = (ROOT / "platformio.ini").read_text()
    assert "-O2" in command and "-Os" not in command  # build_flags / build_unflags
    assert any(a.startswith("-DTINYMIRNET_FIRMWARE_VERSION=") for a in command)
    assert "-mfloat-abi=softfp" in command  # boards.txt, as libmbed.a is built
    assert "build_unflags" in ini and "-Os" in ini.split("build_unflags", 1)[1].split("build_flags")[0]
