"""Scorers and upscalers by name: ``bicubic`` from the core, ``light`` / ``full`` / ``omnisr`` / ``jointsr``
from the shipped weights. The one place the command-line tools turn a name into an object; a missing weight
is an :class:`~bbmr_stream.imageio.InputError` (exit 2, one line)."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from bbmr_stream.imageio import InputError
from bbmr_stream.upscale import BicubicUpscaler
from models.registry import WeightsError


def make_scorer(name: str, scales: Sequence[int], device: torch.device, mode: str = "frame",
                border: str = "context"):
    if name == "bicubic":
        from bbmr_stream.score import BicubicScorer

        return BicubicScorer(scales, mode=mode, border=border)
    from models.scorers import make_model_scorer

    try:
        return make_model_scorer(name, scales, device, border)
    except WeightsError as e:
        raise InputError(str(e)) from None


def make_upscaler(name: str, scales: Sequence[int], device: torch.device, border: str = "context") -> Callable:
    if name == "bicubic":
        return BicubicUpscaler(border)
    from models.upscalers import make_model_upscaler

    try:
        return make_model_upscaler(name, scales, device, border)
    except WeightsError as e:
        raise InputError(str(e)) from None
