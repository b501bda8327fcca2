"""Where the shipped artifacts live inside the package (importing this is cheap)."""
from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parent
WEIGHTS_DIR = MODEL_DIR / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "tiny_mirnet.weights.h5"
