"""Down-Net: a learned downscaler trained end to end with the client's upscaler (the BBMR paper's second
downscaler, after Fan, Lian and Quan 2022; their architecture is not in the design documents, this one is ours).

``LR' = bicubic(HR) + g(space_to_depth_K(HR))``: the picture the packager would send (antialiased bicubic, the
project's resize convention) plus a correction computed at the LR grid from the K x K HR pixels behind each LR
pixel (pixel-unshuffle -> conv 3x3 -> ``blocks`` residual blocks -> conv 3x3 -> 3 channels). The last layer starts
at zero, so an untrained Down-Net is bicubic exactly (function-preserving init), and training (Eq. 6 of the
paper, models/train.py ``train_downnet``: ``(1/2^k) L1(LR', LR_bicubic) + L1(SR(LR'), HR)`` with the upscaler
frozen) moves it only where the upscaler gains. Any frame size: the HR is reflect-padded to a multiple of K, the
LR cropped to ``ceil(H/K) x ceil(W/K)``, as :func:`bbmr_stream.resize.downscale` would give for the padded frame.
Input and output RGB in [0, 1] (the output clamped).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bbmr_stream.resize import downscale


@dataclass(frozen=True)
class DownNetConfig:
    scale: int = 4  # 2, 4 or 8
    channels: int = 32
    blocks: int = 4

    def to_dict(self) -> dict:
        return asdict(self)


class _Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(c, c, 3, padding=1)
        self.b = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(F.relu(self.a(x), inplace=True))


class DownNet(nn.Module):
    """(N, 3, H, W) HR RGB in [0, 1] -> (N, 3, ceil(H/K), ceil(W/K)) LR RGB in [0, 1]."""

    def __init__(self, cfg: DownNetConfig | None = None, **kwargs) -> None:
        super().__init__()
        cfg = cfg or DownNetConfig(**kwargs)
        if cfg.scale not in (2, 4, 8):
            raise ValueError(f"Down-Net scale {cfg.scale}: 2, 4 or 8")
        self.cfg = cfg
        k = cfg.scale
        self.head = nn.Conv2d(3 * k * k, cfg.channels, 3, padding=1)
        self.body = nn.Sequential(*[_Block(cfg.channels) for _ in range(cfg.blocks)])
        self.tail = nn.Conv2d(cfg.channels, 3, 3, padding=1)
        nn.init.zeros_(self.tail.weight)  # starts as bicubic
        nn.init.zeros_(self.tail.bias)

    def forward(self, hr: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        k = self.cfg.scale
        h, w = hr.shape[-2:]
        ph, pw = -h % k, -w % k
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            hr = F.pad(hr, (0, pw, 0, ph), mode=mode)
        base = downscale(hr, k)
        lr = base + self.tail(self.body(F.relu(self.head(F.pixel_unshuffle(hr, k)), inplace=True)))
        lr = lr[..., : -(-h // k), : -(-w // k)]
        return lr.clamp(0.0, 1.0) if clamp else lr

    def macs_per_lr_pixel(self) -> int:
        return sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Conv2d))
