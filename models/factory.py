"""Scorers and upscalers by name, for the command-line tools: the names are looked up in
:data:`models.scorers.SCORERS` (``bicubic``, ``light``, ``full``) and :data:`models.upscalers.UPSCALERS`
(``bicubic``, ``omnisr``, ``fast``, ``jointsr``). An unknown name, a missing weight or an unavailable backend is
an :class:`~bbmr_stream.errors.InputError` (exit 2, one line)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from bbmr_stream.errors import BackendError, InputError, WeightsError


def make_scorer(name: str, scales: Sequence[int], device: torch.device, mode: str = "frame",
                border: str = "context", backend: str | None = None):
    from models.scorers import get_scorer

    try:
        return get_scorer(name).make(scales, device, mode, border, backend)
    except (WeightsError, BackendError) as e:
        raise InputError(str(e)) from None


def make_upscaler(name: str, scales: Sequence[int], device: torch.device, border: str = "context",
                  backend: str | None = None) -> Callable:
    from models.upscalers import get_upscaler

    try:
        return get_upscaler(name).make(scales, device, border, backend)
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
