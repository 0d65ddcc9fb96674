"""The one resize convention of the project: antialiased bicubic (PyTorch ``F.interpolate``).

Every downscale (packager, scorers, training LR) and every bicubic upscale goes through this module, so
the LR pixels a model was trained on are the LR pixels the packager ships.

Convention (``RESIZE_CONVENTION``):
- downscale by an integer factor k: ``F.interpolate(x, scale_factor=1/k, mode="bicubic", antialias=True,
  align_corners=False)``: a Keys cubic kernel with a = -0.5 stretched by k (so it low-passes), half-pixel
  centres; at the image border the truncated kernel's weights are renormalised to sum to 1;
- upscale by k: the same call with ``scale_factor=k`` (antialias is a no-op when enlarging; a = -0.75
  there, PyTorch's bicubic upsampling coefficient) with border pixels replicated;
- results are clamped to [0, 1] (float) before any rounding to uint8.

How it differs from MATLAB ``imresize`` (the convention of published SR numbers): MATLAB also uses a = -0.5
and a k-stretched kernel when shrinking, but pads the border symmetrically (mirror) instead of renormalising
the truncated kernel, and rounds to uint8 after every resize; it also enlarges with a = -0.5. The interior
of a downscaled image is the same to ~1e-6; only the outermost ~2k HR pixels differ. For reference, bicubic
x4 PSNR-Y on Set5 is 28.42 dB with MATLAB LR and 28.64 dB with this LR.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

RESIZE_CONVENTION = "torch-bicubic-antialias-a-0.5-down/a-0.75-up,half-pixel,clamp01"


def downscale(x: torch.Tensor, k: int) -> torch.Tensor:
    """(N, C, H, W) float in [0, 1] -> (N, C, H/k, W/k); H and W must be multiples of k."""
    if k == 1:
        return x
    h, w = x.shape[-2:]
    if h % k or w % k:
        raise ValueError(f"size {h}x{w} is not a multiple of the scale {k}")
    y = F.interpolate(x, size=(h // k, w // k), mode="bicubic", antialias=True, align_corners=False)
    return y.clamp_(0.0, 1.0)


def upscale(x: torch.Tensor, k: int) -> torch.Tensor:
    """(N, C, h, w) float in [0, 1] -> (N, C, k*h, k*w) bicubic."""
    if k == 1:
        return x
    h, w = x.shape[-2:]
    y = F.interpolate(x, size=(h * k, w * k), mode="bicubic", align_corners=False)
    return y.clamp_(0.0, 1.0)


def resize_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, C, H, W) float in [0, 1] -> (N, C, height, width) at any ratio, same convention: antialiased bicubic
    when shrinking (per axis), plain bicubic when enlarging (what a display does with a low rung)."""
    if x.shape[-2:] == (height, width):
        return x
    shrink = height < x.shape[-2] or width < x.shape[-1]
    y = F.interpolate(x, size=(height, width), mode="bicubic", antialias=shrink, align_corners=False)
    return y.clamp_(0.0, 1.0)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) float32 in [0, 1]."""
    if img.dtype != np.uint8 or img.ndim != 3:
        raise ValueError("expected an (H, W, C) uint8 image")
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float().div_(255.0)


def levels8(x: torch.Tensor) -> torch.Tensor:
    """The one 8-bit quantisation of the project: float in [0, 1] -> float levels 0..255, clamped, round half
    up (``floor(255 x + 0.5)``)."""
    return x.detach().float().clamp(0.0, 1.0).mul(255.0).add_(0.5).floor_()


def quantize(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats rounded to the nearest 8-bit level and back to [0, 1] (:func:`levels8`)."""
    return levels8(x).div_(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) float in [0, 1] -> (H, W, 3) uint8 (:func:`levels8`)."""
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError("to_uint8 takes one image")
        x = x[0]
    return levels8(x).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
