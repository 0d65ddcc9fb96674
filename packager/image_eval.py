"""The paper's image experiment on the user's own images (``bbmr-eval``, :mod:`packager.eval_cli`), on top of
the core's :mod:`bbmr_stream.evaluate`: scorer and upscaler by name (:mod:`models.factory`), every image of a
list of files and directories.

:func:`eval_images` rescales every image with each allocator at the same LR pixel budget (uniform
``overall``), reconstructs it and returns PSNR-Y (BT.601, unrounded Y, measured on the original unpadded image,
crop 0) and, with ``niqe``, NIQE (MATLAB niqe.m semantics, Y rounded, crop 0). :func:`niqe_images` returns
NIQE only. Bad input is an InputError; nothing is printed (progress: one note per image).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from bbmr_stream.allocate import ALLOCATORS, DEFAULT_OVERALL, DEFAULT_SCALES
from bbmr_stream.errors import InputError
from bbmr_stream.progress import Progress

CONVENTIONS = {"psnr_y": "BT.601 Y (16+65.481R+128.553G+24.966B, RGB in [0,1]), unrounded, "
                         "original unpadded image, crop 0, peak 255",
               "niqe": "MATLAB niqe.m via BasicSR 1.4.2 semantics, Y rounded, crop 0",
               "resize": "torch bicubic antialias (bbmr_stream.resize)"}


@dataclass(frozen=True)
class ImagesConfig:
    """``bbmr-eval images``: the images (files or directories; ``sample``: also scikit-image's sample photos,
    the only input when ``paths`` is empty) and the experiment's settings."""

    paths: tuple[str, ...] = ()
    sample: bool = False
    allocators: tuple[str, ...] = ("uniform", "paper", "optimal")
    scorer: str = "bicubic"  # bicubic | light | full
    upscaler: str = "bicubic"  # bicubic | omnisr | jointsr
    overall: int = DEFAULT_OVERALL
    scales: tuple[int, ...] = DEFAULT_SCALES
    block: int = 128
    mode: str = "frame"  # per-block downscale: whole frame or per block (bbmr_stream.downscale.MODES)
    border: str = "context"  # reconstruct each scale as a whole plane or every tile alone
    niqe: bool = False  # also NIQE of every reconstruction
    device: str = "auto"
    backend: str | None = None  # SR inference runtime on a CPU (models.backend); None: $BBMR_BACKEND or auto


def _mean(images: list[dict], key: str, allocators: Sequence[str]) -> dict:
    return {a: float(np.mean([im[key][a] for im in images])) for a in allocators}


def eval_images(config: ImagesConfig, progress: Progress | None = None) -> dict:
    """The report of ``bbmr-eval images --json``: settings, conventions, per-image results and means."""
    from bbmr_stream.device import pick_device
    from bbmr_stream.evaluate import SAMPLE_IMAGES, eval_image, sample_image
    from bbmr_stream.imageio import list_images, read_image
    from models.factory import make_scorer, make_upscaler

    progress = progress or Progress()
    allocators = list(config.allocators)
    for a in allocators:
        if a not in ALLOCATORS:
            raise InputError(f"unknown allocator {a!r} (choose from {', '.join(ALLOCATORS)})")
    scales = tuple(config.scales)
    device = pick_device(config.device)
    inputs: list[tuple[str, Callable[[], np.ndarray]]] = []
    if config.sample:
        inputs += [(f"skimage:{n}", lambda n=n: sample_image(n)) for n in SAMPLE_IMAGES]
    if config.paths or not config.sample:
        inputs += [(p.name, lambda p=p: read_image(p)) for p in list_images(list(config.paths))]
    scorer = make_scorer(config.scorer, scales, device, config.mode, config.border, config.backend)
    upscaler = make_upscaler(config.upscaler, scales, device, config.border, config.backend)
    images = []
    t0 = time.time()
    for name, load in inputs:
        img = load()
        try:
            r = eval_image(img, allocators, scorer, upscaler, config.overall, scales, config.block, config.mode,
                           config.niqe, device)
        except ValueError as e:
            raise InputError(f"{name}: {e}") from None
        images.append({"name": name} | r)
        progress.note(f"{name}: " + ", ".join(f"{a} {r['psnr_y'][a]:.2f} dB" for a in allocators))
    out = {"scorer": config.scorer, "upscaler": config.upscaler, "overall": config.overall, "scales": list(scales),
           "block": config.block, "downscale_mode": config.mode, "border": config.border,
           "conventions": dict(CONVENTIONS), "images": images,
           "mean": {"psnr_y": _mean(images, "psnr_y", allocators)},
           "seconds": time.time() - t0}
    if config.niqe:
        out["mean"]["niqe"] = _mean(images, "niqe", allocators)
    return out


def niqe_images(paths: Sequence[str], crop: int = 0) -> dict:
    """The report of ``bbmr-eval niqe --json``: NIQE (MATLAB niqe.m semantics, Y) of every image, ``crop``
    pixels cut at every border first."""
    from bbmr_stream.imageio import list_images, read_image
    from bbmr_stream.metrics import niqe

    res = []
    for p in list_images(list(paths)):
        img = read_image(p)
        try:
            v = niqe(img, crop=crop)
        except ValueError as e:
            raise InputError(f"{p}: {e}") from None
        res.append({"name": p.name, "niqe": v})
    return {"crop": crop, "images": res}
