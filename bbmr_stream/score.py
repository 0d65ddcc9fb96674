"""Scorers: per-block distortion at every scale of the set (the allocator's input).

:class:`RoundTripScorer` downscales the frame at each scale (the packager's resize), quantises to 8 bits,
reconstructs with an upscaler function and measures MSE on BT.601 Y per block over the block's real
(unpadded) pixels. With ``border="context"`` each scale is reconstructed as a whole frame (every block
seen with neighbours at the same scale), matching :class:`~bbmr_stream.upscale.BicubicUpscaler`'s default;
``"tile"`` reconstructs each tile alone. Blocks are processed in batches of ``batch`` tiles.

:class:`BicubicScorer` is the round trip through bicubic; SR-model scorers (``models.scorers``) are round
trips through an OmniSR.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from bbmr_stream.allocate import DEFAULT_SCALES
from bbmr_stream.blocks import BlockGrid, merge_tensor, pad_tensor, split_tensor
from bbmr_stream.downscale import all_tiles
from bbmr_stream.metrics import block_mse_y
from bbmr_stream.resize import quantize, upscale
from bbmr_stream.upscale import BORDER_MODES


class RoundTripScorer:
    def __init__(self, sr: Callable[[torch.Tensor, int], torch.Tensor], scales: Sequence[int] = DEFAULT_SCALES,
                 mode: str = "frame", border: str = "context", batch: int = 64, name: str = "roundtrip") -> None:
        if border not in BORDER_MODES:
            raise ValueError(f"border must be one of {BORDER_MODES}")
        self.sr, self.scales, self.mode, self.border = sr, tuple(scales), mode, border
        self.batch, self.name = batch, name

    @torch.no_grad()
    def score(self, frame: torch.Tensor, block: int = 128) -> np.ndarray:
        """``frame``: (1, 3, H, W) float in [0, 1], unpadded. Returns (n_blocks, n_scales) MSE on Y."""
        grid = BlockGrid(frame.shape[-2], frame.shape[-1], block)
        hr = pad_tensor(frame, block)
        hr_blocks = split_tensor(hr, block)
        valid = grid.valid_mask()
        out = np.empty((grid.n_blocks, len(self.scales)))
        for j, k in enumerate(self.scales):
            if self.border == "context":
                plane = merge_tensor(all_tiles(hr, k, block, self.mode), grid.grid_h, grid.grid_w)
                rec = split_tensor(quantize(self.sr(plane, k).to(hr.device).clamp(0, 1)), block)
                out[:, j] = block_mse_y(hr_blocks, rec, valid)
                continue
            tiles = all_tiles(hr, k, block, self.mode)
            for s in range(0, grid.n_blocks, self.batch):
                rec = quantize(self.sr(tiles[s:s + self.batch], k).to(hr.device).clamp(0, 1))
                out[s:s + self.batch, j] = block_mse_y(hr_blocks[s:s + self.batch], rec, valid[s:s + self.batch])
        return out


class BicubicScorer(RoundTripScorer):
    def __init__(self, scales: Sequence[int] = DEFAULT_SCALES, mode: str = "frame", border: str = "context",
                 batch: int = 64) -> None:
        super().__init__(upscale, scales, mode, border, batch, name="bicubic")
