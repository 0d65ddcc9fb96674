"""Per-block multi-scale downscale: HR frame + scale map -> LR tiles, grouped by scale.

Two modes (``mode``):

- ``"frame"`` (default): downscale the whole padded frame once per scale (128 is divisible by every
  scale, so block borders fall on LR pixel borders) and cut each block's LR tile from it: the antialias
  filter sees a block's real neighbours.
- ``"block"``: downscale every 128x128 block on its own (the filter's support is truncated and
  renormalised at each block edge).

docs/core.md has the measured difference (``bench/resize_modes.py``); ``frame`` is better and is the
default. LR tiles are quantised to 8 bits, as they are shipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bbmr_stream.blocks import BlockGrid, split_tensor
from bbmr_stream.resize import downscale, levels8, quantize

MODES = ("frame", "block")


@dataclass
class LRBlocks:
    """The LR content of one frame: for each scale k, the raster indices of its blocks and their tiles
    (m_k, 3, block/k, block/k) float in [0, 1], 8-bit quantised."""

    grid: BlockGrid
    factors: np.ndarray  # (n_blocks,) uint8 factor per block
    tiles: dict[int, torch.Tensor]
    index: dict[int, np.ndarray]

    @property
    def lr_pixels(self) -> int:
        return int(sum(t.shape[0] * t.shape[-1] * t.shape[-2] for t in self.tiles.values()))


def all_tiles(hr_padded: torch.Tensor, k: int, block: int, mode: str = "frame") -> torch.Tensor:
    """Every block's LR tile at scale k: (n_blocks, 3, block/k, block/k), quantised."""
    if mode == "frame":
        return quantize(split_tensor(downscale(hr_padded, k), block // k))
    if mode == "block":
        return quantize(downscale(split_tensor(hr_padded, block), k))
    raise ValueError(f"mode must be one of {MODES}")


def downscale_blocks(hr_padded: torch.Tensor, grid: BlockGrid, factors: np.ndarray, mode: str = "frame"
                     ) -> LRBlocks:
    """LR tiles of the blocks of a padded (1, 3, H, W) frame for the per-block ``factors``."""
    f = np.asarray(factors, dtype=np.uint8).reshape(-1)
    if f.size != grid.n_blocks:
        raise ValueError(f"{f.size} factors for {grid.n_blocks} blocks")
    tiles, index = {}, {}
    for k in sorted(set(f.tolist())):
        idx = np.flatnonzero(f == k)
        if mode == "frame":
            t = split_tensor(downscale(hr_padded, k), grid.block // k)[torch.from_numpy(idx)]
        else:
            t = downscale(split_tensor(hr_padded, grid.block)[torch.from_numpy(idx)], k)
        tiles[k] = quantize(t)
        index[k] = idx
    return LRBlocks(grid, f, tiles, index)


def to_uint8_tiles(lr) -> list[np.ndarray]:
    """Per-block (s, s, 3) uint8 tiles in raster order from LRBlocks."""
    tiles: list[np.ndarray | None] = [None] * lr.grid.n_blocks
    for k, t in lr.tiles.items():
        arr = levels8(t).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        for j, b in enumerate(lr.index[k].tolist()):
            tiles[b] = arr[j]
    return tiles  # type: ignore[return-value]


def lr_blocks_from_tiles(grid: BlockGrid, factors: np.ndarray, tile) -> LRBlocks:
    """LRBlocks from decoded uint8 tiles: ``tile(b, k)`` is the (block/k, block/k, 3) tile of block b at
    scale k; grouped by scale, float [0, 1]. The unpack side of every layout."""
    f = np.asarray(factors, np.uint8).reshape(-1)
    if f.size != grid.n_blocks:
        raise ValueError(f"{f.size} factors for a grid of {grid.n_blocks} blocks")
    by_k, index = {}, {}
    for k in sorted(set(f.tolist())):
        idx = np.flatnonzero(f == k)
        arr = np.stack([tile(int(b), k) for b in idx])
        by_k[k] = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)
        index[k] = idx
    return LRBlocks(grid, f, by_k, index)
