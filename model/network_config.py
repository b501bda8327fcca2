"""The network's size and design (`MirnetConfig`), without TensorFlow: the CLI reads the
designs for its --help, the reports read saved configs."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

NUM_STREAMS = 3
# The network's input must be a multiple of this (two 2x down-samplings); the half-resolution
# MRB needs one more factor of 2 (`MirnetConfig.size_multiple`).
SIZE_MULTIPLE = 2 ** (NUM_STREAMS - 1)
# The designs: "mrb", the textbook tiny MIRNet at full resolution (attention pooled over its
# input or a thumbnail); "mrb_half_resolution", the tiny MIRNet the board runs (the MRB at half
# resolution with MIRNet-v2's light blocks, `Builder.half_resolution_mirnet`); "half_resolution",
# the alternative without streams (`Builder.half_resolution_network`).
DESIGNS = ("mrb", "mrb_half_resolution", "half_resolution")
# The training losses by name (model/metrics.py LOSSES holds them): Charbonnier as in MIRNet, MSE,
# or MSE plus an SSIM term.
LOSS_NAMES = ("charbonnier", "mse", "mse_ssim")


@dataclass(frozen=True)
class MirnetConfig:
    """Size of the network. Stream k (k = 0, 1, 2) has round(channels * growth**k) channels."""

    design: str = "mrb"  # one of DESIGNS
    channels: int = 8
    depth: int = 2  # "half_resolution": attention-scaled convolutions
    # "mrb_half_resolution": rounds of DAUs + progressive SKFF inside the MRB (MIRNet-v2 runs 2).
    mrb_rounds: int = 2
    # "mrb_half_resolution" after structured pruning: each DAU's inner width (its first 3x3
    # convolution's filters), in build order (round by round: top, middle, bottom stream);
    # () = the stream's width for all of them.
    dau_widths: tuple = ()
    # "half_resolution" after structured pruning: the widths, the stride-2
    # convolution's first, then each block's; () = round(channels * growth) for all of them.
    half_widths: tuple = ()
    # "half_resolution": the channel attention's squeezed width; 0 = max(2, round(channels * growth) //
    # attention_reduction). Pruning keeps it (the squeeze runs once per frame).
    squeeze: int = 0
    growth: float = 1.0
    num_rrg: int = 1
    num_mrb: int = 1
    attention_reduction: int = 4  # channel attention squeeze: C -> max(2, C // r)
    skff_reduction: int = 2  # SKFF squeeze: C -> max(4, C // r)
    spatial_kernel: int = 5  # spatial attention conv kernel
    # Not a layer: the frame exposure normalisation the weights were trained with
    # (model/exposure.py); 0 = none. Saved with the weights so that they are always fed alike.
    exposure_target: int = 0
    # Not a layer: the thumbnail of the whole frame the attention weights are computed on
    # (model/thumbnail.py), width x height; 0 x 0 = the textbook network (attention pooled over
    # its own input, i.e. over one tile on the board).
    thumbnail_width: int = 0
    thumbnail_height: int = 0

    @property
    def frame_context(self) -> bool:
        return self.thumbnail_width > 0 and self.thumbnail_height > 0

    def half_stream_widths(self) -> list[int]:
        """"half_resolution": output channels of the stride-2 convolution, then of each block."""
        if self.half_widths:
            if len(self.half_widths) != 1 + self.depth:
                raise ValueError(f"half_widths {self.half_widths} needs {1 + self.depth} entries (down + depth)")
            return [int(w) for w in self.half_widths]
        return [self.stream_channels()[1]] * (1 + self.depth)

    def stream_channels(self) -> list[int]:
        return [max(1, round(self.channels * self.growth**k)) for k in range(NUM_STREAMS)]

    def dau_inner_widths(self) -> list[int]:
        """"mrb_half_resolution": the inner width of every DAU, in build order."""
        streams = self.stream_channels() * self.mrb_rounds
        if self.dau_widths:
            if len(self.dau_widths) != len(streams):
                raise ValueError(f"dau_widths {self.dau_widths} needs {len(streams)} entries "
                                 f"({self.mrb_rounds} rounds x {NUM_STREAMS} streams)")
            return [int(w) for w in self.dau_widths]
        return streams

    def pruned_widths(self) -> list[int]:
        """The widths structured pruning thins (quantize/prune.py), for the reports."""
        if self.design == "mrb_half_resolution":
            return self.dau_inner_widths()
        if self.design == "half_resolution":
            return self.half_stream_widths()
        raise ValueError(f"structured pruning does not thin the {self.design!r} design")

    @property
    def size_multiple(self) -> int:
        """The network's input height and width must be multiples of this."""
        return 2 * SIZE_MULTIPLE if self.design == "mrb_half_resolution" else SIZE_MULTIPLE

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "MirnetConfig":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        for key in ("half_widths", "dau_widths"):  # JSON lists; the config is hashable (a dict key)
            if key in known:
                known[key] = tuple(known[key])
        if known.get("design", "mrb") not in DESIGNS:
            raise ValueError(f"unknown design {known['design']!r} (one of {', '.join(DESIGNS)})")
        return cls(**known)

    @classmethod
    def load(cls, path: str | Path) -> "MirnetConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))
