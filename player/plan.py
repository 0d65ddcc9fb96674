"""What is played: the rendition shown, the per-segment plan (one rendition, or the ABR decisions over a
network trace), the first frame, and the comparisons reconstructed beside it."""

from __future__ import annotations

import warnings

from bbmr_stream.errors import InputError
from bbmr_stream.family import Uniform


def abr_plan(man, trace_path: str, pinned_name: str | None, model_of=None):
    """Per-segment renditions from the ABR simulation over the trace (all renditions share segment bounds),
    and its summary for the report. ``model_of(rendition, segment)``: the title model the player would fetch for
    that segment (None: none; default: the manifest's), whose bytes the simulated download adds once."""
    from player.abr import Trace, simulate, summary

    rends = shown_on_sdr(man.renditions, pinned_name)
    n = len(rends[0].segments)
    if any(len(r.segments) != n for r in rends):
        raise InputError("renditions have different segment counts: cannot switch between them")
    pinned = next(i for i, r in enumerate(rends) if r.name == pinned_name) if pinned_name else None
    dec = simulate([[s.bytes * 8 for s in r.segments] for r in rends], [s.duration_s for s in rends[0].segments],
                   [r.bitrate_kbps for r in rends], Trace.load(trace_path), pinned=pinned,
                   quality=[r.psnr_y for r in rends], once=[fetched_once(r, model_of) for r in rends])
    out = summary(dec)
    for d in out["segments"]:
        d["rendition"] = rends[d["rendition"]].name
    return [rends[d.rendition] for d in dec], out


def shown_on_sdr(renditions: list, pinned: str | None = None) -> list:
    """The renditions this player chooses among: it shows SDR, so the SDR renditions when the stream has any (an
    HDR title's SDR ladder), else all (HDR ones are then tone-mapped); a ``pinned`` one is always among them."""
    sdr = [r for r in renditions if r.video_range == "SDR" or r.name == pinned]
    return sdr if any(r.video_range == "SDR" for r in sdr) else list(renditions)


def pick_plan(man, rendition: str | None, trace: str | None, model_of=None):
    """(rendition shown, plan, ABR summary or None): the rendition is ``rendition`` (else the top of the
    ladder); the plan is that rendition, or the ABR decisions over ``trace`` (which ``rendition`` pins)."""
    if rendition:
        cand = [r for r in man.renditions if r.name == rendition]
        if not cand:
            raise InputError(f"no rendition {rendition!r} (have: {', '.join(r.name for r in man.renditions)})")
        rend = cand[0]
    else:
        rend = max(shown_on_sdr(man.renditions), key=lambda r: r.bitrate_kbps)
    if trace:
        plan, abr_summary = abr_plan(man, trace, rendition, model_of)
        return rend, plan, abr_summary
    return rend, rend, None


def start_frame(man, start_s: float) -> int:
    """The first frame played when starting at ``start_s`` seconds."""
    fps = man.source["fps"][0] / man.source["fps"][1]
    start = max(0, int(round(start_s * fps)))
    if start >= man.source["frames"]:
        raise InputError(f"--start {start_s} s is past the end ({man.source['frames'] / fps:.2f} s)")
    return start


def make_comparisons(names, man, rend, device) -> dict:
    """name -> (rendition, upscaler) reconstructed beside the main one, same frames: ``bicubic`` (this
    rendition, bicubic), ``uniform`` (the uniform rendition nearest in bitrate, OmniSR-O, else bicubic)."""
    from models.factory import make_upscaler

    out = {}
    for c in names:
        if c == "bicubic":
            out["bicubic"] = (rend, make_upscaler("bicubic", man.scales, device))
        elif c == "uniform":
            uni = [r for r in man.renditions if r.kind == Uniform.name]
            if not uni:
                warnings.warn("--compare uniform: the stream has no uniform rendition")
                continue
            u = min(uni, key=lambda r: abs(r.bitrate_kbps - rend.bitrate_kbps))
            try:
                out[f"uniform_{Uniform.upscalers[0]}"] = (u, make_upscaler(Uniform.upscalers[0], man.scales, device))
            except InputError:
                out["uniform_bicubic"] = (u, make_upscaler("bicubic", man.scales, device))
        else:
            raise InputError(f"--compare takes bicubic and/or uniform, not {c!r}")
    return out


def fetched_once(rend, model_of=None) -> list[list[tuple[str, float]]]:
    """Per segment of ``rend``: the (file, bits) it needs besides itself: the fMP4 init segment, and the title
    model it is played with (none with the generic weights)."""
    out = []
    for i in range(len(rend.segments)):
        need = [(rend.init.file, rend.init.bytes * 8.0)] if rend.init is not None else []
        m = model_of(rend, i) if model_of is not None else rend.model_for(i)
        out.append(need + ([(m.file, m.bytes * 8.0)] if m is not None else []))
    return out
