"""What the host expects the board to run (no TensorFlow: the link commands start at once).

:class:`HostModel`: the int8 flatbuffer (quantize/artifacts/tiny_mirnet_int8.tflite or --int8,
with the tiling its quantize folder names, else model/tiling.json's) and, for a frame-context
network, the context model beside it; its int8 pipeline runs in the TFLM runtime (int8_tiled,
or int8_frame_context for a frame-context network): what the board must reproduce bit for bit
with TFLM's reference kernels (CMSIS-NN may differ by an LSB).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinymirnet.model.lightness_order import finish
from tinymirnet.model.paths import CONTEXT_INT8_NAME, DEFAULT_INT8_MODEL
from tinymirnet.quantize.export import tiling_for
from tinymirnet.quantize.tflm import TflmModel, frame_context_vector, int8_frame_context, int8_tiled

from .board_link import CommandError
from .protocol import NO_CONTEXT_MODEL


@dataclass
class HostModel:
    """What the host expects the board to run: the int8 flatbuffer and the tiling; for a
    frame-context network also the context model (the file beside the tile model)."""

    tflite: Path
    sha256: str
    tiling: Any  # tinymirnet.model.tiling.TilingConfig
    context_tflite: Path | None = None
    context_sha256: str = NO_CONTEXT_MODEL
    _tflm: Any = field(default=None, repr=False)
    _context_tflm: Any = field(default=None, repr=False)

    @classmethod
    def load(cls, tflite: str | Path | None = None) -> HostModel:
        path = Path(tflite) if tflite else DEFAULT_INT8_MODEL
        if not path.is_file():
            raise CommandError(f"{path}: no such int8 model (give --int8 PATH)")
        host = cls(path, hashlib.sha256(path.read_bytes()).hexdigest(), tiling_for(path))
        if host.tflm.context_index is not None:
            context = path.with_name(CONTEXT_INT8_NAME)
            if not context.is_file():
                raise CommandError(f"{path} is a frame-context tile model, but its context model "
                                   f"{context} is missing")
            host.context_tflite = context
            host.context_sha256 = hashlib.sha256(context.read_bytes()).hexdigest()
        return host

    @property
    def tflm(self):
        if self._tflm is None:
            self._tflm = TflmModel(self.tflite.read_bytes())
        return self._tflm

    @property
    def context_tflm(self):
        if self._context_tflm is None and self.context_tflite is not None:
            self._context_tflm = TflmModel(self.context_tflite.read_bytes())
        return self._context_tflm

    @property
    def thumbnail_size(self) -> tuple[int, int] | None:
        if self.context_tflite is None:
            return None
        _, h, w, _ = self.context_tflm.input_shape
        return int(w), int(h)

    def context_of(self, frame888: np.ndarray) -> np.ndarray | None:
        """The int8 context vector the board computes for an exposure-normalised frame (None
        for a one-model network)."""
        if self.context_tflite is None:
            return None
        return frame_context_vector(self.context_tflm, self.tflm, frame888, self.thumbnail_size)

    def int8_frame(self, raw888: np.ndarray) -> np.ndarray:
        """The board's int8 pipeline on the host TFLM (both models for a frame-context network)."""
        t = self.tiling
        if self.context_tflite is None:
            return int8_tiled(self.tflm, raw888, t.tile, t.halo, exposure_target=t.exposure_target)
        return int8_frame_context(self.context_tflm, self.tflm, raw888, t.tile, t.halo, self.thumbnail_size,
                                  exposure_target=t.exposure_target)

    def finished_frame(self, raw888: np.ndarray) -> np.ndarray:
        """`int8_frame`, then the host's last steps on the stitched frame, as for the board's
        tiles (model/lightness_order.py `finish`)."""
        return finish(raw888, self.int8_frame(raw888))
