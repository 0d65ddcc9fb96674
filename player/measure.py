"""The per-frame measurement stage (:class:`Measure`): PSNR-Y against the reference, NIQE, the comparison
columns; and the reference's frames (:func:`open_reference`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bbmr_stream.errors import InputError
from bbmr_stream.metrics import niqe, psnr_luma


def open_reference(path: str | None, start: int, man=None):
    """Frames of the reference source from ``start`` on (None without one); it must have the stream's source
    size."""
    if not path:
        return None
    from bbmr_stream.decode import frames, probe

    info = probe(path)
    if man is not None and (info.width, info.height) != (man.source["width"], man.source["height"]):
        raise InputError(f"--reference {path} is {info.width}x{info.height}, the stream's source is "
                         f"{man.source['width']}x{man.source['height']}")
    it = frames(info)
    for _ in range(start):
        next(it, None)
    return it


@dataclass
class Measure:
    """The per-frame measurement stage: PSNR-Y against the reference, NIQE, the comparison columns; seconds
    spent per part are added to ``secs``."""

    matrix: str
    full_range: bool
    niqe_every: int
    secs: dict

    def _timed(self, key: str, fn):
        t = time.time()
        out = fn()
        self.secs[key] += time.time() - t
        return out

    def __call__(self, fr, ref_frames, others: dict) -> dict:
        m: dict = {"concealed": int(fr.concealed), "rendition": fr.rendition, "family": fr.family}
        if fr.cause:
            m["cause"] = fr.cause
        if fr.scalemap is not None:
            m.update({f"scale_x{k}_share": v for k, v in fr.scalemap.share().items()})
        ref = self._timed("reference_decode", lambda: next(ref_frames, None) if ref_frames is not None else None)
        if ref is not None:
            # a concealed frame's PSNR is kept apart: the psnr_y mean is over frames shown as coded
            key = "psnr_y_concealed" if fr.concealed else "psnr_y"
            m[key] = self._timed("psnr", lambda: psnr_luma(ref.y, fr.rgb, self.matrix, self.full_range))
        compared = self._timed("compare", lambda: {name: next(it) for name, it in others.items()})
        if ref is not None:
            m.update({f"{name}_psnr_y": psnr_luma(ref.y, b.rgb, self.matrix, self.full_range)
                      for name, b in compared.items()})
        if self.niqe_every and fr.index % self.niqe_every == 0 and min(fr.rgb.shape[:2]) >= 96:
            self._timed("niqe", lambda: m.update({"niqe": niqe(fr.rgb)} | {
                f"{name}_niqe": niqe(b.rgb) for name, b in compared.items()}))  # comparisons get NIQE too
        return m
