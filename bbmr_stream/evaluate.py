"""The paper's image experiment as a library (the ``bbmr-eval`` command is ``packager/eval_cli.py``):
:func:`rescale` an image with per-block factors and an upscaler, :func:`eval_image` every allocator at the
same LR pixel budget (uniform ``overall``): PSNR-Y (BT.601, unrounded Y, on the original unpadded image,
crop 0) and optionally NIQE (MATLAB niqe.m semantics, Y rounded, crop 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from bbmr_stream.allocate import DEFAULT_OVERALL, DEFAULT_SCALES, allocate, budget
from bbmr_stream.blocks import BlockGrid, pad_tensor
from bbmr_stream.downscale import downscale_blocks
from bbmr_stream.errors import InputError
from bbmr_stream.metrics import niqe, psnr_y
from bbmr_stream.resize import to_tensor, to_uint8

SAMPLE_IMAGES = ("astronaut", "coffee", "chelsea", "rocket")


def sample_image(name: str) -> np.ndarray:
    """A photo bundled with scikit-image as (H, W, 3) uint8 RGB."""
    from skimage import data

    return np.ascontiguousarray(getattr(data, name)()[..., :3])


@dataclass
class Rescaled:
    image: np.ndarray  # (H, W, 3) uint8 reconstruction
    factors: np.ndarray  # (n_blocks,) uint8
    lr_pixels: int


def rescale(img: np.ndarray, factors: np.ndarray, upscaler: Callable, block: int = 128, mode: str = "frame",
            device: torch.device | str = "cpu") -> Rescaled:
    """Downscale ``img`` per block by ``factors`` and reconstruct it with ``upscaler``."""
    x = to_tensor(img).to(device)
    grid = BlockGrid(img.shape[0], img.shape[1], block)
    lr = downscale_blocks(pad_tensor(x, block), grid, factors, mode)
    with torch.no_grad():
        hr = upscaler(lr)
    return Rescaled(to_uint8(hr[..., : grid.height, : grid.width].float().cpu()), lr.factors, lr.lr_pixels)


def eval_image(img: np.ndarray, allocators: Sequence[str], scorer, upscaler, overall: int = DEFAULT_OVERALL,
               scales: Sequence[int] = DEFAULT_SCALES, block: int = 128, mode: str = "frame",
               with_niqe: bool = False, device: torch.device | str = "cpu") -> dict:
    grid = BlockGrid(img.shape[0], img.shape[1], block)
    dist = None
    if any(a != "uniform" for a in allocators):
        dist = scorer.score(to_tensor(img).to(device), block)
    res: dict = {"width": int(img.shape[1]), "height": int(img.shape[0]), "blocks": grid.n_blocks,
                 "budget": budget(grid.n_blocks, overall, block), "lr_pixels": {}, "psnr_y": {}, "share": {}}
    if with_niqe:
        res["niqe"] = {}
    for a in allocators:
        d = dist if dist is not None else np.zeros((grid.n_blocks, len(scales)))
        factors = allocate(a, d, scales, overall, block, weights=grid.valid_fraction())
        r = rescale(img, factors, upscaler, block, mode, device)
        res["lr_pixels"][a] = r.lr_pixels
        res["psnr_y"][a] = psnr_y(img, r.image, crop=0)
        res["share"][a] = {str(k): float(np.mean(factors == k)) for k in scales}
        if with_niqe:
            res["niqe"][a] = niqe(r.image, crop=0)
    return res


def parse_scales(text: str) -> tuple[int, ...]:
    try:
        s = tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        raise InputError(f"--scales must be comma-separated integers, got {text!r}") from None
    if not s or s[0] < 1:
        raise InputError(f"--scales must be positive integers, got {text!r}")
    return s
