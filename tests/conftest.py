"""Shared fixtures: small synthetic LoL-layout folders (tests never read the real dataset)."""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def pytest_addoption(parser):
    parser.addoption("--port", default=None,
                     help="serial port of a board for the hardware-in-loop tests (-m hil), 'qemu' (the "
                          "firmware on an emulated Cortex-M4) or 'sim' (the firmware core on this machine)")


def scene(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth, textured, well-exposed RGB scene as uint8."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([0.5 + 0.4 * np.sin(6 * x + c) * np.cos(4 * y - c) for c in range(3)], axis=-1)
    base += rng.normal(0, 0.03, base.shape)
    return np.clip(base * 255, 0, 255).astype(np.uint8)


def darken(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round((img / 255.0) ** 2 * 0.25 * 255), 0, 255).astype(np.uint8)


def make_lol(root: Path, split: str, n: int, h: int = 64, w: int = 96, seed: int = 0,
             low_ext: str = ".png", high_ext: str = ".png") -> Path:
    rng = np.random.default_rng(seed)
    (root / split / "low").mkdir(parents=True, exist_ok=True)
    (root / split / "high").mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        high = scene(rng, h, w)
        Image.fromarray(darken(high)).save(root / split / "low" / f"{i}{low_ext}")
        Image.fromarray(high).save(root / split / "high" / f"{i}{high_ext}")
    return root


@pytest.fixture
def lol_root(tmp_path) -> Path:
    """our485 (12 pairs) + eval15 (3 pairs) of small synthetic images."""
    make_lol(tmp_path / "LOL", "our485", 12, seed=1)
    make_lol(tmp_path / "LOL", "eval15", 3, seed=2)
    return tmp_path / "LOL"


# --------------------------------------------------------------------------------------------
# Device tests (tests/test_virtual_board.py, tests/test_hil.py)


@pytest.fixture(scope="session")
def hil_port(request) -> str:
    """The port the hardware-in-loop tests run against: `--port PORT` (a serial port, 'qemu'
    or 'sim'). `pytest -m hil` without --port skips them (there is no
    board to guess); a run that did not select them with -m (plain `pytest`, CI) runs them
    against the virtual board."""
    port = request.config.getoption("--port")
    if port:
        return port
    markexpr = (request.config.getoption("markexpr") or "").replace("not hil", "")
    if "hil" in markexpr:
        pytest.skip("give --port PORT (a serial port, qemu or sim)")
    return "sim"


@pytest.fixture(scope="session")
def small_float_weights(tmp_path_factory) -> Path:
    """A small float network (channels=4, untrained) saved with its config: the float
    reference of the device tests, which must not depend on the shipped weights."""
    import tf_keras as keras
    from tinymirnet.model.network import MirnetConfig, build_mirnet
    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("float_weights")
    cfg = MirnetConfig(channels=4)
    path = folder / "small.weights.h5"
    build_mirnet(cfg).save_weights(str(path))
    (folder / "small.json").write_text(cfg.to_json())
    return path
