"""libx264 options every encoder of the project shares.

:func:`asm_params`: x264's AVX-512 code paths (x264 core 165, the build in PyAV's wheel) make its output differ
from run to run on the same frames and options (measured on this machine's Xeon: 2-6 distinct streams from 6
encodes of the same 48 frames, with or without threads or scene-cut detection; with ``asm=avx2`` or without
asm, one stream every time). On a CPU with AVX-512 the encoders therefore stop at AVX2 (every level up to it is
bit-exact), so the same options give the same bytes.
"""

from __future__ import annotations

import functools


@functools.cache
def asm_params() -> str:
    """``"asm=avx2"`` on a CPU with AVX-512 (and AVX2), else ``""`` (x264's own detection)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # numpy < 2
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:  # numpy's private CPU table moved: x264's own detection
            return ""
    return "asm=avx2" if features.get("AVX512F") and features.get("AVX2") else ""


def with_asm(options: dict[str, str]) -> dict[str, str]:
    """libx264 ``options`` with :func:`asm_params` added to its ``x264-params`` (a copy)."""
    extra = asm_params()
    if not extra:
        return dict(options)
    params = options.get("x264-params", "")
    return {**options, "x264-params": f"{params}:{extra}" if params else extra}
