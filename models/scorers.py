"""Block scorers for the allocator, by name (:data:`SCORERS`, the one place a scorer name is resolved).

``bicubic`` is the core's round trip through bicubic (:class:`bbmr_stream.score.BicubicScorer`). The model
scorers are per-block MSE on Y of a round trip through an SR model per scale: ``light`` uses the 1-OSAG OmniSR
of each scale (``omnisr-light-x{k}``, the packager's default: the paper's "very lightweight" scorer), ``full``
the 5-OSAG models (``omnisr-x{k}``). Whole LR planes are super-resolved with tiled, batched inference (fp16
autocast on CUDA when the architecture supports it). Adding a scorer is one :func:`register_scorer` line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from bbmr_stream.errors import WeightsError
from bbmr_stream.registry import Registry
from bbmr_stream.score import BicubicScorer, RoundTripScorer
from models.archs import get_arch
from models.backend import accelerate
from models.inference import tiled_sr
from models.registry import get_entry, load_model


def load_family(family: str, scales: Sequence[int], device: torch.device, backend: str | None = None
                ) -> dict[int, torch.nn.Module]:
    """``{k: model}`` of the shipped ``{family}-x{k}`` weights, run through ``backend`` on a CPU
    (models/backend.py; None: :func:`models.backend.default_backend`)."""
    out = {}
    for k in scales:
        wid = f"{family}-x{k}"
        out[k] = accelerate(load_model(wid, device), get_entry(wid).sha256, backend, device)
    return out


def family_half(weights_ids: Iterable[str]) -> bool | None:
    """The ``half`` argument of :func:`models.inference.tiled_sr` for these registry ids: None (the device's
    default: fp16 autocast on CUDA) when every architecture supports half precision, else False (fp32).
    A multi-scale architecture among them is a WeightsError (per-scale models only)."""
    half = True
    for wid in weights_ids:
        e = get_entry(wid)
        arch = get_arch(e.arch, f" for {wid!r}")
        if not arch.per_scale:
            raise WeightsError(f"{wid}: a {arch.name} model is not a per-scale SR model")
        half = half and arch.supports_half
    return None if half else False


@dataclass(frozen=True)
class ScorerSpec:
    """A scorer name: ``weights`` is the registry id prefix of its per-scale models (``{weights}-x{k}``), None
    for bicubic (no model)."""

    name: str
    weights: str | None = None

    def make(self, scales: Sequence[int], device: torch.device, mode: str = "frame", border: str = "context",
             backend: str | None = None):
        """The scorer (``mode`` is the bicubic scorer's; model scorers score frames)."""
        if self.weights is None:
            return BicubicScorer(scales, mode=mode, border=border)
        models = load_family(self.weights, scales, device, backend)
        half = family_half(f"{self.weights}-x{k}" for k in scales)
        return scorer_from_models(models, scales, device, border, self.name, half=half)


SCORERS: Registry[ScorerSpec] = Registry("scorer", WeightsError)
register_scorer = SCORERS.register
scorer_names = SCORERS.names
get_scorer = SCORERS.lookup  # unknown -> WeightsError (the factory turns it into an InputError)

register_scorer(ScorerSpec("bicubic"))
register_scorer(ScorerSpec("light", "omnisr-light"))
register_scorer(ScorerSpec("full", "omnisr"))


def scorer_from_models(models: dict[int, torch.nn.Module], scales: Sequence[int], device: torch.device,
                       border: str = "context", name: str = "light", half: bool | None = None) -> RoundTripScorer:
    """A round-trip scorer over given per-scale SR models (``{k: model}``); ``half`` as in
    :func:`models.inference.tiled_sr`."""

    def sr(x: torch.Tensor, k: int) -> torch.Tensor:
        x = x.to(device)
        if x.shape[0] == 1:
            return tiled_sr(models[k], x, k, half=half).cpu()
        with torch.no_grad():
            return models[k](x).float().cpu()

    return RoundTripScorer(sr, scales, border=border, name=name)
