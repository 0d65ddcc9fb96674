"""Per-title adaptation: fine-tune a shipped per-scale SR model on one title's own (LR, HR) pictures.

LR = the pictures the client decodes (the rendition's segments, decoded: codec-aware at exactly its CRF), HR =
the source frames (padded as the family pads them). Training: random LR patches of ``patch`` px and the HR
patches at the same place, L1 on RGB in [0, 1], Adam, linear warm-up then a constant learning rate, a warm
start from the generic weights. The schedule is step-based and every random draw comes from one generator
seeded with ``seed``: the model after step n is a function of (base weights, data, seed, n) on a given torch
build and thread count; a time budget only decides n (``steps`` pins it).

Measured (bench/results/adapt_probe): FastSR gains +0.4 to +1.4 dB PSNR-Y over its generic weights on coded
rungs after 4-5 CPU-minutes, 55-75 % of it in the first minute; OmniSR-light ~5x less per CPU-minute.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from bbmr_stream.errors import InputError
from models.title import ENCODINGS

# per architecture: (learning rate, patch, batch) measured in bench/results/adapt_probe (per-scale: LR patch px;
# jointsr: the window's side in blocks, bench/adapt_bbmr.py)
ARCH_DEFAULTS = {"fastsr": (1e-3, 64, 16), "omnisr": (2e-4, 48, 8), "jointsr": (1e-4, 2, 4)}
HD_PIXELS = 1920 * 1080


@dataclass(frozen=True)
class AdaptConfig:
    """How a rendition's model is fine-tuned on the title. Units: ``minutes`` of wall-clock training time per
    model (None: :meth:`budget_minutes`'s default), ``steps`` optimiser steps (None: as many as the budget
    allows; set it for a result that does not depend on the machine's speed), ``frames`` source frames kept
    for training (evenly spaced over the title), ``mem_mib`` the cap on their memory (HR + LR, MiB)."""

    minutes: float | None = None
    steps: int | None = None
    seed: int = 0
    lr: float | None = None  # None: the architecture's (ARCH_DEFAULTS)
    patch: int | None = None  # LR patch side, px
    batch: int | None = None
    warmup: int = 50
    frames: int = 240
    mem_mib: int = 1536
    minutes_per_10s_hd: float = 1.0  # default budget: this many minutes per 10 s of 1080p-sized source
    encoding: str = "delta-int4"  # the model file's (models/title.py): delta-int4 (a quarter of fp16), delta-int8, fp16

    def check(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise InputError(msg)

        need(self.minutes is None or (math.isfinite(self.minutes) and 0 < self.minutes <= 24 * 60),
             "--adapt-minutes: above 0, at most 1440")
        need(self.steps is None or 1 <= self.steps <= 10**7, "--adapt-steps: 1..10000000")
        need(self.lr is None or (math.isfinite(self.lr) and 0 < self.lr < 1), "adapt lr: in (0, 1)")
        need(self.patch is None or 8 <= self.patch <= 512, "adapt patch: 8..512 px")
        need(self.batch is None or 1 <= self.batch <= 256, "adapt batch: 1..256")
        need(self.warmup >= 0 and self.frames >= 1 and self.mem_mib >= 16, "adapt warmup/frames/mem_mib out of range")
        need(math.isfinite(self.minutes_per_10s_hd) and self.minutes_per_10s_hd > 0, "adapt minutes per 10 s > 0")
        need(self.encoding in ENCODINGS, f"adapt encoding {self.encoding!r}: one of {', '.join(ENCODINGS)}")

    def budget_minutes(self, duration_s: float, width: int, height: int) -> float:
        """Training minutes per model: ``minutes``, else ``minutes_per_10s_hd`` per 10 s of source scaled by its
        pixel count against 1080p, at least 0.5 and at most 30."""
        if self.minutes is not None:
            return self.minutes
        return min(30.0, max(0.5, self.minutes_per_10s_hd * duration_s / 10 * width * height / HD_PIXELS))

    def for_arch(self, arch: str) -> tuple[float, int, int]:
        """(learning rate, patch, batch) for architecture ``arch``."""
        lr, patch, batch = ARCH_DEFAULTS.get(arch, ARCH_DEFAULTS["omnisr"])
        return self.lr or lr, self.patch or patch, self.batch or batch

    def to_dict(self) -> dict:
        return asdict(self)


class PatchPool:
    """(LR, HR) pictures of a title: ``lr`` (N, h, w, 3) uint8 and ``hr`` (N, k*h, k*w, 3) uint8 (HR padded as the
    family pads the source); patches are drawn from LR rows/cols ``< valid`` whose HR lies in the source."""

    def __init__(self, lr: np.ndarray, hr: np.ndarray, scale: int, valid: tuple[int, int]) -> None:
        if lr.ndim != 4 or hr.shape != (lr.shape[0], lr.shape[1] * scale, lr.shape[2] * scale, 3):
            raise ValueError(f"LR {lr.shape} and HR {hr.shape} are not x{scale} pairs")
        self.lr, self.hr, self.k = lr, hr, scale
        self.vh, self.vw = min(valid[0], lr.shape[1]), min(valid[1], lr.shape[2])

    def batch(self, rng: np.random.Generator, n: int, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
        p, k = min(patch, self.vh, self.vw), self.k
        fi = rng.integers(len(self.lr), size=n)
        ys = rng.integers(0, self.vh - p + 1, size=n)
        xs = rng.integers(0, self.vw - p + 1, size=n)
        lr = np.stack([self.lr[f, y:y + p, x:x + p] for f, y, x in zip(fi, ys, xs)])
        hr = np.stack([self.hr[f, y * k:(y + p) * k, x * k:(x + p) * k] for f, y, x in zip(fi, ys, xs)])
        t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float().div_(255.0)  # noqa: E731
        return t(lr), t(hr)

    def loss(self, model: torch.nn.Module, rng: np.random.Generator, n: int, patch: int,
             device: torch.device) -> torch.Tensor:
        """L1 of ``model`` (a per-scale SRModel) on a batch of ``n`` random patches."""
        x, y = self.batch(rng, n, patch)
        return torch.nn.functional.l1_loss(model(x.to(device)), y.to(device))


class BlockPool:
    """(LR blocks, HR) of a block family's frames (uniform, BBMR) for a multi-scale model (JointSR): per frame
    its :class:`~bbmr_stream.downscale.LRBlocks` (the decoded pictures unpacked with the frame's scale map) and
    the HR frame ``hr`` (N, H', W', 3) uint8 padded to the block grid. A sample is a window of ``win`` x ``win``
    blocks of one frame whose HR lies in the source (rows/cols of whole blocks when the source has any). The loss
    leaves out ``crop`` HR pixels (default a quarter block) along the window's border: there the model sees
    replicated context instead of the frame's real neighbours (its ``margin``, its convolutions' zero padding),
    which it never sees when it plays a whole frame."""

    def __init__(self, blocks: list, hr: np.ndarray, crop: int | None = None) -> None:
        if not blocks or len(blocks) != len(hr):
            raise ValueError(f"{len(blocks)} LR frames for {len(hr)} HR frames")
        g = blocks[0].grid
        if hr.shape[1:] != (g.grid_h * g.block, g.grid_w * g.block, 3):
            raise ValueError(f"HR {hr.shape} is not the {g.grid_h}x{g.grid_w} grid of {g.block}-px blocks")
        self.blocks, self.hr, self.g = blocks, hr, g
        self.crop = g.block // 4 if crop is None else crop
        self.rows = max(1, g.height // g.block)  # block rows / cols wholly inside the source
        self.cols = max(1, g.width // g.block)
        # per frame: block -> (scale, row of its tile in that scale's tensor)
        self.where = []
        for lb in blocks:
            w = {}
            for k, idx in lb.index.items():
                for r, b in enumerate(np.asarray(idx).tolist()):
                    w[b] = (k, r)
            self.where.append(w)

    def batch(self, rng: np.random.Generator, n: int, win: int):
        """(tiles {k: (m_k, 3, t, t)}, index {k: flat block index in the batch}, HR (n, 3, win*B, win*B), win)."""
        g, B = self.g, self.g.block
        win = max(1, min(win, self.rows, self.cols))
        tiles: dict[int, list] = {}
        index: dict[int, list] = {}
        hr = []
        for s in range(n):
            f = int(rng.integers(len(self.blocks)))
            by, bx = int(rng.integers(self.rows - win + 1)), int(rng.integers(self.cols - win + 1))
            lb = self.blocks[f]
            for i in range(win):
                for j in range(win):
                    k, r = self.where[f][(by + i) * g.grid_w + bx + j]
                    tiles.setdefault(k, []).append(lb.tiles[k][r])
                    index.setdefault(k, []).append(s * win * win + i * win + j)
            hr.append(self.hr[f, by * B:(by + win) * B, bx * B:(bx + win) * B])
        t = {k: torch.stack(v).float() for k, v in tiles.items()}
        ix = {k: torch.tensor(v, dtype=torch.int64) for k, v in index.items()}
        y = torch.from_numpy(np.stack(hr)).permute(0, 3, 1, 2).float().div_(255.0)
        return t, ix, y, win

    def loss(self, model: torch.nn.Module, rng: np.random.Generator, n: int, patch: int,
             device: torch.device) -> torch.Tensor:
        """L1 of ``model`` (a JointSR) on ``n`` random windows of ``patch`` x ``patch`` blocks, less ``crop`` px
        along their border."""
        t, ix, y, win = self.batch(rng, n, patch)
        out = model({k: v.to(device) for k, v in t.items()}, ix, win, win, n_frames=n)
        c = min(self.crop, (win * self.g.block) // 4)
        if c:
            out, y = out[..., c:-c, c:-c], y[..., c:-c, c:-c]
        return torch.nn.functional.l1_loss(out, y.to(device))


@dataclass
class AdaptResult:
    steps: int
    seconds: float
    cpu_seconds: float
    final_l1: float  # mean training L1 over the last 50 steps
    lr: float
    patch: int
    batch: int

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def frames_to_keep(n_frames: int, cfg: AdaptConfig, hr_bytes: int) -> list[int]:
    """Indices of the frames training reads: at most ``cfg.frames``, and at most what ``cfg.mem_mib`` holds
    (``hr_bytes`` per frame, LR included), evenly spaced over the title."""
    cap = max(1, min(cfg.frames, int(cfg.mem_mib * (1 << 20) // max(hr_bytes, 1))))
    if cap >= n_frames:
        return list(range(n_frames))
    return sorted({int(round(v)) for v in np.linspace(0, n_frames - 1, cap)})


def adapt(model: torch.nn.Module, pool: PatchPool | BlockPool, cfg: AdaptConfig, arch: str, budget_s: float,
          on_step: Callable[[int, float], None] | None = None, device: torch.device | None = None,
          trainable: Callable[[str], bool] | None = None) -> AdaptResult:
    """Fine-tune ``model`` (an SRModel on a :class:`PatchPool`, a JointSR on a :class:`BlockPool`; modified in
    place, left in eval mode) for ``cfg.steps`` steps, else until ``budget_s`` seconds of wall-clock time.
    ``on_step(step, elapsed_s)`` after each step; ``trainable(name)``: the parameters trained (default all)."""
    device = device or torch.device("cpu")
    lr, patch, batch = cfg.for_arch(arch)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model.to(device).train()
    params = []
    for n, p in model.named_parameters():
        p.requires_grad_(trainable is None or trainable(n))
        if p.requires_grad:
            params.append(p)
    opt = torch.optim.Adam(params, lr=lr)
    t0, c0 = time.monotonic(), time.process_time()
    losses: list[float] = []
    step = 0
    while (step < cfg.steps) if cfg.steps is not None else (time.monotonic() - t0 < budget_s):
        loss = pool.loss(model, rng, batch, patch, device)
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / max(cfg.warmup, 1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        if on_step is not None:
            on_step(step, time.monotonic() - t0)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return AdaptResult(step, time.monotonic() - t0, time.process_time() - c0,
                       float(np.mean(losses[-50:])) if losses else float("nan"), lr, patch, batch)
