"""Upscalers by name (:data:`UPSCALERS`, the one place an upscaler name is resolved): LR blocks of a multi-scale
frame -> HR frame (the :class:`bbmr_stream.upscale.Upscaler` protocol).

- ``bicubic``: the core's :class:`~bbmr_stream.upscale.BicubicUpscaler` (no weights).
- ``omnisr``: each scale's blocks super-resolved by that scale's OmniSR (``omnisr-light-x{k}``). With a uniform
  map and the default ``border="context"`` this is OmniSR-O (the whole LR frame through one model);
  ``border="tile"`` stitches blocks super-resolved one by one (the paper's ablation case 3).
- ``fast``: the same per scale with FastSR (models/fastsr.py, ``fastsr-x{k}``): ~40x fewer operations.
- ``jointsr``: :class:`models.jointsr.JointSR` (shipped weights ``jointsr``), one multi-scale model.

Adding an upscaler is one :func:`register_upscaler` line (plus, for a new architecture, its module and its
line in models/archs.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from bbmr_stream.errors import WeightsError
from bbmr_stream.registry import Registry
from bbmr_stream.upscale import BicubicUpscaler, upscale_blocks
from models.archs import get_arch
from models.inference import tiled_sr
from models.registry import get_entry, load_model, load_registry
from models.scorers import family_half, load_family


class OmniSRUpscaler:
    """Per-scale SR models (OmniSR, or FastSR for ``fast``) over a multi-scale frame or a whole plane."""

    def __init__(self, models: dict[int, torch.nn.Module], device: torch.device, border: str = "context",
                 name: str = "omnisr", half: bool | None = None) -> None:
        self.models, self.device, self.border = models, device, border
        self.name = name
        self.half = half  # tiled_sr's: None = fp16 autocast on CUDA; False = fp32 (no half support)

    @property
    def backend(self) -> str:
        """The inference variants used so far (models/backend.py), e.g. ``openvino-bf16``."""
        return ", ".join(sorted({getattr(m, "description", "torch-f32") for m in self.models.values()}))

    def sr_plane(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """(1, 3, h, w) LR in [0, 1] -> (1, 3, k*h, k*w): the whole plane through the xk model (plain-sr)."""
        return self._sr(x, k)

    def _sr(self, x: torch.Tensor, k: int) -> torch.Tensor:
        x = x.to(self.device)
        if x.shape[0] == 1:
            return tiled_sr(self.models[k], x, k, half=self.half)
        with torch.no_grad():
            return self.models[k](x).float()

    def __call__(self, lr) -> torch.Tensor:
        return upscale_blocks(lr, self._sr, self.border).cpu()


@dataclass(frozen=True)
class UpscalerSpec:
    """An upscaler name and the weights it loads.

    - ``weights``: per scale: the registry id prefix of its models (``{weights}-x{k}``, one per LR scale, any
      per-scale architecture); multi-scale: the registry id of the model (its architecture's ``adapter`` makes
      the upscaler); None: bicubic.
    - ``per_scale``: loads a model per LR scale (a rendition needs its own scales only) rather than one model
      for the stream's scale set.
    - ``manifest_weights``: per scale: the id prefix :func:`weights_ids` reports instead of ``weights``
      (``fast`` records the omnisr-light ids, as the packager always has: see :func:`weights_ids`).
    """

    name: str
    weights: str | None = None
    per_scale: bool = False
    manifest_weights: str | None = None

    def make(self, scales: Sequence[int], device: torch.device, border: str = "context",
             backend: str | None = None):
        if self.weights is None:
            return BicubicUpscaler(border)
        if self.per_scale:
            models = load_family(self.weights, scales, device, backend)
            half = family_half(f"{self.weights}-x{k}" for k in scales)
            return OmniSRUpscaler(models, device, border, self.name, half=half)
        model = load_model(self.weights, device)
        e = get_entry(self.weights)
        arch = get_arch(e.arch, f" for {self.weights!r}")
        have = arch.scales(e.config)
        if have != tuple(scales):
            raise WeightsError(f"{self.weights} weights are for scales {have}, not {tuple(scales)}")
        if arch.adapter is None:
            raise WeightsError(f"{self.weights}: architecture {arch.name!r} has no upscaler adapter")
        return arch.adapter(model, device, None if arch.supports_half else False)


UPSCALERS: Registry[UpscalerSpec] = Registry("upscaler", WeightsError)
register_upscaler = UPSCALERS.register
upscaler_names = UPSCALERS.names  # every upscaler name, bicubic included, in registration order
get_upscaler = UPSCALERS.lookup  # unknown -> WeightsError (the factory turns it into an InputError)


def weights_ids(name: str, scales: Sequence[int] = ()) -> list[str]:
    """The registry ids whose sha256 a manifest records for upscaler ``name`` (``rendition.weights``): [] for
    bicubic, ``[weights]`` for a multi-scale model (``["jointsr"]``), and for a per-scale upscaler every
    shipped ``{prefix}-x*`` id, sorted, whatever ``scales`` (the packager's record since the first manifests).

    ``fast`` reports the omnisr-light ids (``manifest_weights``), not its own fastsr ones: that is what the
    packager has always written for it, kept so that manifests stay byte-identical."""
    spec = get_upscaler(name)
    if spec.weights is None:
        return []
    if not spec.per_scale:
        return [spec.weights]
    prefix = f"{spec.manifest_weights or spec.weights}-x"
    return sorted(k for k in load_registry() if k.startswith(prefix))


register_upscaler(UpscalerSpec("bicubic"))
register_upscaler(UpscalerSpec("omnisr", "omnisr-light", per_scale=True))  # the size of JointSR's shipped branches
register_upscaler(UpscalerSpec("fast", "fastsr", per_scale=True, manifest_weights="omnisr-light"))  # for CPU clients
register_upscaler(UpscalerSpec("jointsr", "jointsr"))



def title_upscaler(name: str, path, scale: int, arch: str, base: str, nbytes: int | None, sha256: str | None,
                   device: torch.device) -> OmniSRUpscaler:
    """Upscaler ``name`` (a per-scale one) over a per-title model file (models/title.py) fine-tuned from the
    shipped weights ``base``, verified against ``nbytes`` and ``sha256``; a file that cannot be used raises
    :class:`models.title.TitleModelError`."""
    from models import title

    model, _ = title.load(path, scale, nbytes=nbytes, sha256=sha256, arch=arch, base=title_base(base, arch, scale))
    return OmniSRUpscaler({scale: model.to(device)}, torch.device(device), name=name)


def title_base(base: str, arch: str, scale: int):
    """The shipped weights ``base`` as a title model's :class:`models.title.Base` (their file verified by sha256);
    TitleModelError when this client does not ship them for ``arch`` x``scale``."""
    from models import title

    entry = load_registry().get(base)
    if entry is None or entry.arch != arch or entry.scales != (scale,):
        raise title.TitleModelError("arch", f"base weights {base!r} ({arch} x{scale}) are not shipped with this client")
    try:
        state = load_model(base, "cpu").net.state_dict()
    except WeightsError as e:
        raise title.TitleModelError("arch", f"base weights {base!r}: {e}") from None
    return title.Base(base, dict(entry.config), entry.sha256, state)


def base_weights(upscaler: str, scale: int) -> tuple[str, str] | None:
    """(architecture, registry id) of the generic per-scale weights upscaler ``upscaler`` plays an xK picture
    with (what a title model of that upscaler is fine-tuned from); None: bicubic, a multi-scale model, or no such
    weights shipped."""
    spec = UPSCALERS.get(upscaler)
    if spec is None or not spec.per_scale or spec.weights is None:
        return None
    wid = f"{spec.weights}-x{scale}"
    entry = load_registry().get(wid)
    return (entry.arch, wid) if entry is not None else None
