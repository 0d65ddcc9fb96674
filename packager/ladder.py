"""The per-title ladder (``--ladder auto``) and the candidate measurement it shares with ``bbmr-bench rd``.

1. Candidates: every family of :mod:`bbmr_stream.family` at several CRFs: ``plain`` at 1, 2/3, 1/2, 1/3 and
   1/4 of the source size, ``plain-sr`` at 1/2 and 1/4, ``uniform`` and ``bbmr`` (:func:`candidate_specs`).
2. Measurement (:func:`measure_candidates`): the packager itself runs on a sample of the title (up to
   ``sample_segments`` segments spread evenly over it, re-timed back to back) with every candidate as a
   rung: bytes as shipped (HLS segments), PSNR-Y on evenly spaced frames (``bbmr_stream.metrics.psnr_luma``).
3. Choice (:func:`choose`): the Pareto front of all candidates (higher PSNR-Y at lower rate) less the points
   under another family's front (:func:`efficient`), then rungs 1.5-2x apart in rate from the lowest point up
   to where quality saturates (the next rung would add less than ``min_gain_db``), at most ``max_rungs``.
   Whatever family is on the front at a rate ships there; a dominated point never does.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from bbmr_stream.errors import InputError
from bbmr_stream.family import FAMILIES, Plain, PlainSR, RungSpec, base_family, parse_rung
from bbmr_stream.progress import Progress
from packager.config import AutoLadder, PackageConfig
from packager.hull import pareto_of

PLAIN_FRACTIONS = (1.0, 2 / 3, 1 / 2, 1 / 3, 1 / 4)
PLAIN_CRFS = (18, 23, 28, 33, 38)
# the dense plain front of ``bbmr-bench rd --dense`` and the resolutions the hull search tries
DENSE_FRACTIONS = (1.0, 3 / 4, 2 / 3, 1 / 2, 3 / 8, 1 / 3, 1 / 4)
DENSE_CRFS = tuple(range(18, 52))  # x264's useful range: 51 is H.264's largest QP
SR_FACTORS = (2, 4)
BLOCK_CRFS = PLAIN_CRFS  # since planes v2 a uniform / bbmr picture costs about what a plain one does at a CRF
# --fast: 13 candidates instead of 45, the families that reach the front in the study of docs/rd.md (plain and
# plain-sr; uniform and bbmr are never efficient there), sizes 1, 1/2, 1/4 and CRFs 6 apart
FAST = {"families": (Plain.name, PlainSR.name), "fractions": (1.0, 1 / 2, 1 / 4), "plain_crfs": (23, 29, 35),
        "sr_crfs": (29, 35)}


@dataclass
class Point:
    """One measured candidate: rate (bytes as shipped), PSNR-Y, and what made it."""

    rung: str  # the --ladder item
    name: str
    family: str
    width: int  # coded picture (first stream)
    height: int
    crf: float
    kbps: float
    psnr_y: float
    niqe: float | None = None
    upscaler: str | None = None
    es_kbps: float | None = None  # coded video only (elementary streams, no MPEG-TS/PES overhead)

    @property
    def spec(self) -> RungSpec:
        return parse_rung(self.rung)


def candidate_specs(width: int, height: int, families: tuple[str, ...] = tuple(FAMILIES),
                    plain_crfs=PLAIN_CRFS, block_crfs=BLOCK_CRFS, fractions=PLAIN_FRACTIONS,
                    sr_crfs=None, refine: bool = False, refine_all: bool = False) -> list[RungSpec]:
    """The candidate rungs of a ``width`` x ``height`` title, family by family in registry order: plain at
    ``fractions`` of the size and ``plain_crfs``, plain-sr at :data:`SR_FACTORS` and ``sr_crfs`` (default
    ``plain_crfs``), the block families at ``block_crfs`` (``Family.candidates``); ``refine``: each rung of a
    refinable family also refined (``--refine hcd``), after the others: the families with ``auto_refine``, or
    with ``refine_all`` every refinable one (the study)."""
    crfs = {Plain.name: plain_crfs, PlainSR.name: sr_crfs or plain_crfs}
    specs = [spec for name, cls in FAMILIES.items() if name in families
             for spec in cls.candidates(width, height, crfs.get(name, block_crfs), fractions, SR_FACTORS)]
    if refine:
        specs += [dataclasses.replace(s, refine=True) for s in specs
                  if FAMILIES[s.family].refinable and (refine_all or FAMILIES[s.family].auto_refine)]
    return specs


def sample_segments(n_segments: int, count: int) -> list[int] | None:
    """Indices of ``count`` segments spread evenly over ``n_segments`` (None: all of them)."""
    if count <= 0 or n_segments <= count:
        return None
    step = n_segments / count
    return sorted({int(step * (i + 0.5)) for i in range(count)})


TITLE_MARK = "+title"  # a point's upscaler with a per-title model (its bytes in the point's rate)


def measure_candidates(config: PackageConfig, specs: list[RungSpec], progress: Progress | None = None,
                       workdir: Path | None = None, segments: list[int] | None = None,
                       adapt: bool = False) -> tuple[list[Point], dict]:
    """Package the title with every candidate as a rung (on ``segments`` of the title, None = all frames up to
    ``max_frames``), measured, into a temporary directory (under ``workdir``), and return the measured points
    and the manifest's source and conventions. ``adapt``: with ``config.adapt``'s per-title models (their bytes
    in each point's rate); else generic weights only."""
    from packager.pipeline import package_rungs

    with tempfile.TemporaryDirectory(prefix="bbmr-candidates-", dir=workdir) as td:
        # the candidates are the 8-bit ladder's (an HDR or 10-bit source's 10-bit rungs follow its plain rungs)
        cfg = dataclasses.replace(config, out=str(Path(td) / "stream"), force=True, measure=True, web_models=False,
                                  sample=tuple(segments) if segments else None, ranges="sdr-only",
                                  adapt=config.adapt if adapt else None)
        man = package_rungs(cfg, specs, progress, notes=False)
    rungs = {s.name: s for s in specs}
    points = [Point(rungs[r.name].text, r.name, rungs[r.name].family_label, r.lr_width, r.lr_height, r.crf,
                    r.bitrate_kbps, r.psnr_y, r.niqe, r.psnr_y_upscaler + TITLE_MARK if r.models else r.psnr_y_upscaler,
                    None if r.es_kbps is None else round(r.es_kbps + r.parts_kbps.get("model", 0.0), 2))
              for r in man.renditions]  # a model's bytes count in the ES rate too (the client downloads them)
    meta = {"source": man.source, "conventions": man.conventions, "segments": segments,
            "models": {r.name: [m.__dict__ for m in r.models] for r in man.renditions if r.models},
            "psnr_y_generic": {r.name: r.psnr_y_generic for r in man.renditions if r.psnr_y_generic is not None},
            "settings": {"codec": config.codec, "preset": config.preset, "segment_s": config.segment,
                         "scorer": man.scorer, "allocator": man.allocator, "layout": config.layout,
                         "overall": man.overall, "scales": man.scales, "block": man.block,
                         "rate_lambda": config.rate_lambda, "container": man.container}}
    return points, meta


def pareto(points: list[Point]) -> list[Point]:
    """Points not dominated by another (no other has rate <= and PSNR-Y >= with one strict), by rate."""
    return pareto_of(points)


def shortfall(p: Point, curve: list[Point]) -> float | None:
    """dB by which ``p`` lies under ``curve`` (points by rate) interpolated linearly in log rate; None
    outside the curve's rate range."""
    for u, v in zip(curve, curve[1:]):
        if u.kbps <= p.kbps <= v.kbps:
            t = 0.0 if v.kbps == u.kbps else math.log(p.kbps / u.kbps) / math.log(v.kbps / u.kbps)
            return u.psnr_y + t * (v.psnr_y - u.psnr_y) - p.psnr_y
    if curve and p.kbps == curve[0].kbps:
        return curve[0].psnr_y - p.psnr_y
    return None


RATE_TOL = 0.02  # rates within 2 % are equal: the MPEG-TS muxer alone moves a segment by a 188-byte packet


def efficient(points: list[Point], tol_db: float = 0.05, rate_tol: float = RATE_TOL) -> list[Point]:
    """The Pareto front of all points, less those lying more than ``tol_db`` under another family's front
    (interpolated linearly in log rate) or more than ``tol_db`` under another family's point that costs at
    most ``rate_tol`` more: a rung never ships where another family does visibly better."""
    fronts = {f: pareto([p for p in points if p.family == f]) for f in {p.family for p in points}}

    def beaten(p: Point) -> bool:
        return any(q.family != p.family and q.kbps <= p.kbps * (1 + rate_tol) and q.psnr_y > p.psnr_y + tol_db
                   for q in points)

    return [p for p in pareto(points) if not beaten(p)
            and all((shortfall(p, fr) or 0.0) <= tol_db for f, fr in fronts.items() if f != p.family)]


def best_variants(candidates: list[Point], points: list[Point]) -> list[Point]:
    """One variant per rung among ``candidates``: of those sharing a ``rung`` (the same coded segments played
    another way, e.g. with the generic weights and with a per-title model whose bytes raise the rate), the one
    lying highest above the front of all the other rungs' ``points`` at its own rate (dB, interpolated linearly
    in log rate). Without that front at every such variant's rate (the ends of the range) they all stay.
    Nearest-rate picking alone would take whichever variant sits nearer a rate step, however much better the
    other is."""
    groups: dict[str, list[Point]] = {}
    for p in candidates:
        groups.setdefault(p.rung, []).append(p)
    keep = set()
    for rung, ps in groups.items():
        if len(ps) > 1:
            ref = pareto([q for q in points if q.rung != rung])
            gaps = [shortfall(p, ref) for p in ps]
            if all(g is not None for g in gaps):
                ps = [min(zip(gaps, range(len(ps)), ps))[2]]
        keep.update(id(p) for p in ps)
    return [p for p in candidates if id(p) in keep]


def choose(points: list[Point], max_rungs: int = 8, ratio: float = 1.5, min_gain_db: float = 0.25,
           tol_db: float = 0.05, allowed: set[str] | None = None) -> list[Point]:
    """Rungs from :func:`efficient` (one variant per rung: :func:`best_variants`), from the lowest rate up to
    saturation (the first point within ``min_gain_db`` of the best): each next rung at least ``ratio`` x the rate
    of the previous and ``min_gain_db`` better, the one nearest to ``step`` x (``ratio``, widened so that
    ``max_rungs`` span the range); the saturation point closes the ladder. ``allowed``: only points of these
    names may be rungs (the hull search's certified points), judged against all ``points``."""
    front = best_variants(efficient(points, tol_db), points)
    if allowed is not None:
        front = [p for p in front if p.name in allowed]
        points = [p for p in points if p.name in allowed]
    if not front:
        return []
    # saturation: past the first point within min_gain_db of the best, more bits buy too little
    sat = next(i for i, p in enumerate(front) if p.psnr_y >= front[-1].psnr_y - min_gain_db)
    front = front[: sat + 1]
    lo, hi = front[0].kbps, front[-1].kbps
    step = max(ratio, (hi / lo) ** (1.0 / (max_rungs - 1))) if max_rungs > 1 and lo > 0 else float("inf")
    picked = [front[0]]
    while len(picked) < max_rungs:
        last = picked[-1]
        nxt = [p for p in front if p.kbps >= ratio * last.kbps * (1 - 1e-9) and p.psnr_y >= last.psnr_y + min_gain_db]
        if not nxt:
            break
        picked.append(min(nxt, key=lambda p: abs(math.log(p.kbps / (step * last.kbps)))))  # nearest to the step
    top = front[-1]
    if top is not picked[-1] and top.psnr_y >= picked[-1].psnr_y + min_gain_db:
        if len(picked) >= max_rungs:
            picked.pop()
        picked.append(top)
    return [simplest_equal(p, points, tol_db) for p in picked]


def simplest_equal(p: Point, points: list[Point], tol_db: float = 0.05, rate_tol: float = RATE_TOL) -> Point:
    """``p``, or the point of a family that asks less of the client (``Family.client_rank``: plain plays in any
    HLS player, plain-sr too and gains with SR, uniform/bbmr need the scale map) that is as good: at most
    ``rate_tol`` dearer and at most ``tol_db`` worse. (Since planes v2 a uniform x4 rung codes the same
    pictures as plain-sr x4, plus one scale map per segment.)"""
    def rank(family: str) -> int:  # a refined rung (plain-sr+hcd) asks nothing more of the client; cheaper to make
        return 2 * FAMILIES[base_family(family)].client_rank + (family != base_family(family))

    same = [q for q in points if rank(q.family) < rank(p.family) and q.kbps <= p.kbps * (1 + rate_tol)
            and q.psnr_y >= p.psnr_y - tol_db]
    return min(same, key=lambda q: (rank(q.family), q.kbps)) if same else p


def study_container(meta: dict) -> str:
    """The HLS segment format a study's rates were measured in (studies before fMP4: MPEG-TS)."""
    return meta.get("settings", {}).get("container", "mpegts")


def read_study(path: str | Path) -> tuple[list[Point], dict]:
    """(points, meta) of a ``bbmr-bench rd`` study file (rd.json)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such study file")
    try:
        d = json.loads(p.read_text())
        return [Point(**q) for q in d["points"]], d["meta"]
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{p}: not an rd.json ({e.__class__.__name__}: {e})") from None


def load_study(path: str | Path, info, frames: int | None, container: str, refine=None) -> list[Point]:
    """Points of a ``bbmr-bench rd`` study (rd.json) made on this title, its rates in ``container``'s bytes;
    its refined points (``--refine hcd``) only when ``refine`` (the run's :class:`models.hcd.HCDConfig`) is given
    and is the study's."""
    p = Path(path)
    pts, meta = read_study(p)
    if study_container(meta) != container:
        raise InputError(f"--study {p} measured {study_container(meta)} segments, this run writes {container}")
    src = meta["source"]
    if (src["file"], src["width"], src["height"]) != (Path(info.path).name, info.width, info.height):
        raise InputError(f"--study {p} was made on {src['file']} {src['width']}x{src['height']}, not this title")
    if frames is not None and src["frames"] != frames:
        raise InputError(f"--study {p} measured {src['frames']} frames, this run packages {frames}")
    # the search's candidates have the generic weights: per-title points (--adapt studies) are not candidates
    pts = [q for q in pts if not (q.upscaler or "").endswith(TITLE_MARK)]
    refined = [q for q in pts if q.family != base_family(q.family)]
    if refined and refine is not None:
        made = meta["conventions"].get("refine", {}).get("config")
        if made != refine.to_dict():
            raise InputError(f"--study {p} refined its candidates with {made}, this run refines with "
                             f"{refine.to_dict()}: give the study's --refine-* options")
    return pts if refined and refine is not None else [q for q in pts if q.family == base_family(q.family)]


def candidates_for(width: int, height: int, fast: bool, refine: bool = False) -> list[RungSpec]:
    """What ``--ladder auto`` measures: every family (45 candidates at 1080p), or the :data:`FAST` set; with
    ``refine``, refined variants of the refinable ones too."""
    return candidate_specs(width, height, **FAST, refine=refine) if fast else candidate_specs(width, height,
                                                                                                refine=refine)


def auto_ladder(config: PackageConfig, auto: AutoLadder, info, progress: Progress) -> list[RungSpec]:
    """The rungs ``--ladder auto`` ships (the choice goes to ``progress`` as a table)."""
    return [p.spec for p in auto_points(config, auto, info, progress)]


def auto_points(config: PackageConfig, auto: AutoLadder, info, progress: Progress) -> list[Point]:
    """:func:`auto_ladder`'s rungs as the points measured on the sample."""
    if auto.min_kbps is not None and (auto.study or auto.search != "hull"):
        progress.note("note: --auto-min-kbps applies to the hull search only (not --study or --auto-search grid)")
    if auto.study:
        frames = min(info.frames, config.max_frames) if config.max_frames else None
        pts = load_study(auto.study, info, frames, config.container, config.refine if auto.refine else None)
        if auto.refine and all(p.family == base_family(p.family) for p in pts):
            progress.note(f"note: --study {auto.study} has no refined candidates: the ladder is chosen without them")
        picked = choose(pts, auto.max_rungs)
    else:
        gop = max(1, int(round(float(info.fps) * config.segment)))
        n = min(info.frames or 0, config.max_frames or 10**9)
        segs = sample_segments(-(-n // gop), auto.sample_segments)
        cfg = dataclasses.replace(config, measure_frames=auto.measure_frames)
        where = f"{'all' if segs is None else len(segs)} segment(s) of the title"
        if auto.search == "hull":
            picked = search_ladder(cfg, auto, info, progress, segs, where)
        else:
            specs = candidates_for(info.width, info.height, auto.fast, auto.refine)
            progress.note(f"--ladder auto: measuring {len(specs)} candidates on {where}")
            points, _ = measure_candidates(cfg, specs, progress, workdir=Path(config.out).resolve().parent,
                                           segments=segs)
            picked = choose(points, auto.max_rungs)
    if not picked:
        raise InputError("--ladder auto: no candidate could be measured")
    progress.table(choice_table(picked))
    return picked


def hull_lines(width: int, height: int, fast: bool, refine: bool = False) -> list:
    """The lines the hull search walks (:mod:`packager.hull`): plain at :data:`DENSE_FRACTIONS` of the size and
    every SR family's geometry; ``fast``: plain at the :data:`FAST` sizes and plain-sr; ``refine``: the
    refinable lines refined too."""
    from packager.hull import lines_of

    fams = FAST["families"] if fast else tuple(FAMILIES)
    fractions = FAST["fractions"] if fast else DENSE_FRACTIONS
    return lines_of(candidate_specs(width, height, fams, plain_crfs=(0,), block_crfs=(0,), fractions=fractions,
                                    refine=refine))


def search_ladder(config: PackageConfig, auto: AutoLadder, info, progress: Progress, segments: list[int] | None,
                  where: str = "the title"):
    """:func:`packager.hull.search` with the packager measuring each round on ``segments``; the rungs
    :func:`choose` keeps of the targets' rungs (their rates jitter around the targets: ratio 1.3)."""
    from packager.hull import HullConfig, search

    lines = hull_lines(info.width, info.height, auto.fast, auto.refine)
    hc = HullConfig(min_kbps=auto.min_kbps, max_rungs=auto.max_rungs)
    progress.note(f"--ladder auto: searching the rate-quality hull of {len(lines)} lines (sizes and SR families) "
                  f"on {where}")

    def measure(specs: list[RungSpec]) -> list[Point]:
        return measure_candidates(config, specs, progress, workdir=Path(config.out).resolve().parent,
                                  segments=segments)[0]

    res = search(lines, measure, hc)
    progress.note(f"--ladder auto: {len(res.points)} points measured in {res.rounds} rounds "
                  f"({', '.join(map(str, res.measured_per_round))}); {len(res.targets)} target rates"
                  + (f", {res.open_targets} not settled" if res.open_targets else ""))
    # the rungs judged against every point measured: a family's front from a few sparse rungs would be a chord
    return choose(res.points, auto.max_rungs, ratio=HULL_RATIO, allowed={p.name for p in res.rungs})


HULL_RATIO = 1.3  # the least rate ratio of neighbouring hull rungs (targets are 1.5x apart, hits jitter)


def choice_table(picked: list[Point]):
    """The auto ladder's choice as a rich Table (rung, family, coded size, kbps, PSNR-Y)."""
    from rich.table import Table

    t = Table(title="--ladder auto: rungs on the rate-quality front (measured on the sample)")
    for c in ("rung", "family", "coded", "kbps", "PSNR-Y"):
        t.add_column(c)
    for p in picked:
        t.add_row(p.rung, p.family, f"{p.width}x{p.height}", f"{p.kbps:.0f}", f"{p.psnr_y:.2f}")
    return t


def points_json(points: list[Point]) -> list[dict]:
    return [asdict(p) for p in points]
