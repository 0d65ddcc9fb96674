"""Planes layout (``planes``, version 1): one picture per scale k at 1/k of the padded frame, every block of
scale k at its natural position (motion compensation works across block edges), the rest flat mid-grey (cheap
to code). Pack and unpack both live here (:class:`Planes`); the packager and the player import this module.
"""

from __future__ import annotations

import numpy as np
import torch

from bbmr_stream.blocks import BlockGrid, pad_tensor
from bbmr_stream.downscale import LRBlocks, downscale_blocks, lr_blocks_from_tiles, to_uint8_tiles
from bbmr_stream.scalemap import ScaleMap

NAME = "planes"
VERSION = 1


def plane_sizes(grid: BlockGrid, scales: tuple[int, ...]) -> list[tuple[int, int]]:
    """(width, height) of the picture of each scale in the planes layout."""
    return [(grid.padded_w // k, grid.padded_h // k) for k in scales]


def pack_planes(x: torch.Tensor, grid: BlockGrid, factors: np.ndarray, scales: tuple[int, ...]) -> list[np.ndarray]:
    """Planes layout: one picture per scale at 1/k of the padded frame, every block of scale k at its natural
    position, the rest flat mid-grey (cheap to code)."""
    lr = downscale_blocks(pad_tensor(x, grid.block), grid, factors)
    tiles = to_uint8_tiles(lr)
    f = np.asarray(factors).reshape(-1)
    out = []
    for k in scales:
        t = grid.block // k
        plane = np.full((grid.grid_h * t, grid.grid_w * t, 3), 128, np.uint8)
        for b in np.flatnonzero(f == k).tolist():
            i, j = divmod(b, grid.grid_w)
            plane[i * t:(i + 1) * t, j * t:(j + 1) * t] = tiles[b]
        out.append(plane)
    return out


def unpack_planes(pictures: list[np.ndarray], scales: tuple[int, ...], smap: ScaleMap, grid: BlockGrid) -> LRBlocks:
    """LR tiles from the planes layout: block b of scale k is cut at its natural position in plane k."""
    smap.check_grid(grid, scales)
    plane = dict(zip(scales, pictures))

    def tile(b: int, k: int) -> np.ndarray:
        t, (i, j) = grid.block // k, divmod(b, grid.grid_w)
        return plane[k][i * t:(i + 1) * t, j * t:(j + 1) * t]

    return lr_blocks_from_tiles(grid, smap.flat, tile)


class Planes:
    """The planes layout as the families use it: one picture per scale."""

    name, version = NAME, VERSION

    def sizes(self, grid: BlockGrid, scales, overall: int) -> list[tuple[int, int]]:
        return plane_sizes(grid, tuple(scales))

    def fit(self, factors: np.ndarray, grid: BlockGrid, scales, overall: int) -> np.ndarray:
        return factors

    def pack(self, x: torch.Tensor, grid: BlockGrid, factors: np.ndarray, scales, overall: int) -> list[np.ndarray]:
        return pack_planes(x, grid, factors, tuple(scales))

    def unpack(self, pictures: list[np.ndarray], smap: ScaleMap, grid: BlockGrid, scales, overall: int) -> LRBlocks:
        return unpack_planes(pictures, tuple(scales), smap, grid)
