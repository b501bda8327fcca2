"""The one tiling configuration (model/tiling.json) and the tile-by-tile pipeline.

A frame of W x H is cut into a grid of ceil(W/tile) x ceil(H/tile) tiles, row-major. Tile
(i, j) owns the output pixels [x0, min(x0+tile, W)) x [y0, min(y0+tile, H)), x0 = i*tile; the
network sees the square [x0-halo, x0+tile+halo) around it, with coordinates outside the frame
clamped to its edge (edge replication). The firmware's tiler does exactly the same. Before
tiling, the whole frame is scaled to a fixed mean brightness (model/exposure.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

CONFIG_PATH = Path(__file__).with_name("tiling.json")


@dataclass(frozen=True)
class TilingConfig:
    tile: int
    halo: int
    frame_width: int
    frame_height: int
    frame_name: str = "QQVGA"
    exposure_target: int = 0  # model/exposure.py; 0 = frames go to the tiler unchanged

    @property
    def model_input(self) -> int:
        return self.tile + 2 * self.halo

    @property
    def tiles_x(self) -> int:
        return -(-self.frame_width // self.tile)

    @property
    def tiles_y(self) -> int:
        return -(-self.frame_height // self.tile)


def load_tiling(path: str | Path = CONFIG_PATH, frame: str | None = None) -> TilingConfig:
    d = json.loads(Path(path).read_text())
    name = frame or d["frame"]
    if name not in d["frame_sizes"]:
        raise ValueError(f"unknown frame size '{name}' (known: {', '.join(d['frame_sizes'])})")
    w, h = d["frame_sizes"][name]
    target = int(d.get("exposure_target", 0))
    if not 0 <= target <= 255:
        raise ValueError(f"{path}: exposure_target {target} is outside 0..255")
    return TilingConfig(int(d["tile"]), int(d["halo"]), int(w), int(h), name, target)


@dataclass(frozen=True)
class Tile:
    index: int
    x: int  # output region, top-left
    y: int
    w: int  # valid output width/height (smaller at the right/bottom border)
    h: int


def tile_grid(width: int, height: int, tile: int) -> list[Tile]:
    tiles = []
    for j in range(-(-height // tile)):
        for i in range(-(-width // tile)):
            x, y = i * tile, j * tile
            tiles.append(Tile(len(tiles), x, y, min(tile, width - x), min(tile, height - y)))
    return tiles


def tile_input(frame: np.ndarray, t: Tile, tile: int, halo: int) -> np.ndarray:
    """The network input for tile t: the square around it, edge-clamped outside the frame."""
    h, w = frame.shape[:2]
    size = tile + 2 * halo
    ys = np.clip(np.arange(t.y - halo, t.y - halo + size), 0, h - 1)
    xs = np.clip(np.arange(t.x - halo, t.x - halo + size), 0, w - 1)
    return frame[ys[:, None], xs[None, :]]


def iter_tiles(frame: np.ndarray, tile: int, halo: int) -> Iterator[tuple[Tile, np.ndarray]]:
    h, w = frame.shape[:2]
    for t in tile_grid(w, h, tile):
        yield t, tile_input(frame, t, tile, halo)


def place_tile(out: np.ndarray, t: Tile, result: np.ndarray, halo: int) -> None:
    out[t.y:t.y + t.h, t.x:t.x + t.w] = result[halo:halo + t.h, halo:halo + t.w]


def run_tiled(frame: np.ndarray, tile: int, halo: int, infer: Callable[[np.ndarray], np.ndarray],
              batch: int = 64, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Runs `infer` (a batch of tile inputs -> a batch of outputs, same size) over every tile
    of `frame` (HxWxC, any dtype) and stitches the valid centres. Tile inputs are cut a batch
    at a time (memory: one batch); `progress(done, total)` after each batch."""
    h, w = frame.shape[:2]
    out = np.empty_like(frame)
    grid = tile_grid(w, h, tile)
    for start in range(0, len(grid), batch):
        chunk = grid[start:start + batch]
        results = infer(np.stack([tile_input(frame, t, tile, halo) for t in chunk]))
        for t, r in zip(chunk, results):
            place_tile(out, t, r, halo)
        if progress:
            progress(start + len(chunk), len(grid))
    return out


def seam_ratio(img: np.ndarray, tile: int) -> float:
    """How much the tile grid shows: the mean |difference| between neighbouring pixels across tile
    boundaries (columns x = k*tile - 1 | k*tile, rows likewise) over the mean across all other
    neighbour pairs, both axes together. 1.0: the boundaries are like anywhere else."""
    x = np.asarray(img, np.float64)
    dx = np.abs(np.diff(x, axis=1)).mean(axis=-1) if x.ndim == 3 else np.abs(np.diff(x, axis=1))
    dy = np.abs(np.diff(x, axis=0)).mean(axis=-1) if x.ndim == 3 else np.abs(np.diff(x, axis=0))
    bx = np.zeros(dx.shape[1], bool)
    bx[tile - 1::tile] = True  # the pair (k*tile - 1, k*tile)
    by = np.zeros(dy.shape[0], bool)
    by[tile - 1::tile] = True
    seam = np.concatenate([dx[:, bx].ravel(), dy[by, :].ravel()])
    rest = np.concatenate([dx[:, ~bx].ravel(), dy[~by, :].ravel()])
    return float(seam.mean() / rest.mean()) if rest.mean() > 0 else 1.0
