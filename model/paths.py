"""Where things live: the repository's folders, the shipped artifacts and the file names every
room agrees on. The one paths module of the project (importing it is cheap: no TensorFlow)."""
from __future__ import annotations

from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parent
REPO_ROOT = MODEL_DIR.parent  # the checkout (the package is installed with `pip install -e .`)
WEIGHTS_DIR = MODEL_DIR / "weights"
# The shipped network: the tiny MIRNet with its MRB at half resolution (design
# "mrb_half_resolution", model/network.py) and a frame context (attention from a thumbnail of
# the whole frame, two int8 models on the board). The alternative without streams
# (weights/tiny_mirnet_half_resolution.*, its int8 models in quantize/artifacts/half_resolution)
# and the textbook tiny MIRNets are kept for the studies and reports made with them: at full
# resolution with frame context (MIRNET_WEIGHTS, the distillation teacher) and with attention per
# tile (PER_TILE_WEIGHTS: tiling study, budget sweep, quantize/artifacts/per_tile_attention).
DEFAULT_WEIGHTS = WEIGHTS_DIR / "tiny_mirnet_mrb_half_resolution.weights.h5"
MIRNET_WEIGHTS = WEIGHTS_DIR / "tiny_mirnet_frame_context.weights.h5"
PER_TILE_WEIGHTS = WEIGHTS_DIR / "tiny_mirnet.weights.h5"

# A `tinymirnet quantize --out DIR` folder holds the (tile) model and, for a frame-context
# network, the context model beside it; the shipped one is ARTIFACTS_DIR.
INT8_NAME = "tiny_mirnet_int8.tflite"
CONTEXT_INT8_NAME = "tiny_mirnet_context_int8.tflite"
ARTIFACTS_DIR = REPO_ROOT / "quantize" / "artifacts"
DEFAULT_INT8_MODEL = ARTIFACTS_DIR / INT8_NAME

# The firmware and what is built from it on this machine (quantize/native_build.py builds them).
FIRMWARE_DIR = REPO_ROOT / "firmware"
FIRMWARE_BUILD_DIR = FIRMWARE_DIR / "build"
FIRMWARE_MODEL_DIR = FIRMWARE_DIR / "lib" / "tinymirnet_model"  # the shipped model as C arrays
SIM_LIBRARY = FIRMWARE_DIR / "tests" / "build" / "libtinymirnet_sim.so"  # the virtual board
QEMU_DIR = FIRMWARE_DIR / "qemu"  # the emulated Cortex-M4 board's sources and Makefile
QEMU_BUILD_DIR = FIRMWARE_BUILD_DIR / "qemu"
TFLM_DIR = FIRMWARE_DIR / "tflm"  # the board's TFLM built for this machine and for the M4
BOARD_TFLM_LIB = FIRMWARE_BUILD_DIR / "tflm" / "host" / "libtinymirnet_tflm.so"
# The exact library sources platformio.ini pins, beside the checkout (never copied into it).
FIRMWARE_DEPS = REPO_ROOT.parent / "shared" / "firmware-deps"


def config_path_for(weights: str | Path) -> Path:
    """The network config saved beside a weights file: x.weights.h5 -> x.json."""
    weights = Path(weights)
    return weights.with_name(weights.name.split(".")[0] + ".json")
