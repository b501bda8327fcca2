"""Static checks of the Arduino side of the firmware: platformio.ini, the glue in firmware/src and
its agreement with the generated model library, plus Cortex-M4 compiles.

Nothing here downloads anything: the PlatformIO registry is not needed. The glue's compile against
the board's real headers is tests/test_board_compile.py; the QEMU run of the core's unit tests is
tests/test_firmware_core.py.
"""
from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tinymirnet.quantize.export import RESOLVER_METHODS

ROOT = Path(__file__).resolve().parents[1]
INI = ROOT / "platformio.ini"
SRC = ROOT / "firmware" / "src"
CORE = ROOT / "firmware" / "lib" / "tinymirnet_core"
MODEL = ROOT / "firmware" / "lib" / "tinymirnet_model"

EXACT_VERSION = r"\d+\.\d+\.\d+"
ARM_CXX = shutil.which("arm-none-eabi-g++")
ARM_FLAGS = ["-std=c++14", "-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard",
             "-fno-exceptions", "-fno-rtti", "-Wall", "-Wextra", "-Werror"]
needs_arm = pytest.mark.skipif(
    ARM_CXX is None, reason="arm-none-eabi-g++ is not installed (apt-get install gcc-arm-none-eabi)")


def read_ini() -> configparser.ConfigParser:
    config = configparser.ConfigParser(interpolation=None)
    with INI.open() as f:
        config.read_file(f)
    return config


