"""Collaborative LR (HCD: Xu, Guo et al., "Downscaled Representation Matters: Improving Image Rescaling with
Collaborative Downscaled Images", ICCV'23) for the packager: the LR picture is optimised through the client's
fixed upscaler so that it carries what the upscaler needs.

Algorithm 1 of the paper, per frame, with the models frozen:

1. HR stage: ``N`` projected normalised-gradient steps on a perturbation ``d_y`` of the HR frame ``y``, loss
   ``L(f(g(y + d_y)), y)`` (``g`` the downscaler, ``f`` the client upscaler);
2. LR stage: ``x = g(y + d_y)``, then ``N`` steps on ``d_x``, loss ``L(f(x + d_x), y)``.

Each step is ``d <- Proj_eps(d - alpha * grad / ||grad||_2)`` followed by clipping ``x0 + d`` to [0, 1].

Units and conventions (they differ from the paper's where measurement said so, docs/hcd.md):

- ``eps`` (the l2 ball's radius) and ``alpha`` (the step length) are RMS values per picture value on the
  8-bit scale: the ball of a tensor with ``n`` values is ``||d||_2 <= eps / 255 * sqrt(n)``. The paper's
  ``eps = 0.3`` is an l2 norm over a whole [0, 1] image: on a 960x540 LR picture that is 0.06 per value on the
  8-bit scale, mostly removed by 8-bit quantisation (measured: +0.08 dB before x264, +0.45 % BD-rate after).
  Defaults ``eps = 4``, ``alpha = 1``.
- ``L`` is the MSE of BT.601 Y on [0, 255] (the quantity PSNR-Y measures), plus, with ``rate > 0``, the
  gradient-bits proxy of :mod:`bbmr_stream.rate` on the LR Y plane weighted by ``rate * k^2 * lambda(crf)``
  (SSE per bit of x264's mode decision at the rung's CRF, scaled to HR pixels): the refinement may not buy dB
  with bits the proxy sees.
- Codec in the loop (:func:`refine_segment`, per segment): each LR step is taken at the picture the client
  will decode: the segment's current LR pictures go through the real encoder and decoder, and the gradient at
  the decoded picture is applied to the uncoded one (straight-through: d(decoded)/d(picture) taken as
  identity). Measured through x264 it gives less than the per-frame refinement (docs/hcd.md): the packager
  refines per frame.
- The result is the best iterate by the loss it optimised (the starting point included): refinement never
  increases the loss it measured. Only the area of the source counts (not the packager's padding).
- Video: ``warm`` starts a frame's perturbations from the previous frame's (within the same segment), so
  consecutive pictures change alike and P-frames do not pay for independent noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch

from bbmr_stream.errors import InputError
from bbmr_stream.metrics import rgb_to_y_torch
from bbmr_stream.rate import gradient_bits, h264_lambda
from bbmr_stream.resize import downscale
from models.inference import tile_spans

Codec = Callable[[list[torch.Tensor]], list[torch.Tensor]]  # LR pictures (1, 3, h, w) in [0, 1] -> decoded
GRAD_TILE = 512  # LR tile side of the gradient pass (memory: a 1-OSAG OmniSR backward at 512 px ~3 GB)
GRAD_OVERLAP = 16  # LR context pixels around a gradient tile


@dataclass(frozen=True)
class HCDConfig:
    """One refinement. ``steps``: N_x = N_y (0: the unrefined picture; a refining run needs >= 1);
    ``eps``/``alpha``: RMS per value on the 8-bit scale (see the module docstring); ``hr``: run the HR stage;
    ``rate``: weight of the bit proxy (0: none); ``warm``: warm start from the previous frame; ``smooth``:
    low-pass each step's direction (a perturbation the codec's quantiser keeps). Defaults: the best of the
    variants measured through x264 (docs/hcd.md)."""

    steps: int = 1
    eps: float = 4.0
    alpha: float = 1.0
    hr: bool = True
    rate: float = 0.0
    warm: bool = True
    smooth: float = 0.0  # Gaussian sigma (LR px; x k in the HR stage) of each step's direction (measured: worse)

    def check(self) -> None:
        """The settings of a run that refines: at least one step of a non-zero length in a non-empty ball."""
        if not 1 <= self.steps <= 100:
            raise InputError(f"--refine-steps {self.steps}: 1..100")
        for name, v, lo in (("eps", self.eps, 1e-6), ("alpha", self.alpha, 1e-6), ("rate", self.rate, 0.0),
                            ("smooth", self.smooth, 0.0)):
            if not (math.isfinite(v) and lo <= v <= 255):
                raise InputError(f"--refine-{name} {v}: {'above 0' if lo else '0'}..255")

    @property
    def label(self) -> str:
        """Short text for manifests, e.g. ``hcd1``, ``hcd5-lr-r0.5``."""
        s = f"hcd{self.steps}" + ("" if self.hr else "-lr") + ("" if self.warm else "-cold")
        return s + (f"-r{self.rate:g}" if self.rate else "") + (f"-s{self.smooth:g}" if self.smooth else "")

    def to_dict(self) -> dict:
        return asdict(self)


def ball(t: torch.Tensor, rms: float) -> float:
    """The l2 radius of ``rms`` (8-bit scale) per value of ``t`` (values on [0, 1])."""
    return rms / 255.0 * math.sqrt(t.numel())


def project(x0: torch.Tensor, d: torch.Tensor, eps: float) -> torch.Tensor:
    """``d`` scaled into the l2 ball of radius ``eps``, then ``x0 + d`` clipped to [0, 1] (in place; returns d).
    Clipping only shrinks |d| per value, so the result stays inside the ball."""
    n = d.norm()
    if n > eps:
        d.mul_(eps / n)
    return d.copy_((x0 + d).clamp_(0.0, 1.0) - x0)


class Objective:
    """``L`` of one frame: MSE of Y between the upscaled picture and the HR frame ``y`` (plus the bit proxy),
    and its gradient w.r.t. the LR picture, computed over LR tiles with context (bounded memory, any model).
    ``valid``: the (height, width) of ``y`` the client shows (the rest is the packager's padding): only that
    area counts."""

    def __init__(self, up: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor, k: int, crf: float = 23.0,
                 rate: float = 0.0, tile: int = GRAD_TILE, overlap: int = GRAD_OVERLAP,
                 valid: tuple[int, int] | None = None) -> None:
        self.up, self.k, self.crf, self.rate = up, k, crf, rate
        self.vh, self.vw = valid or tuple(y.shape[-2:])
        self.y_ref = rgb_to_y_torch(y)[..., : self.vh, : self.vw]
        self.tile, self.overlap = tile, overlap
        self.n_hr = self.y_ref.numel()
        self.rate_w = rate * k * k * h264_lambda(crf)

    def value_and_grad(self, x: torch.Tensor, grad: bool = True) -> tuple[float, torch.Tensor | None]:
        """(L, dL/dx) at the LR picture ``x`` (1, 3, h, w); ``grad=False``: (L, None), forward passes only."""
        x = x.detach()
        g_out = torch.zeros_like(x) if grad else None
        total = 0.0
        _, _, h, w = x.shape
        k, o = self.k, self.overlap
        for y0, y1 in tile_spans(h, self.tile):
            for x0, x1 in tile_spans(w, self.tile):
                ye, xe = min(y1 * k, self.vh), min(x1 * k, self.vw)  # the tile's shown HR area
                if ye <= y0 * k or xe <= x0 * k:
                    continue
                a0, a1, b0, b1 = max(y0 - o, 0), min(y1 + o, h), max(x0 - o, 0), min(x1 + o, w)
                with torch.set_grad_enabled(grad):
                    crop = x[..., a0:a1, b0:b1].clone().requires_grad_(grad)
                    sr = self.up(crop)[..., (y0 - a0) * k:ye - a0 * k, (x0 - b0) * k:xe - b0 * k]
                    ref = self.y_ref[..., y0 * k:ye, x0 * k:xe]
                    loss = (rgb_to_y_torch(sr.clamp(0.0, 1.0)) - ref).pow(2).sum() / self.n_hr
                if grad:
                    (g,) = torch.autograd.grad(loss, crop)
                    g_out[..., a0:a1, b0:b1] += g  # the context pixels feed the tile's output too
                total += float(loss.detach())
        if self.rate_w:
            with torch.set_grad_enabled(grad):
                xr = x.clone().requires_grad_(grad)
                bits = gradient_bits(rgb_to_y_torch(xr), self.crf).sum() * self.rate_w / self.n_hr
            if grad:
                (g,) = torch.autograd.grad(bits, xr)
                g_out += g
            total += float(bits.detach())
        return total, g_out


ValueGrad = Callable[[torch.Tensor, bool], tuple[float, "torch.Tensor | None"]]


@dataclass
class Track:
    """One PGD run: the best point, its perturbation, the loss at every evaluated point, and which one is best
    (index into ``losses``)."""

    x: torch.Tensor
    delta: torch.Tensor
    losses: list[float]
    best: int


def gaussian_blur(g: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, C, H, W) blurred per channel by a separable Gaussian of ``sigma`` px (radius 3 sigma, reflect)."""
    if sigma <= 0:
        return g
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=g.dtype, device=g.device)
    w = torch.exp(-0.5 * (t / sigma) ** 2)
    w = w / w.sum()
    c = g.shape[1]
    pad = min(r, g.shape[-1] - 1, g.shape[-2] - 1)
    if pad < r:  # a picture smaller than the kernel: a shorter kernel
        w = w[r - pad:r + pad + 1] / w[r - pad:r + pad + 1].sum()
        r = pad
    out = torch.nn.functional.pad(g, (r, r, 0, 0), mode="reflect")
    out = torch.nn.functional.conv2d(out, w.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    out = torch.nn.functional.pad(out, (0, 0, r, r), mode="reflect")
    return torch.nn.functional.conv2d(out, w.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def pgd(x0: torch.Tensor, value_and_grad: ValueGrad, steps: int, eps: float, alpha: float,
        d0: torch.Tensor | None = None, at_zero: tuple[float, torch.Tensor] | None = None,
        smooth: float = 0.0) -> Track:
    """Algorithm 1's inner loop: ``steps`` normalised-gradient steps of length ``alpha`` on ``d``, kept in the l2
    ball ``eps`` with ``x0 + d`` in [0, 1], from ``d = 0`` or, when a warm start ``d0`` is given and better,
    from ``d0`` (projected). Returns the best evaluated point, ``d = 0`` included: the loss never increases.
    ``at_zero``: the (loss, gradient) at ``x0`` when the caller has them. The last point's gradient is not
    computed (nothing uses it): ``steps + 1`` (+1 with ``d0``) evaluations, ``steps`` (+1) with a gradient."""
    losses, evals = [], []
    starts = [torch.zeros_like(x0)] + ([project(x0, d0.clone(), eps)] if d0 is not None else [])
    for i, d in enumerate(starts):
        val, g = at_zero if i == 0 and at_zero is not None else value_and_grad(x0 + d, steps > 0)
        losses.append(val)
        evals.append((val, d, g, i))
    best = min(evals, key=lambda e: e[0])
    _, d, g, _ = best
    for t in range(steps):
        g = gaussian_blur(g, smooth)
        d = project(x0, d - alpha * g / g.norm().clamp_min(1e-20), eps)
        val, g = value_and_grad(x0 + d, t < steps - 1)
        losses.append(val)
        if val < best[0]:
            best = (val, d, g, len(losses) - 1)
    return Track(x0 + best[1], best[1], losses, best[3])


def hr_stage(y: torch.Tensor, k: int, obj, cfg: HCDConfig, d0: torch.Tensor | None = None,
             down: Callable[[torch.Tensor], torch.Tensor] | None = None
             ) -> tuple[Track, tuple[float, torch.Tensor] | None]:
    """HR-space collaborative example: ``d_y`` through the downscaler (``down``, default bicubic
    :func:`downscale` by ``k``; BBMR: the planes' packer) and ``f`` (``obj``: an :class:`Objective` or a
    :class:`PlanesObjective`). Also returns the loss and LR gradient at the best point's LR picture when they
    were computed (the LR stage starts there)."""
    down = down or (lambda z: downscale(z, k))
    lr_grads: list[torch.Tensor | None] = []

    def vg(z: torch.Tensor, grad: bool = True) -> tuple[float, torch.Tensor | None]:
        if not grad:
            with torch.no_grad():
                val, _ = obj.value_and_grad(down(z), False)
            lr_grads.append(None)
            return val, None
        z = z.detach().requires_grad_(True)
        x = down(z)
        val, gx = obj.value_and_grad(x)
        lr_grads.append(gx)
        (gz,) = torch.autograd.grad(x, z, gx)
        return val, gz

    t = pgd(y, vg, cfg.steps, ball(y, cfg.eps), ball(y, cfg.alpha), d0, smooth=cfg.smooth * k)
    gx = lr_grads[t.best]
    return t, (None if gx is None else (t.losses[t.best], gx))


def lr_stage(x: torch.Tensor, obj: Objective, cfg: HCDConfig, d0: torch.Tensor | None = None,
             at_zero: tuple[float, torch.Tensor] | None = None) -> Track:
    """LR-space collaborative example ``d_x`` through ``f`` (no codec)."""
    return pgd(x, obj.value_and_grad, cfg.steps, ball(x, cfg.eps), ball(x, cfg.alpha), d0, at_zero, cfg.smooth)


class FrameRefiner:
    """Refines the LR pictures of one rendition frame by frame (no codec in the loop), keeping the previous
    frame's perturbations for a warm start; :meth:`reset` at segment starts (closed GOPs)."""

    def __init__(self, up: Callable[[torch.Tensor], torch.Tensor], k: int, cfg: HCDConfig, crf: float) -> None:
        self.up, self.k, self.cfg, self.crf = up, k, cfg, crf
        self.prev: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)
        self.losses: list[tuple[float, float]] = []  # per frame: (loss before, loss after)

    def reset(self) -> None:
        self.prev = (None, None)

    def __call__(self, y: torch.Tensor, valid: tuple[int, int] | None = None) -> torch.Tensor:
        """HR frame (1, 3, H, W) in [0, 1] (H, W multiples of k) -> refined LR picture (1, 3, H/k, W/k);
        ``valid``: the (height, width) of ``y`` that is the source (the rest is padding; None: all)."""
        cfg, k = self.cfg, self.k
        if not cfg.steps:
            return downscale(y, k)
        obj = Objective(self.up, y, k, self.crf, cfg.rate, valid=valid)
        dy0, dx0 = self.prev if cfg.warm else (None, None)
        before, at_x = None, None
        if cfg.hr:
            t, at_x = hr_stage(y, k, obj, cfg, dy0)
            before, dy = t.losses[0], t.delta
            x = downscale(t.x, k)
        else:
            x, dy = downscale(y, k), None
        t = lr_stage(x, obj, cfg, dx0, at_x)
        before = t.losses[0] if before is None else before
        self.prev = (dy, t.delta)
        self.losses.append((before, min(t.losses)))
        return t.x.clamp(0.0, 1.0)


def refine_segment(ys: Sequence[torch.Tensor], xs: Sequence[torch.Tensor], up: Callable[[torch.Tensor], torch.Tensor],
                   k: int, cfg: HCDConfig, crf: float, codec: Codec) -> tuple[list[torch.Tensor], list[float]]:
    """The LR stage of a whole segment with the codec in the loop: per step, one encode + decode of the
    segment's current pictures, then every picture takes a normalised step along the gradient at its decoded
    picture (straight-through). ``xs``: the segment's starting LR pictures (after the HR stage). Returns the
    pictures of the step whose decoded segment had the lowest total loss (step 0 = ``xs``) and the loss per
    step."""
    objs = [Objective(up, y, k, crf, cfg.rate) for y in ys]
    eps = [ball(x, cfg.eps) for x in xs]
    d = [torch.zeros_like(x) for x in xs]
    losses, best = [], (math.inf, list(xs))
    for t in range(cfg.steps + 1):
        cur = [x0 + di for x0, di in zip(xs, d)]
        dec = codec(cur)
        vals, grads = zip(*(o.value_and_grad(p, t < cfg.steps) for o, p in zip(objs, dec)))  # last: no step
        total = float(sum(vals))
        losses.append(total)
        if total < best[0]:
            best = (total, [c.clone() for c in cur])
        if t == cfg.steps:
            break
        d = [project(x0, di - ball(x0, cfg.alpha) * g / g.norm().clamp_min(1e-20), e)
             for x0, di, g, e in zip(xs, d, grads, eps)]
    return best[1], losses


BlockModel = Callable[..., torch.Tensor]  # JointSR's forward: (tiles, index, grid_h, grid_w) -> (1, 3, H, W)


class PlanesObjective:
    """``L`` of one frame of a block family in the planes layout (BBMR): MSE of Y between the multi-scale model's
    output from the blocks the client cuts out of the stacked picture (:func:`bbmr_stream.planes.tiles_of`, the
    rung's scale map ``factors``) and the HR frame ``y`` (padded; only ``valid`` counts), and its gradient
    w.r.t. the stacked picture (zero on the grey, which the client never reads). One whole-frame pass (JointSR
    mixes neighbouring blocks: its deblock branch, its margin)."""

    def __init__(self, model: BlockModel, y: torch.Tensor, grid, factors, scales: tuple[int, ...],
                 valid: tuple[int, int] | None = None) -> None:
        self.model, self.grid, self.factors, self.scales = model, grid, factors, tuple(scales)
        self.vh, self.vw = valid or tuple(y.shape[-2:])
        self.y_ref = rgb_to_y_torch(y)[..., : self.vh, : self.vw]
        self.n_hr = self.y_ref.numel()

    def loss(self, s: torch.Tensor) -> torch.Tensor:
        from bbmr_stream.planes import tiles_of

        tiles, index = tiles_of(s, self.grid, self.factors, self.scales)
        sr = self.model(tiles, index, self.grid.grid_h, self.grid.grid_w)[..., : self.vh, : self.vw]
        return (rgb_to_y_torch(sr.clamp(0.0, 1.0)) - self.y_ref).pow(2).sum() / self.n_hr

    def value_and_grad(self, s: torch.Tensor, grad: bool = True) -> tuple[float, torch.Tensor | None]:
        s = s.detach()
        with torch.set_grad_enabled(grad):
            s = s.clone().requires_grad_(grad)
            loss = self.loss(s)
        if not grad:
            return float(loss), None
        (g,) = torch.autograd.grad(loss, s)
        return float(loss.detach()), g


class PlanesRefiner:
    """:class:`FrameRefiner` for a block family in the planes layout (BBMR through JointSR): per frame, the HR
    stage perturbs the padded frame through the planes' bicubic downscales (:func:`bbmr_stream.planes.pack_float`)
    and the model, the LR stage the stacked picture's blocks; the grey stays grey. ``eps``/``alpha`` are RMS
    per value over the values that move (the HR frame; the blocks' pixels of the stacked picture). Warm start
    from the previous frame's perturbations (masked to this frame's blocks: the map may change); :meth:`reset`
    at segment starts. No rate term (its proxy is per picture; not measured for BBMR)."""

    def __init__(self, model: BlockModel, grid, scales: tuple[int, ...], cfg: HCDConfig) -> None:
        if cfg.rate or cfg.smooth:
            raise InputError("--refine-rate / --refine-smooth with BBMR rungs: not supported (measured for "
                             "plain-sr only)")
        self.model, self.grid, self.scales, self.cfg = model, grid, tuple(scales), cfg
        self.prev: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)
        self.losses: list[tuple[float, float]] = []

    def reset(self) -> None:
        self.prev = (None, None)

    def __call__(self, y: torch.Tensor, factors, valid: tuple[int, int] | None = None) -> torch.Tensor:
        """Padded HR frame (1, 3, H, W) in [0, 1] and its per-block factors -> the refined stacked picture
        (1, 3, h, w) in [0, 1] (:func:`bbmr_stream.planes.stack`)."""
        from bbmr_stream.planes import active_mask, pack_float

        cfg, g, sc = self.cfg, self.grid, self.scales
        s0 = pack_float(y, g, factors, sc)
        if not cfg.steps:
            return s0
        obj = PlanesObjective(self.model, y, g, factors, sc, valid)
        mask = active_mask(g, factors, sc).to(y.device)
        dy0, ds0 = self.prev if cfg.warm else (None, None)
        before, at_s = None, None
        if cfg.hr:
            def pack(z: torch.Tensor) -> torch.Tensor:  # the planes' downscaler
                return pack_float(z, g, factors, sc)

            t, at_s = hr_stage(y, 1, obj, cfg, dy0, down=pack)  # k only scales `smooth`, refused here
            before, dy = t.losses[0], t.delta
            s0 = pack(t.x).detach()
        else:
            dy = None
        n = float(mask.sum()) * 3
        eps, alpha = cfg.eps / 255.0 * math.sqrt(n), cfg.alpha / 255.0 * math.sqrt(n)
        t = pgd(s0, obj.value_and_grad, cfg.steps, eps, alpha, None if ds0 is None else ds0 * mask, at_s)
        before = t.losses[0] if before is None else before
        self.prev = (dy, t.delta)
        self.losses.append((before, min(t.losses)))
        return (s0 * (1 - mask) + t.x * mask).clamp(0.0, 1.0)  # the grey exactly as packed
