"""The wheel a user installs: it carries every weights file's network config (a weights file
without one is refused at load), the int8 models the commands default to, and not the
historical stage weights."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_carries_the_configs_of_its_weights(tmp_path):
    source = tmp_path / "src"
    # A clean copy of the tracked files: no build/ or egg-info left by other builds.
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True,
                           check=True).stdout.split()
    for name in files:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(source)], check=True, timeout=600)
    wheel = next((tmp_path / "dist").glob("tinymirnet-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    weights = sorted(n for n in names if n.endswith(".weights.h5"))
    assert "tinymirnet/model/weights/tiny_mirnet_mrb_half_resolution.weights.h5" in weights  # the shipped network
    assert "tinymirnet/model/weights/tiny_mirnet_half_resolution.weights.h5" in weights  # the alternative
    for w in weights:
        assert w.replace(".weights.h5", ".json") in names, f"{w} without its network config"
    assert not any("stage" in n or "part1" in n for n in names), sorted(n for n in names if "stage" in n)
    for needed in ("tinymirnet/model/tiling.json", "tinymirnet/quantize/artifacts/tiny_mirnet_int8.tflite",
                   "tinymirnet/quantize/artifacts/tiny_mirnet_context_int8.tflite",
                   "tinymirnet/quantize/artifacts/half_resolution/tiny_mirnet_int8.tflite",
                   "tinymirnet/quantize/artifacts/half_resolution/tiny_mirnet_context_int8.tflite",
                   "tinymirnet/model/samples/coffee.png"):
        assert needed in names
