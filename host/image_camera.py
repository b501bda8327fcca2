"""The virtual boards' camera: image files (or a synthetic low-light frame) served as the board
camera's YUV422 frames."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tinymirnet.model.data import IMAGE_SUFFIXES, DataError, read_rgb
from tinymirnet.model.samples import resize_to, sample_photo, synthesize_low_light

from .protocol import PIXEL_FORMAT_YUV422, rgb888_to_frame
from .sim_library import VirtualBoardError


class ImageCamera:
    """Frames in the board camera's format (YUV422) served in turn, one per capture (cycling)."""

    pixel_format = PIXEL_FORMAT_YUV422  # the simulator's camera port (firmware/sim/sim_api.cc)

    def __init__(self, frames_rgb888: list[np.ndarray], sources: list[str]):
        if not frames_rgb888:
            raise VirtualBoardError("the virtual camera has no frames")
        self.frames = [rgb888_to_frame(f, self.pixel_format) for f in frames_rgb888]
        self.sources = sources
        self.captures = 0
        self.last_index: int | None = None

    @classmethod
    def for_board(cls, frames: list[np.ndarray] | None, camera_dir: str | Path | None, width: int,
                  height: int) -> ImageCamera:
        """A virtual board's camera: RGB888 `frames` if given, else the images of `camera_dir`,
        else the synthetic low-light frame."""
        if frames is not None:
            return cls([np.asarray(f, np.uint8) for f in frames], [f"frame {i}" for i in range(len(frames))])
        if camera_dir is not None:
            return cls.from_dir(camera_dir, width, height)
        return cls.synthetic(width, height)

    @classmethod
    def synthetic(cls, width: int, height: int, sample: str = "coffee",
                  seed: int = 0) -> ImageCamera:
        """A low-light frame synthesized from a bundled sample photograph."""
        low = synthesize_low_light(resize_to(sample_photo(sample), width, height), seed=seed)
        return cls([low], [f"synthetic low-light '{sample}' (bundled sample, seed {seed})"])

    @classmethod
    def from_dir(cls, folder: str | Path, width: int, height: int) -> ImageCamera:
        """Every image file in `folder` (sorted by name), scaled to cover the frame and
        centre-cropped."""
        folder = Path(folder)
        if not folder.is_dir():
            raise VirtualBoardError(f"--camera-dir {folder}: no such folder")
        frames, sources, bad = [], [], []
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                frames.append(resize_to(read_rgb(path), width, height))
                sources.append(str(path))
            except DataError as e:
                bad.append(str(e))
        if not frames:
            why = f" ({'; '.join(bad)})" if bad else ""
            raise VirtualBoardError(f"--camera-dir {folder}: no readable image files "
                                    f"({', '.join(IMAGE_SUFFIXES)}){why}")
        return cls(frames, sources)

    def next_frame(self) -> np.ndarray:
        self.last_index = self.captures % len(self.frames)
        self.captures += 1
        return self.frames[self.last_index]

    @property
    def last_frame(self) -> np.ndarray | None:
        return None if self.last_index is None else self.frames[self.last_index]
