"""What an SR architecture is to the rest of the package: its descriptor (spandrel style).

Each architecture is one self-contained module (``models/omnisr.py``, ``models/fastsr.py``,
``models/jointsr.py``) that defines its network, its config dataclass and ``ARCH = ArchSpec(...)``; the
descriptors are registered in one place, :mod:`models.archs`, where the weights registry, the trainer, the
publisher, the upscalers and the scorers look them up by name (the ``arch`` of a ``registry.json`` entry).
This module imports no architecture, so every architecture module can import it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass(frozen=True)
class ArchSpec:
    """One SR architecture.

    - ``name``: the ``arch`` of its registry entries and of the safetensors metadata ``bbmr-train`` writes.
    - ``config_cls``: its hyperparameters, a dataclass with ``to_dict()``; built from a dict by its
      ``from_dict`` classmethod when it has one, else by keyword arguments.
    - ``net_cls``: the network, ``net_cls(config)``.
    - ``per_scale``: True: one network per scale taking (N, 3, h, w) LR and returning (N, 3, s*h, s*w) SR
      (config field ``scale``); the weights registry wraps it in :class:`models.registry.SRModel` with the
      entry's input range, and upscalers/scorers load one per LR scale. False: one multi-scale network
      (config field ``scales``) over the LR blocks of a frame, used as is and called through ``adapter``.
    - ``supports_half``: the network may run under fp16 autocast on CUDA (False: always fp32).
    - ``presets``: the sizes ``bbmr-train sr --arch`` offers: preset name -> config fields besides ``scale``
      (e.g. ``omnisr-light`` = OmniSR with one residual group); per-scale architectures only.
    - ``adapter``: multi-scale architectures only: ``adapter(model, device, fp16)`` is the
      :class:`~bbmr_stream.upscale.Upscaler` (LR blocks -> HR frame) over a loaded model.
    """

    name: str
    config_cls: type
    net_cls: type[nn.Module]
    per_scale: bool = True
    supports_half: bool = True
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    adapter: Callable[..., Any] | None = None

    def config(self, d: Mapping[str, Any]):
        """The config object of a config dict (a registry entry's ``config``, a run's metadata)."""
        from_dict = getattr(self.config_cls, "from_dict", None)
        return from_dict(dict(d)) if from_dict is not None else self.config_cls(**d)

    def build(self, config: Mapping[str, Any]) -> nn.Module:
        """The untrained network of a config dict."""
        return self.net_cls(self.config(config))

    def load(self, config: Mapping[str, Any], state_dict: Mapping[str, Any]) -> nn.Module:
        """The network of a config dict with ``state_dict`` loaded (strict: a mismatch raises RuntimeError)."""
        net = self.build(config)
        net.load_state_dict(state_dict)
        return net

    def scales(self, config: Mapping[str, Any]) -> tuple[int, ...]:
        """The scale(s) a config is for: ``(scale,)`` per scale, ``scales`` multi-scale."""
        return (int(config["scale"]),) if self.per_scale else tuple(int(k) for k in config["scales"])
