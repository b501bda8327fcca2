"""Where the shipped artifacts live inside the package (importing this is cheap)."""
from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parent
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


def config_path_for(weights: str | Path) -> Path:
    """The network config saved beside a weights file: x.weights.h5 -> x.json."""
    weights = Path(weights)
    return weights.with_name(weights.name.split(".")[0] + ".json")
