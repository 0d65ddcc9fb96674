"""A cheap per-block, per-scale bit-cost proxy for rate-aware allocation.

An encoder's bits for a picture area grow with the log of its residual amplitude over the quantiser step.
The proxy charges every LR pixel of a tile ``log2(1 + (|dY/dx| + |dY/dy|) / Q)`` bits (Y on [0, 255]), with the
H.264/HEVC quantiser step ``Q = 2^((qp - 4) / 6)`` at ``qp = crf``: flat tiles cost almost nothing, detailed
tiles at fine scales (4x the pixels at x2) cost the most. It ignores inter prediction, so it is a proxy of
the *relative* cost of the scales of a block, which is what the allocator trades; the multiplier that turns it
into the encoder's slope (``--rate-lambda``) is calibrated by measurement (docs/packager.md).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from bbmr_stream.downscale import all_tiles
from bbmr_stream.metrics import rgb_to_y_torch


def qstep(qp: float) -> float:
    return 2.0 ** ((qp - 4.0) / 6.0)


def h264_lambda(qp: float) -> float:
    """x264/JM mode-decision lambda for SSE distortion (per bit) at quantiser ``qp``."""
    return 0.85 * 2.0 ** ((qp - 12.0) / 3.0)


def gradient_bits(y: torch.Tensor, crf: float) -> torch.Tensor:
    """Per-pixel bits of the proxy, ``log2(1 + (|dY/dx| + |dY/dy|) / Q)``, of (..., H, W) Y planes on [0, 255]
    (the first column's / row's backward difference is 0)."""
    gx = torch.zeros_like(y)
    gy = torch.zeros_like(y)
    gx[..., :, 1:] = (y[..., :, 1:] - y[..., :, :-1]).abs()
    gy[..., 1:, :] = (y[..., 1:, :] - y[..., :-1, :]).abs()
    return torch.log2(1 + (gx + gy) / qstep(crf))


@torch.no_grad()
def rate_proxy(hr_padded: torch.Tensor, scales: Sequence[int], block: int = 128, crf: float = 23.0) -> np.ndarray:
    """(n_blocks, n_scales) estimated bits of each block's LR tile at each scale."""
    out = []
    for k in scales:
        y = rgb_to_y_torch(all_tiles(hr_padded, k, block, "frame").double())  # (n, t, t)
        out.append(gradient_bits(y, crf).sum(dim=(1, 2)).numpy())
    return np.stack(out, axis=1)

