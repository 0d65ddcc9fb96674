"""FastSR: an ESPCN-class network for CPU clients and the live demo (the ``fast`` upscaler).

Three convolutions on the LR picture (5x5 to ``feat``, 3x3 to ``feat2``, 3x3 to 3 * s^2) and a PixelShuffle,
added to the nearest-neighbour upscale of the input (the residual learns the detail; nearest is free inside
the graph, unlike bicubic). 31 k multiply-adds per LR pixel at x4 (21 k at x2): ~40x less than the 1-OSAG OmniSR.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from models.arch import ArchSpec


@dataclass
class FastSRConfig:
    scale: int = 4
    feat: int = 48
    feat2: int = 32

    def to_dict(self) -> dict:
        return asdict(self)


class FastSR(nn.Module):
    """(N, 3, h, w) RGB in [0, 1] -> (N, 3, s*h, s*w)."""

    def __init__(self, cfg: FastSRConfig | None = None, **kwargs) -> None:
        super().__init__()
        cfg = cfg or FastSRConfig(**kwargs)
        self.cfg = cfg
        s2 = cfg.scale * cfg.scale
        self.body = nn.Sequential(
            nn.Conv2d(3, cfg.feat, 5, padding=2), nn.ReLU(inplace=True),
            nn.Conv2d(cfg.feat, cfg.feat2, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(cfg.feat2, 3 * s2, 3, padding=1))
        nn.init.zeros_(self.body[-1].weight)  # starts as the nearest-neighbour upscale
        nn.init.zeros_(self.body[-1].bias)
        self.shuffle = nn.PixelShuffle(cfg.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s2 = self.cfg.scale * self.cfg.scale
        return self.shuffle(self.body(x) + x.repeat_interleave(s2, dim=1))

    def macs_per_lr_pixel(self) -> int:
        return sum(m.weight.numel() for m in self.body if isinstance(m, nn.Conv2d))


# the descriptor (models/arch.py), registered in models/archs.py
ARCH = ArchSpec(name="fastsr", config_cls=FastSRConfig, net_cls=FastSR, per_scale=True,
                supports_half=True, presets={"fastsr": {}})
