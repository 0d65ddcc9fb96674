"""Temporal reuse of scale maps: when to re-score and re-allocate.

- ``every``: every frame;
- ``gop``: at segment (GOP) starts only: one map per segment, stable for the codec, 1/gop of the scorer cost;
- ``auto`` (default): at segment starts, and inside a segment when the share of blocks whose *detail* changed
  exceeds ``threshold`` (scene cuts, objects entering). A block's detail is the log of its mean squared Y
  gradient; it changed when that moved by more than ``log(2)`` (a factor of 2 in gradient energy) since the
  last allocation. Unlike a pixel difference this ignores motion of the same content (pans, tilts), which
  does not change which scale a block needs.
"""

from __future__ import annotations

import math

import numpy as np

from bbmr_stream.blocks import BlockGrid, split
from bbmr_stream.metrics import rgb_to_y

MODES = ("auto", "gop", "every")


def block_detail(rgb: np.ndarray, block: int = 128) -> np.ndarray:
    """(n_blocks,) log(1 + mean squared Y gradient) per block."""
    y = rgb_to_y(rgb)
    g = np.zeros_like(y)
    g[:, :-1] += np.diff(y, axis=1) ** 2
    g[:-1, :] += np.diff(y, axis=0) ** 2
    return np.log1p(split(g, block).reshape(-1, block * block).mean(axis=1))


class MapReuse:
    def __init__(self, mode: str, grid: BlockGrid, threshold: float = 0.25) -> None:
        if mode not in MODES:
            raise ValueError(f"realloc mode must be one of {MODES}")
        self.mode, self.grid, self.threshold = mode, grid, threshold
        self.ref: np.ndarray | None = None
        self.count = 0

    def needs_realloc(self, rgb: np.ndarray, segment_start: bool) -> bool:
        if self.ref is None or self.mode == "every" or segment_start:
            return True
        if self.mode == "gop":
            return False
        changed = np.abs(block_detail(rgb, self.grid.block) - self.ref) > math.log(2)
        return bool(changed.mean() > self.threshold)

    def allocated(self, rgb: np.ndarray) -> None:
        self.count += 1
        if self.mode == "auto":
            self.ref = block_detail(rgb, self.grid.block)
        else:
            self.ref = np.zeros(0)
