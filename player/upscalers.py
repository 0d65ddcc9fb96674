"""The upscaler each rendition is played with (:class:`Upscalers`), made once per name and scale set."""

from __future__ import annotations

import warnings

from bbmr_stream.errors import InputError, is_disk_full
from bbmr_stream.family import FAMILIES


class Upscalers:
    """The upscaler of each rendition, made once per name: ``auto`` plays a rendition with the upscaler it was
    measured with (manifest), renditions the client does not super-resolve (plain) with bicubic (a display);
    a name forces one for all.

    A rendition with per-title models (manifest ``models``) is played with the model that serves the segment,
    fetched through ``fetch(file) -> local path`` the first time it is needed and verified (size, sha256,
    architecture, scale: models/title.py) when the upscaler is the one the model was fine-tuned for. A model
    that cannot be used is never fatal: the generic weights play instead, the fallback warned and counted in
    :attr:`fallbacks` (``{"rendition", "file", "cause", "detail"}``, cause from models.title.CAUSES or
    ``fetch``)."""

    def __init__(self, name: str, scales, device, fetch=None) -> None:
        self.name, self.scales, self.device, self.fetch = name, scales, device, fetch
        self.made: dict[tuple, object] = {}
        self.titled: dict[str, object] = {}  # model file -> its upscaler, or None after a fallback
        self.fallbacks: list[dict] = []

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

    def __call__(self, rend, segment: int = 0):
        name = self.name_for(rend)
        ref = self.model_ref(rend, segment)
        if ref is not None and self.fetch is not None:
            up = self.title(name, rend, ref)
            if up is not None:
                return up
        return self.generic(name, rend)

    def model_ref(self, rend, segment: int):
        """The title model segment ``segment`` of ``rend`` is played with: the one serving it, when the rendition
        plays with the upscaler it was fine-tuned for (None: the generic weights)."""
        from models.upscalers import base_weights

        ref = rend.model_for(segment) if rend.models else None
        if ref is None or tuple(rend.scales) != (ref.scale,):
            return None
        return ref if base_weights(self.name_for(rend), ref.scale) == (ref.arch, ref.base) else None

    def title(self, name: str, rend, ref):
        """The upscaler over the title model ``ref``, None (generic weights) when it cannot be used."""
        key = (ref.file, ref.sha256, ref.bytes, ref.scale, ref.arch, ref.base, name)
        if key not in self.titled:
            import http.client

            from models.title import TitleModelError
            from models.upscalers import title_upscaler

            try:
                path = self.fetch(ref.file)
                self.titled[key] = title_upscaler(name, path, ref.scale, ref.arch, ref.base, ref.bytes, ref.sha256,
                                                  self.device)
            except (TitleModelError, OSError, http.client.HTTPException) as e:
                if is_disk_full(e):  # the download did not fit on the local disk: not the model's fault
                    raise
                cause = getattr(e, "cause", "fetch")
                warnings.warn(f"model {ref.file} of {rend.name}: {cause} ({e}); playing the generic {ref.base}")
                self.fallbacks.append({"rendition": rend.name, "file": ref.file, "cause": cause,
                                       "detail": str(e)[:300]})
                self.titled[key] = None
        return self.titled[key]

    def models_used(self) -> list[str]:
        """The title model files played with, sorted."""
        return sorted({k[0] for k, u in self.titled.items() if u is not None})

    def generic(self, name: str, rend):
        from models.factory import make_upscaler
        from models.upscalers import UPSCALERS

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
