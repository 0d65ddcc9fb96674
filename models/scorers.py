"""SR-model scorers for the allocator: per-block MSE on Y of a round trip through an OmniSR per scale.

``light`` uses the 1-OSAG OmniSR of each scale (``omnisr-light-x{k}``, the packager's default: the paper's
"very lightweight" scorer), ``full`` the 5-OSAG models (``omnisr-x{k}``). Whole LR planes are super-resolved
with tiled, batched inference (fp16 autocast on CUDA).
"""

from __future__ import annotations

from typing import Sequence

import torch

from bbmr_stream.score import RoundTripScorer
from models.inference import tiled_sr
from models.backend import accelerate
from models.registry import get_entry, load_model
from bbmr_stream.errors import WeightsError

FAMILIES = {"light": "omnisr-light", "full": "omnisr"}


def load_family(family: str, scales: Sequence[int], device: torch.device, backend: str | None = None
                ) -> dict[int, torch.nn.Module]:
    """``{k: model}`` of the shipped ``{family}-x{k}`` weights, run through ``backend`` on a CPU
    (models/backend.py; None: :func:`models.backend.default_backend`)."""
    out = {}
    for k in scales:
        wid = f"{family}-x{k}"
        out[k] = accelerate(load_model(wid, device), get_entry(wid).sha256, backend, device)
    return out


def make_model_scorer(name: str, scales: Sequence[int], device: torch.device, border: str = "context",
                      backend: str | None = None) -> RoundTripScorer:
    if name not in FAMILIES:
        raise WeightsError(f"unknown scorer {name!r} (choose from bicubic, {', '.join(FAMILIES)})")
    return scorer_from_models(load_family(FAMILIES[name], scales, device, backend), scales, device, border, name)


def scorer_from_models(models: dict[int, torch.nn.Module], scales: Sequence[int], device: torch.device,
                       border: str = "context", name: str = "light") -> RoundTripScorer:
    """A round-trip scorer over given per-scale SR models (``{k: model}``)."""

    def sr(x: torch.Tensor, k: int) -> torch.Tensor:
        x = x.to(device)
        if x.shape[0] == 1:
            return tiled_sr(models[k], x, k).cpu()
        with torch.no_grad():
            return models[k](x).float().cpu()

    return RoundTripScorer(sr, scales, border=border, name=name)