def multiline(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


def glue_sources() -> dict[Path, str]:
    files = sorted(p for p in SRC.iterdir() if p.suffix in {".h", ".hpp", ".c", ".cc", ".cpp", ".ino"})
    assert files, f"no sources in {SRC}"
    return {p: p.read_text() for p in files}


def strip_comments_and_strings(code: str) -> str:
    code = re.sub(r"/\*.*?\*/", " ", code, flags=re.DOTALL)
    code = re.sub(r"//[^\n]*", " ", code)
    code = re.sub(r'"(?:\\.|[^"\\\n])*"', '""', code)
    return re.sub(r"'(?:\\.|[^'\\\n])*'", "''", code)


# ------------------------------------------------------------------------------------------
# platformio.ini


def test_platformio_ini_has_the_nano33ble_env_with_exact_pins():
    config = read_ini()
    assert config.get("platformio", "src_dir") == "firmware/src"
    assert config.get("platformio", "lib_dir") == "firmware/lib"
    for key in ("src_dir", "lib_dir"):
        assert (ROOT / config.get("platformio", key)).is_dir(), key

    env = config["env:nano33ble"]
    assert env["board"] == "nano33ble"
    assert env["framework"] == "arduino"
    assert env["monitor_speed"] == "115200"
    assert re.fullmatch(rf"(platformio/)?nordicnrf52\s*@\s*{EXACT_VERSION}", env["platform"]), \
        env["platform"]

    deps = multiline(env["lib_deps"])
    assert len(deps) >= 2
    for dep in deps:
        assert re.fullmatch(rf"[\w.-]+/[\w.-]+\s*@\s*{EXACT_VERSION}", dep), \
            f"lib_deps entry not pinned to an exact version: {dep!r}"
    names = {dep.split("@")[0].strip().lower() for dep in deps}
    assert "arduino-libraries/arduino_ov767x" in names
    assert any("tensorflow" in name for name in names)


def test_build_flags_keep_the_cores_cxx14_and_define_the_firmware_version():
    env = read_ini()["env:nano33ble"]
    flags = multiline(env["build_flags"])
    # gnu++17 breaks Arduino_OV767X against Arduino.h's abs macro (tests/test_board_compile.py).
    assert not any(f.startswith("-std=") for f in flags)
    assert not any(f.startswith("-std=") for f in multiline(env.get("build_unflags", "")))
    version = [f for f in flags if f.startswith("-DTINYMIRNET_FIRMWARE_VERSION=")]
    assert len(version) == 1 and re.fullmatch(r'-DTINYMIRNET_FIRMWARE_VERSION=\\"[^"\\]+\\"',
                                              version[0]), version
    # The float ABI comes from the precompiled Mbed core; overriding it would break the link.
    assert not any("float-abi" in f for f in flags)


# ------------------------------------------------------------------------------------------
# The glue registers exactly the generated ops


def generated_ops() -> list[str]:
    text = (MODEL / "tinymirnet" / "model_settings.h").read_text()
    count = int(re.search(r"constexpr int kModelOpCount = (\d+);", text).group(1))
    listing = re.search(r"kModelOps\[kModelOpCount\] = \{([^}]*)\}", text).group(1)
    ops = re.findall(r'"([A-Z0-9_]+)"', listing)
    assert len(ops) == count
    return ops


def registered_methods() -> list[str]:
    text = (MODEL / "tinymirnet" / "model_ops.h").read_text()
    assert "MicroMutableOpResolver<kModelOpCount>" in text
    return re.findall(r"resolver\.(Add\w+)\(\)", text)


def test_model_ops_h_registers_kModelOps_one_to_one():
    ops, methods = generated_ops(), registered_methods()
    assert len(set(ops)) == len(ops) and len(set(methods)) == len(methods)
    unknown = [op for op in ops if op not in RESOLVER_METHODS]
    assert not unknown, f"ops without a resolver method: {unknown}"
    assert methods == [RESOLVER_METHODS[op] for op in ops]


def test_glue_uses_RegisterModelOps_and_no_resolver_Add_calls():
    sources = {p: strip_comments_and_strings(t) for p, t in glue_sources().items()}
    code = "\n".join(sources.values())
    assert re.search(r"\bRegisterModelOps\s*\(\s*\w+\s*\)", code)
    assert re.search(r"\bModelOpResolver\b", code)
    direct = re.findall(r"(?:\.|->)\s*(Add[A-Z]\w*)\s*\(", code)
    assert not direct, f"firmware/src registers ops itself: {direct}; use RegisterModelOps()"
    assert "AllOpsResolver" not in code and "MicroMutableOpResolver" not in code


# ------------------------------------------------------------------------------------------
# Static memory


def test_tensor_arena_is_static_aligned_and_sized_by_kArenaSize():
    code = "\n".join(strip_comments_and_strings(t) for t in glue_sources().values())
    arenas = re.findall(r"alignas\(\s*16\s*\)\s*(?:static\s+)?uint8_t\s+(\w+)\s*\[\s*kArenaSize\s*\]",
                        code)
    assert len(arenas) == 1, "expected one `alignas(16) uint8_t name[kArenaSize]`"
    assert re.search(rf"\b{arenas[0]}\s*,\s*kArenaSize\b", code), "interpreter not given the arena"


def test_glue_uses_no_heap():
    # Placement new (`new (storage) T(...)`: the interpreter created in static storage) is
    # not heap use; any other new is.
    for path, text in glue_sources().items():
        code = re.sub(r"^\s*#\s*include[^\n]*", " ", strip_comments_and_strings(text), flags=re.M)
        for pattern in (r"\b(malloc|calloc|realloc|free|aligned_alloc)\s*\(", r"\bnew\b(?!\s*\()",
                        r"\bnothrow\b", r"\bdelete\b",
                        r"\bstd::(vector|string|map|unique_ptr|shared_ptr)\b", r"\bString\b"):
            found = re.search(pattern, code)
            assert not found, f"{path.name}: heap use {found.group(0)!r}"


def test_glue_text_is_ascii():
    # Banner text goes to the same port as the binary frames: it must never contain 0xA5.
    for path in SRC.iterdir():
        assert path.read_bytes().isascii(), path.name


# ------------------------------------------------------------------------------------------
# Cortex-M4 compiles


def arm_compile(source: Path, out_dir: Path, *extra: str) -> None:
    obj = out_dir / (source.stem + ".o")
    result = subprocess.run([ARM_CXX, *ARM_FLAGS, *extra, "-c", str(source), "-o", str(obj)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{source}:\n{result.stderr}"
    assert obj.stat().st_size > 0


@needs_arm
def test_core_and_model_sources_compile_for_cortex_m4(tmp_path):
    sources = sorted(CORE.glob("*.cc")) + sorted(MODEL.glob("*.cc"))
    assert len(sources) >= 2
    for source in sources:  # one at a time: the machine may be busy training
        arm_compile(source, tmp_path, f"-I{CORE}", f"-I{MODEL}")
