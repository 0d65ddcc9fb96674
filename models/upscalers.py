"""SR-model upscalers for multi-scale frames (the :class:`bbmr_stream.upscale.Upscaler` protocol).

- ``omnisr``: each scale's blocks super-resolved by that scale's OmniSR. With a uniform map and the default
  ``border="context"`` this is OmniSR-O (the whole LR frame through one model); ``border="tile"`` stitches
  blocks super-resolved one by one (the paper's ablation case 3).
- ``fast``: the same per scale with FastSR (models/fastsr.py, ``fastsr-x{k}``): ~40x fewer operations.
- ``jointsr``: :class:`models.jointsr.JointSR` (shipped weights ``jointsr``).
"""

from __future__ import annotations

from typing import Sequence

import torch

from bbmr_stream.upscale import upscale_blocks
from models.inference import tiled_sr
from models.registry import load_model
from bbmr_stream.errors import WeightsError
from models.scorers import load_family

OMNISR_FAMILY = "omnisr-light"  # the backbone size JointSR's shipped branches use (docs/models.md)
FAST_FAMILY = "fastsr"  # models/fastsr.py: ESPCN-class, for CPU clients and the live demo
MODEL_FAMILIES = {"omnisr": OMNISR_FAMILY, "fast": FAST_FAMILY}  # upscaler name -> registry id prefix


class OmniSRUpscaler:
    """Per-scale SR models (OmniSR, or FastSR for ``fast``) over a multi-scale frame or a whole plane."""

    def __init__(self, models: dict[int, torch.nn.Module], device: torch.device, border: str = "context",
                 name: str = "omnisr") -> None:
        self.models, self.device, self.border = models, device, border
        self.name = name

    @property
    def backend(self) -> str:
        """The inference variants used so far (models/backend.py), e.g. ``openvino-bf16``."""
        return ", ".join(sorted({getattr(m, "description", "torch-f32") for m in self.models.values()}))

    def sr_plane(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """(1, 3, h, w) LR in [0, 1] -> (1, 3, k*h, k*w): the whole plane through the xk model (plain-sr)."""
        return self._sr(x, k)

    def _sr(self, x: torch.Tensor, k: int) -> torch.Tensor:
        x = x.to(self.device)
        if x.shape[0] == 1:
            return tiled_sr(self.models[k], x, k)
        with torch.no_grad():
            return self.models[k](x).float()

    def __call__(self, lr) -> torch.Tensor:
        return upscale_blocks(lr, self._sr, self.border).cpu()


def make_model_upscaler(name: str, scales: Sequence[int], device: torch.device, border: str = "context",
                        backend: str | None = None):
    if name in MODEL_FAMILIES:
        return OmniSRUpscaler(load_family(MODEL_FAMILIES[name], scales, device, backend), device, border, name)
    if name == "jointsr":
        from models.jointsr import JointSRUpscaler

        model = load_model("jointsr", device)
        if tuple(model.cfg.scales) != tuple(scales):
            raise WeightsError(f"jointsr weights are for scales {model.cfg.scales}, not {tuple(scales)}")
        return JointSRUpscaler(model, device)
    raise WeightsError(f"unknown upscaler {name!r} (choose from bicubic, omnisr, fast, jointsr)")
