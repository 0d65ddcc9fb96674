"""The auto ladder's choice with per-title models (``--ladder auto --adapt``, :func:`packager.package`): which
plain-sr rungs to adapt beside the searched ladder (:func:`title_candidates`), and the measured choice among
everything packaged, each adapted rung also as its generic variant (:func:`select_titled`); an explicit ladder's
rule (:func:`drop_useless_models`). Run on the stream being written (packager.pipeline's ``select`` hook).
"""

from __future__ import annotations

import math
from pathlib import Path

from bbmr_stream.family import Plain, PlainSR, RungSpec, rendition_label
from bbmr_stream.manifest import Rendition
from packager.ladder import Point, choose


def title_candidates(specs: list[RungSpec], width: int, height: int, kbps: dict[str, float]) -> list[RungSpec]:
    """plain-sr x2 and x4 rungs to adapt beside an auto ladder's rungs ``specs`` (``kbps``: their measured rates by
    name): for each plain rung in the ladder's lower half (rate at most the geometric middle of its range), the
    xK rung expected at about its rate: its CRF moved by 6 x log2 of the rate ratio expected from the pixel
    counts (rate ~ pixels^0.75; x264 halves the rate per +6 CRF). The measured choice (:func:`select_titled`)
    decides what ships."""
    rates = [kbps[s.name] for s in specs if s.name in kbps]
    if not rates:
        return []
    mid = math.sqrt(min(rates) * max(rates))
    have = {s.name for s in specs}
    out: dict[str, RungSpec] = {}
    for s in specs:
        if s.family != Plain.name or kbps.get(s.name, math.inf) > mid:
            continue
        w, h = s.size or (width, height)
        for k in PlainSR.FACTORS[:2]:
            if min(width, height) // k < 32:
                continue
            crf = round(s.crf + 6 * 0.75 * math.log2((width / k) * (height / k) / (w * h)))
            spec = RungSpec(PlainSR.name, float(min(51, max(18, crf))), factor=k)
            if spec.name not in have:
                out[spec.name] = spec
    return list(out.values())


def select_titled(renditions: list[Rendition], max_rungs: int, ratio: float, root: Path) -> list[Rendition]:
    """The auto ladder's measured choice among what was packaged: every rendition as measured on the whole title
    (rate with its model bytes), and each adapted one also as its generic variant (rate without the model,
    ``psnr_y_generic``); :func:`packager.ladder.choose` picks the rungs. A rung chosen in its generic variant
    loses its model (file deleted, rate and PSNR-Y back to the generic ones); a rendition not chosen is removed
    with its files. Returns the renditions kept, in their order."""
    pts = []
    for r in renditions:
        if r.psnr_y is None:
            return renditions  # unmeasured: nothing to choose by
        pts.append(Point(r.name, r.name, rendition_label(r), r.lr_width, r.lr_height, r.crf, r.bitrate_kbps,
                         r.psnr_y))
        if r.models and r.psnr_y_generic is not None:
            pts.append(Point(r.name, r.name + GENERIC, r.kind, r.lr_width, r.lr_height, r.crf,
                             r.bitrate_kbps - r.parts_kbps.get("model", 0.0), r.psnr_y_generic))
    chosen = {p.name for p in choose(pts, max_rungs, ratio=ratio)}
    kept = []
    for r in renditions:
        if r.name + GENERIC in chosen and r.name not in chosen:  # both chosen (one stream): the model stays
            drop_models(r, root)
        if r.name in chosen or r.name + GENERIC in chosen:
            kept.append(r)
        else:
            remove_rendition(r, root)
    return kept


GENERIC = "+generic"  # the name of an adapted rendition's generic variant in select_titled


def drop_models(r: Rendition, root: Path) -> None:
    """Ship rendition ``r`` with the generic weights: its model files deleted, rate and PSNR-Y the generic ones."""
    for m in r.models:
        (root / m.file).unlink(missing_ok=True)
    r.bitrate_kbps = round(r.bitrate_kbps - r.parts_kbps.pop("model", 0.0), 2)
    r.models, r.psnr_y, r.psnr_y_generic = [], r.psnr_y_generic, None


def drop_useless_models(renditions: list[Rendition], root: Path) -> list[Rendition]:
    """An explicit ladder's rule: a model that does not raise its rendition's PSNR-Y over the generic weights'
    (same frames) is not shipped (its bytes would buy nothing)."""
    for r in renditions:
        if r.models and r.psnr_y_generic is not None and r.psnr_y is not None and r.psnr_y <= r.psnr_y_generic:
            drop_models(r, root)
    return renditions


def remove_rendition(r: Rendition, root: Path) -> None:
    """Delete a rendition's segments, init segment, playlist and models from the stream being written."""
    init = [r.init.file] if r.init is not None else []
    for f in [s.file for s in r.segments] + [m.file for m in r.models] + [r.playlist] + init:
        (root / f).unlink(missing_ok=True)
