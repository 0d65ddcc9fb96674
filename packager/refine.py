"""The encode stage's LR refinement (``--refine hcd``): collaborative LR pictures (models/hcd.py) for the rungs
whose spec says ``refine``, through the client upscaler the rendition is measured and played with.

Rungs of one family and factor at several CRFs share one refined picture per frame (the refinement does not
depend on the CRF unless its rate term does); each shared picture has one :class:`models.hcd.FrameRefiner`,
whose warm start is dropped at every segment start: segments stay independent units (closed GOPs), so a
segment's bytes do not depend on the ones before it.

With per-title models (``--adapt``), a refined plain-sr rung is refined twice: first through the generic
network (its per-title model is fine-tuned on those pictures, as on any rung), then again, segment by segment,
through the per-title model that serves the segment (``title``): the network the client will run. The second
pass's pictures are the ones shipped; each rung then has its own refiner per model (no sharing across CRFs:
every rung has its own model).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from bbmr_stream.errors import InputError
from bbmr_stream.family import Family
from bbmr_stream.resize import upscale
from models.hcd import FrameRefiner, HCDConfig, PlanesRefiner


def refinable_upscaler(name: str) -> bool:
    """Whether ``--upscaler NAME`` can refine (a per-scale network or bicubic; ``auto``: the family's first)."""
    from models.upscalers import get_upscaler

    if name == "auto":
        return True
    spec = get_upscaler(name)
    return spec.weights is None or spec.per_scale


def differentiable_blocks(upscaler) -> Callable[..., torch.Tensor]:
    """The multi-scale network of a block upscaler (JointSR: ``.model``), frozen, eager torch (BBMR rungs)."""
    model = getattr(upscaler, "model", None)
    if model is None:
        raise InputError(f"--refine: BBMR rungs are refined through JointSR, not {getattr(upscaler, 'name', upscaler)}")
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def differentiable_sr(upscaler, k: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The xK network of a per-scale upscaler (``.models[k]``; eager torch whenever its input needs a gradient,
    models/backend.py), or bicubic; frozen."""
    models = getattr(upscaler, "models", None)
    if models is None:
        if upscaler.__class__.__name__ != "BicubicUpscaler":
            raise InputError(f"--refine: the {upscaler.__class__.__name__} upscaler is not a per-scale model")
        return lambda x: upscale(x, k)
    net = models[k]
    for p in net.parameters():
        p.requires_grad_(False)
    return net


class Refiners:
    """Refined pictures of the encode stage's refined rungs, one refiner per shared picture."""

    def __init__(self, cfg: HCDConfig, pick: Callable[[Family], tuple[str, object]], device,
                 title: tuple[dict, object] | None = None) -> None:
        self.cfg, self.pick, self.device = cfg, pick, device
        # (rung name -> its Rendition with per-title models, the stream directory they are in): refine through them
        self.title, self.root = title if title is not None else ({}, None)
        self.segment = 0  # the stream segment being encoded (the encode stage sets it): which title model serves
        self.refiners: dict[tuple, FrameRefiner] = {}
        self.upscalers: dict[str, str] = {}  # rung name -> the upscaler it was refined through
        self.seconds: dict[tuple, float] = {}  # per shared picture: wall-clock seconds refining

    def key(self, fam: Family, factors) -> tuple:
        """The picture key of a refined rung: its family's, plus the CRF when the rate term depends on it. An
        allocating family's key leaves out the map (one refiner follows the rung's maps from frame to frame; every
        rung of the pass has the frame's one map)."""
        pk = fam.picture_key(factors)
        key = ("refined", pk[:-1] if fam.allocates else pk, fam.spec.crf if self.cfg.rate else None)
        ref = self.title_model(fam)
        return key + (fam.spec.name, ref.file) if ref is not None else key

    def title_model(self, fam: Family):
        """The per-title model (a :class:`bbmr_stream.manifest.ModelRef`) a rung is refined through in the current
        segment, None: the generic network."""
        rend = self.title.get(fam.spec.name)
        return rend.model_for(self.segment) if rend is not None else None

    def _make(self, fam: Family):
        """The refiner of a shared picture: through the rung's upscaler (per-scale network or bicubic; BBMR:
        JointSR)."""
        name, up = self.pick(fam)
        ref = self.title_model(fam)
        if ref is not None:
            from models.upscalers import title_upscaler

            up = title_upscaler(name, self.root / ref.file, ref.scale, ref.arch, ref.base, ref.bytes, ref.sha256,
                                self.device)
            name = f"{name}+title:{ref.file}"
        if fam.allocates:
            ref = PlanesRefiner(differentiable_blocks(up), fam.geo.grid, tuple(fam.lr_scales()), self.cfg)
        else:
            k = fam.overall()  # plain-sr: its factor; uniform: the one plane's
            ref = FrameRefiner(differentiable_sr(up, k), k, self.cfg, fam.spec.crf)
        ref.upscaler = name
        return ref

    def pictures(self, fam: Family, x: torch.Tensor, factors, segment_start: bool) -> list[np.ndarray]:
        key = self.key(fam, factors)
        ref = self.refiners.get(key)
        if ref is None:
            ref = self.refiners[key] = self._make(fam)
        if segment_start:
            ref.reset()
        t = time.perf_counter()
        with torch.enable_grad():
            pics = fam.refined_pictures(x.to(self.device), factors, ref)
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t
        return pics

    def record(self, fam: Family, factors) -> None:
        """Note the upscaler a refined rung's pictures went through (every rung sharing a picture)."""
        self.upscalers[fam.spec.name] = self.refiners[self.key(fam, factors)].upscaler

    def state(self) -> dict:
        """Per shared picture key: (the losses per frame, seconds refining, the upscaler), for
        :func:`refine_summary` (a segment task's share of a run's refinement)."""
        return {key: (list(ref.losses), self.seconds.get(key, 0.0), ref.upscaler) for key, ref in self.refiners.items()}

    def summary(self) -> dict:
        return refine_summary([self.state()])


def refine_summary(states: list[dict]) -> dict:
    """Per shared picture over :meth:`Refiners.state` of several tasks: frames refined, seconds per frame, the
    mean loss (MSE of Y, [0, 255]) before and after, and the upscaler."""
    merged: dict = {}
    for st in states:
        for key, (losses, seconds, upscaler) in st.items():
            m = merged.setdefault(key, [[], 0.0, upscaler])
            m[0] += losses
            m[1] += seconds
    out = {}
    for key, (losses, seconds, upscaler) in merged.items():
        if losses:
            b, a = np.mean(losses, axis=0)
            n = len(losses)
            out[" ".join(map(str, key[1][:2] + (key[2] or "",))).strip()] = {
                "frames": n, "s_per_frame": round(seconds / n, 3),
                "mse_y_before": round(float(b), 4), "mse_y_after": round(float(a), 4), "upscaler": upscaler}
    return out
