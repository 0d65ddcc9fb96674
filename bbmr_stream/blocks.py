"""The block grid: pad a frame to whole blocks, split it into blocks, merge blocks back.

A frame is an (H, W) or (H, W, C) numpy array (uint8 RGB at the edges of the library) or a torch tensor
(N, C, H, W). Padding replicates the last row/column ("edge"), so a padded block never contains pixels
that do not exist in the picture's statistics; :func:`merge` crops the padding off again, which makes
``merge(split(x)) == x`` exact for every size >= 1x1.

Block (i, j) in raster order has index ``i * grid_w + j`` everywhere in the project (scale maps, scorers,
allocators, packers).

YUV 4:2:0: split the luma plane with ``block`` and each chroma plane with ``block // 2`` on the same grid
(:func:`split_yuv420` / :func:`merge_yuv420`); chroma planes are ``ceil(H/2) x ceil(W/2)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_BLOCK = 128


@dataclass(frozen=True)
class BlockGrid:
    """Geometry of a frame of ``height`` x ``width`` pixels cut into ``block`` x ``block`` blocks."""

    height: int
    width: int
    block: int = DEFAULT_BLOCK

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"frame size must be >= 1x1, got {self.width}x{self.height}")
        if self.block < 1:
            raise ValueError("block size must be >= 1")

    @property
    def grid_h(self) -> int:
        return -(-self.height // self.block)

    @property
    def grid_w(self) -> int:
        return -(-self.width // self.block)

    @property
    def n_blocks(self) -> int:
        return self.grid_h * self.grid_w

    @property
    def padded_h(self) -> int:
        return self.grid_h * self.block

    @property
    def padded_w(self) -> int:
        return self.grid_w * self.block

    def valid_fraction(self) -> np.ndarray:
        """(n_blocks,) share of each block's pixels that lie inside the original frame (1.0 but at the
        bottom/right border)."""
        b = self.block
        rows = np.minimum(self.height - np.arange(self.grid_h) * b, b) / b
        cols = np.minimum(self.width - np.arange(self.grid_w) * b, b) / b
        return (rows[:, None] * cols[None, :]).reshape(-1)

    def valid_mask(self) -> np.ndarray:
        """(n_blocks, block, block) bool: True where a block pixel lies inside the original frame."""
        m = np.zeros((self.padded_h, self.padded_w), dtype=bool)
        m[: self.height, : self.width] = True
        return split(m, self.block)


def grid_for(frame: np.ndarray | torch.Tensor, block: int = DEFAULT_BLOCK) -> BlockGrid:
    h, w = (frame.shape[-2:] if isinstance(frame, torch.Tensor) else frame.shape[:2])
    return BlockGrid(int(h), int(w), block)


def pad(frame: np.ndarray, block: int = DEFAULT_BLOCK) -> np.ndarray:
    """Pad (H, W[, C]) bottom/right by edge replication to whole blocks."""
    g = grid_for(frame, block)
    extra = [(0, g.padded_h - g.height), (0, g.padded_w - g.width)] + [(0, 0)] * (frame.ndim - 2)
    if g.padded_h == g.height and g.padded_w == g.width:
        return frame
    return np.pad(frame, extra, mode="edge")


def pad_tensor(x: torch.Tensor, block: int = DEFAULT_BLOCK) -> torch.Tensor:
    """Pad (N, C, H, W) bottom/right by edge replication to whole blocks."""
    g = grid_for(x, block)
    if g.padded_h == g.height and g.padded_w == g.width:
        return x
    return F.pad(x, (0, g.padded_w - g.width, 0, g.padded_h - g.height), mode="replicate")


def split(frame: np.ndarray, block: int = DEFAULT_BLOCK) -> np.ndarray:
    """(H, W[, C]) -> (n_blocks, block, block[, C]) in raster order, padding first."""
    p = pad(frame, block)
    gh, gw = p.shape[0] // block, p.shape[1] // block
    rest = p.shape[2:]
    t = p.reshape(gh, block, gw, block, *rest).swapaxes(1, 2)
    return t.reshape(gh * gw, block, block, *rest)


def merge(blocks: np.ndarray, grid: BlockGrid) -> np.ndarray:
    """(n_blocks, block, block[, C]) -> (height, width[, C]), cropping the padding."""
    b = grid.block
    if blocks.shape[0] != grid.n_blocks or blocks.shape[1:3] != (b, b):
        raise ValueError(f"expected ({grid.n_blocks}, {b}, {b}, ...) blocks, got {blocks.shape}")
    rest = blocks.shape[3:]
    t = blocks.reshape(grid.grid_h, grid.grid_w, b, b, *rest).swapaxes(1, 2)
    return t.reshape(grid.padded_h, grid.padded_w, *rest)[: grid.height, : grid.width]


def split_tensor(x: torch.Tensor, block: int) -> torch.Tensor:
    """(1, C, H, W) with H, W multiples of ``block`` -> (n_blocks, C, block, block), raster order."""
    _, c, h, w = x.shape
    if h % block or w % block:
        raise ValueError(f"{w}x{h} is not a multiple of the block {block}")
    gh, gw = h // block, w // block
    return x[0].reshape(c, gh, block, gw, block).permute(1, 3, 0, 2, 4).reshape(gh * gw, c, block, block)


def merge_tensor(blocks: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """(n_blocks, C, b, b) -> (1, C, grid_h * b, grid_w * b)."""
    n, c, b, b2 = blocks.shape
    if n != grid_h * grid_w or b != b2:
        raise ValueError(f"expected {grid_h * grid_w} square blocks, got {tuple(blocks.shape)}")
    return blocks.reshape(grid_h, grid_w, c, b, b).permute(2, 0, 3, 1, 4).reshape(1, c, grid_h * b, grid_w * b)
