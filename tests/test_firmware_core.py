"""Builds and runs the firmware core's unit tests: on the host (g++ with sanitizers) and
cross-compiled for Cortex-M4 under QEMU (mps2-an386)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parents[1] / "firmware" / "tests"
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$", re.MULTILINE)


def run_make(target: str) -> subprocess.CompletedProcess:
    # One job at a time (no -j): the machine may be busy training.
    return subprocess.run(["make", "-C", str(TESTS_DIR), target], capture_output=True,
                          text=True, timeout=600)


def summary_of(result: subprocess.CompletedProcess) -> tuple[int, int]:
    output = result.stdout + result.stderr  # QEMU prints semihosting output on stderr
    match = SUMMARY.search(output)
    assert match, f"no 'N passed, N failed' line:\n{output}"
    return int(match.group(1)), int(match.group(2))


def test_host_unit_tests_pass():
    result = run_make("host")
    assert result.returncode == 0, result.stdout + result.stderr
    passed, failed = summary_of(result)
    assert failed == 0 and passed > 100


def export_per_tile_attention(folder: Path) -> Path:
    """The firmware model files of the per-tile-attention network (one model, committed in
    quantize/artifacts/per_tile_attention), beside the shipped frame-context export."""
    from tinymirnet.quantize.export import export_info_from_artifacts, write_firmware_files
    artifacts = TESTS_DIR.parents[1] / "quantize" / "artifacts" / "per_tile_attention"
    folder.mkdir(parents=True, exist_ok=True)
    # Quantized for its own tiling (20 + 2 x 4), which its export carries into model_settings.h.
    write_firmware_files(export_info_from_artifacts(artifacts), folder)
    return folder


def test_host_unit_tests_pass_with_a_one_model_export(tmp_path):
    """The core is built for the exported network's kind (model_settings.h kFrameContext):
    its tests pass for the other kind too."""
    model_dir = export_per_tile_attention(tmp_path / "model")
    assert "kFrameContext = false" in (model_dir / "tinymirnet" / "model_settings.h").read_text()
    result = subprocess.run(["make", "-C", str(TESTS_DIR), "host", f"MODEL_DIR={model_dir}",
                             f"BUILD={tmp_path / 'build'}"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    passed, failed = summary_of(result)
    assert failed == 0 and passed > 100


needs_arm = pytest.mark.skipif(
    shutil.which("arm-none-eabi-g++") is None or shutil.which("qemu-system-arm") is None,
    reason="needs arm-none-eabi-g++ and qemu-system-arm for the Cortex-M4 build")


@needs_arm
def test_cortex_m4_unit_tests_pass_under_qemu():
    result = run_make("qemu")
    assert result.returncode == 0, result.stdout + result.stderr
    passed, failed = summary_of(result)
    assert failed == 0 and passed > 100


@needs_arm
def test_failing_check_makes_qemu_exit_nonzero():
    result = run_make("qemu-forced-failure")  # the target itself requires a nonzero exit
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary_of(result)[1] == 1
    assert "QEMU exit code with a failing check: 1" in result.stdout
