"""The SR architectures, by name (BasicSR-style registry): the one place an ``arch`` string is resolved.

The weights registry (``registry.json`` ``arch``), ``bbmr-train`` (``sr --arch`` presets, run metadata) and
``bbmr-train publish`` look architectures up here. Adding one is a new module defining ``ARCH =
ArchSpec(...)`` (:mod:`models.arch`) plus one :func:`register` line below.
"""

from __future__ import annotations

from bbmr_stream.errors import WeightsError
from bbmr_stream.registry import Registry
from models import craft, fastsr, jointsr, omnisr
from models.arch import ArchSpec

ARCHS: Registry[ArchSpec] = Registry("architecture", WeightsError, "registered:")
register = ARCHS.register


def get_arch(name: str, context: str = "") -> ArchSpec:
    """The registered architecture ``name``; unknown -> WeightsError (``context`` is appended to its subject)."""
    return ARCHS.lookup(name, context)


def sr_presets() -> dict[str, tuple[ArchSpec, dict]]:
    """``bbmr-train sr --arch`` choices: preset name -> (architecture, its config fields besides ``scale``),
    in registration order."""
    return {p: (a, dict(fields)) for a in ARCHS.values() if a.per_scale for p, fields in a.presets.items()}


def arch_of(name: str) -> ArchSpec:
    """The architecture of an ``arch`` recorded in run metadata: an architecture name or a ``bbmr-train sr``
    preset (``omnisr-light`` -> omnisr); unknown -> WeightsError."""
    if name in ARCHS:
        return ARCHS[name]
    preset = sr_presets().get(name)
    return preset[0] if preset else get_arch(name)


register(omnisr.ARCH)
register(fastsr.ARCH)
register(jointsr.ARCH)
register(craft.ARCH)
