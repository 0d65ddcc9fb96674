"""Scorers and upscalers by name: ``bicubic`` from the core, ``light`` / ``full`` / ``omnisr`` / ``jointsr``
from the shipped weights. The one place the command-line tools turn a name into an object; a missing weight
is an :class:`~bbmr_stream.imageio.InputError` (exit 2, one line)."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from bbmr_stream.errors import InputError
from bbmr_stream.upscale import BicubicUpscaler
from bbmr_stream.errors import BackendError
from bbmr_stream.errors import WeightsError


def make_scorer(name: str, scales: Sequence[int], device: torch.device, mode: str = "frame",
                border: str = "context", backend: str | None = None):
    if name == "bicubic":
        from bbmr_stream.score import BicubicScorer

        return BicubicScorer(scales, mode=mode, border=border)
    from models.scorers import make_model_scorer

    try:
        return make_model_scorer(name, scales, device, border, backend)
    except (WeightsError, BackendError) as e:
        raise InputError(str(e)) from None


def make_upscaler(name: str, scales: Sequence[int], device: torch.device, border: str = "context",
                  backend: str | None = None) -> Callable:
    if name == "bicubic":
        return BicubicUpscaler(border)
    from models.upscalers import make_model_upscaler

    try:
        return make_model_upscaler(name, scales, device, border, backend)
    except (WeightsError, BackendError) as e:
        raise InputError(str(e)) from None


def use_backend(name: str | None) -> str:
    """Set the process's SR backend (``--backend``; None keeps $BBMR_BACKEND or auto); returns the runtime it
    resolves to. Unknown or not installed -> InputError."""
    from models.backend import default_backend, resolve, set_default_backend

    try:
        return set_default_backend(name) if name else resolve(default_backend())
    except BackendError as e:
        raise InputError(str(e)) from None
