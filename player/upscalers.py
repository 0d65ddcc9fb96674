"""The upscaler each rendition is played with (:class:`Upscalers`), made once per name and scale set."""

from __future__ import annotations

import warnings

from bbmr_stream.errors import InputError
from bbmr_stream.family import FAMILIES


class Upscalers:
    """The upscaler of each rendition, made once per name: ``auto`` plays a rendition with the upscaler it was
    measured with (manifest), renditions the client does not super-resolve (plain) with bicubic (a display);
    a name forces one for all."""

    def __init__(self, name: str, scales, device) -> None:
        self.name, self.scales, self.device = name, scales, device
        self.made: dict[tuple, object] = {}

    def name_for(self, rend) -> str:
        try:
            fam = FAMILIES.lookup(rend.kind, f" in rendition {rend.name}")
        except ValueError as e:
            raise InputError(str(e)) from None
        if self.name != "auto" and fam.client_sr:
            if self.name not in fam.upscalers + ("bicubic",):
                raise InputError(f"--upscaler {self.name} cannot play {fam.name} renditions "
                                 f"({', '.join(fam.upscalers + ('bicubic',))})")
            return self.name
        return rend.psnr_y_upscaler if rend.psnr_y_upscaler not in (None, "none") else "bicubic"

    def __call__(self, rend):
        from models.factory import make_upscaler
        from models.upscalers import UPSCALERS

        name = self.name_for(rend)
        # per-scale models (omnisr, fast) load the rendition's scales only: a plain-sr x4 rung needs one model;
        # an unknown name is make_upscaler's InputError
        spec = UPSCALERS.get(name)
        scales = tuple(rend.scales) if spec is not None and spec.per_scale else tuple(self.scales)
        if (name, scales) not in self.made:
            self.made[name, scales] = make_upscaler(name, scales, self.device)
            check_weights(name, rend)
        return self.made[name, scales]

    def backends(self) -> list[str]:
        """The SR inference variants of the upscalers made so far (models/backend.py), sorted."""
        return sorted({u.backend for u in self.made.values() if getattr(u, "backend", None)})


def check_weights(name: str, rend) -> None:
    """Warn when the stream was measured with other weights than this player's (quality may differ)."""
    if rend.weights and name != "bicubic":
        from models.registry import load_registry

        reg = load_registry()
        for wid, sha in rend.weights.items():
            have = reg.get(wid)
            if have is None or have.sha256 != sha:
                warnings.warn(f"the stream was measured with weights {wid} {sha[:12]}..., this player has "
                              f"{have.sha256[:12] + '...' if have else 'none'}: quality may differ from the manifest")
