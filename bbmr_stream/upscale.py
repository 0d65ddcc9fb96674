"""Upscalers: LR tiles of a multi-scale frame -> the HR frame.

An :class:`Upscaler` takes :class:`~bbmr_stream.downscale.LRBlocks` and returns the padded HR frame
(1, 3, H, W) float in [0, 1]. Two ways to treat block borders, for any per-block upscaler:

- ``"tile"``: every LR tile is upscaled on its own (border pixels replicated at each block edge);
- ``"context"`` (default): for each scale k, a full LR plane at 1/k is assembled from *all* tiles (tiles of
  other scales resampled to 1/k), the whole plane is upscaled by k, and the blocks of scale k are cut from
  it. A block's reconstruction then sees its real neighbours; for a uniform map it is exactly the
  whole-frame upscale.

The bicubic upscaler lives here; the SR-model upscalers (OmniSR, JointSR) are in ``models``.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch

from bbmr_stream.blocks import merge_tensor, split_tensor
from bbmr_stream.downscale import LRBlocks
from bbmr_stream.resize import downscale, upscale

BORDER_MODES = ("context", "tile")


class Upscaler(Protocol):
    name: str

    def __call__(self, lr: LRBlocks) -> torch.Tensor:
        """Padded HR frame (1, 3, grid_h * block, grid_w * block), float in [0, 1]."""
        ...


def resample_tiles(t: torch.Tensor, k_from: int, k_to: int) -> torch.Tensor:
    """Tiles stored at 1/k_from -> 1/k_to (bicubic up or antialiased down)."""
    if k_from == k_to:
        return t
    if k_from > k_to:
        return upscale(t, k_from // k_to)
    return downscale(t, k_to // k_from)


def assemble_plane(lr: LRBlocks, k: int) -> torch.Tensor:
    """The full LR frame at scale 1/k, (1, 3, H/k, W/k): tiles of scale k as they are, the others
    resampled to 1/k."""
    g = lr.grid
    t = g.block // k
    ref = next(iter(lr.tiles.values()))
    out = torch.empty(g.n_blocks, 3, t, t, dtype=ref.dtype, device=ref.device)
    for kk, tiles in lr.tiles.items():
        out[torch.from_numpy(lr.index[kk]).to(out.device)] = resample_tiles(tiles, kk, k)
    return merge_tensor(out, g.grid_h, g.grid_w)


def upscale_blocks(lr: LRBlocks, sr: Callable[[torch.Tensor, int], torch.Tensor], border: str = "context"
                   ) -> torch.Tensor:
    """Generic per-scale reconstruction: ``sr(x, k)`` maps (N, 3, h, w) LR to (N, 3, k*h, k*w)."""
    if border not in BORDER_MODES:
        raise ValueError(f"border must be one of {BORDER_MODES}")
    g = lr.grid
    ref = next(iter(lr.tiles.values()))
    hr = torch.empty(g.n_blocks, 3, g.block, g.block, dtype=ref.dtype, device=ref.device)
    for k, tiles in lr.tiles.items():
        idx = torch.from_numpy(lr.index[k]).to(hr.device)
        if border == "tile":  # sr may run on another device (CUDA): its result comes back to the tiles' device
            hr[idx] = sr(tiles, k).to(hr.device, hr.dtype)
        else:
            full = split_tensor(sr(assemble_plane(lr, k), k).to(hr.device, hr.dtype), g.block)
            hr[idx] = full[idx]
    return merge_tensor(hr, g.grid_h, g.grid_w).clamp_(0.0, 1.0)


class BicubicUpscaler:
    """Bicubic reconstruction (the project's resize convention), ``border`` as in the module docstring."""

    def __init__(self, border: str = "context") -> None:
        self.border = border
        self.name = "bicubic"

    def __call__(self, lr: LRBlocks) -> torch.Tensor:
        return upscale_blocks(lr, upscale, self.border)

    def sr_plane(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """(1, 3, h, w) -> (1, 3, k*h, k*w) bicubic: a whole plane (plain-sr played without a model)."""
        return upscale(x, k)
