"""The budget sweep: network size x tiling candidates, each converted to int8 and loaded in TFLM
to measure what it costs on the Nano (parameters, flash, arena, MACs per tile and per frame).
Quality (int8 tiled PSNR on eval15) is filled in for the candidates that have trained weights.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from tinymirnet.model.network import MirnetConfig, build_mirnet, conv_macs, count_params
from tinymirnet.model.tiling import tile_grid

from .budget import Measured, budget_violations
from .convert import convert_int8, synthetic_tiles
from .tflm import measure_arena


@dataclass(frozen=True)
class Candidate:
    channels: int
    growth: float
    tile: int
    halo: int

    @property
    def model_config(self) -> MirnetConfig:
        return MirnetConfig(channels=self.channels, growth=self.growth)

    @property
    def input_size(self) -> int:
        return self.tile + 2 * self.halo

    def label(self) -> str:
        streams = "/".join(str(c) for c in self.model_config.stream_channels())
        return f"C{streams} tile {self.tile}+2x{self.halo}"


DEFAULT_CANDIDATES = [
    Candidate(8, 1.0, 20, 4),
    Candidate(8, 1.0, 24, 4),
    Candidate(8, 1.0, 16, 6),
    Candidate(8, 1.0, 12, 8),
    Candidate(8, 1.0, 28, 2),
    Candidate(6, 1.0, 20, 4),
    Candidate(6, 1.0, 28, 4),
    Candidate(10, 1.0, 20, 4),
    Candidate(12, 1.0, 20, 4),
    Candidate(8, 1.5, 20, 4),
    Candidate(8, 2.0, 20, 4),
]


def measure_candidate(c: Candidate, frame_w: int, frame_h: int, float_model=None) -> dict:
    """Costs of one candidate. Sizes do not depend on the weights' values, so untrained
    candidates are measured with random weights and synthetic calibration data."""
    cfg = c.model_config
    fixed = build_mirnet(cfg, input_shape=(c.input_size, c.input_size, 3), batch_size=1)
    if float_model is not None:
        fixed.set_weights(float_model.get_weights())
    flatbuffer = convert_int8(fixed, synthetic_tiles(c.input_size))
    arena = measure_arena(flatbuffer)
    tiles = len(tile_grid(frame_w, frame_h, c.tile))
    macs_tile = conv_macs(fixed)
    m = Measured(len(flatbuffer), arena)
    return {**asdict(c), "label": c.label(), "streams": cfg.stream_channels(), "input": c.input_size,
            "params": count_params(fixed), "flatbuffer_bytes": m.flatbuffer_bytes, "arena_bytes": arena,
            "macs_per_tile": macs_tile, "tiles_per_frame": tiles, "macs_per_frame": macs_tile * tiles,
            "budget_problems": budget_violations(m), "fits": not budget_violations(m)}
