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
from models.registry import WeightsError, load_model

FAMILIES = {"light": "omnisr-light", "full": "omnisr"}


def load_family(family: str, scales: Sequence[int], device: torch.device) -> dict[int, torch.nn.Module]:
    return {k: load_model(f"{family}-x{k}", device) for k in scales}


def make_model_scorer(name: str, scales: Sequence[int], device: torch.device, border: str = "context"
                      ) -> RoundTripScorer:
    if name not in FAMILIES:
        raise WeightsError(f"unknown scorer {name!r} (choose from bicubic, {', '.join(FAMILIES)})")
    return scorer_from_models(load_family(FAMILIES[name], scales, device), scales, device, border, name)


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
