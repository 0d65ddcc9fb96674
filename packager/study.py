"""The rate-quality study of every rung family against the plain ladder (``bbmr-bench rd CLIP --out DIR``,
:func:`run_study`), and the reports made from studies (ladder check, summary page, comparison, shortfall).

Every candidate of :func:`packager.ladder.candidate_specs` (plain at 1, 2/3, 1/2, 1/3, 1/4 of the source x 5
CRFs, bicubic up; plain-sr 1/2 and 1/4 with the shipped OmniSR x2 / x4; uniform x4 + OmniSR-O; BBMR + JointSR)
is packaged by the real packager from the same frames with the same x264 settings and 2 s closed GOPs; rate =
bytes of the HLS segments as shipped (fMP4 with its init segment, or MPEG-TS: ``--container``) * 8 /
duration; PSNR-Y = ``bbmr_stream.metrics.psnr_luma`` (the
source's decoded Y plane vs the reconstruction's luma in the source's matrix, as FFmpeg's ``psnr`` filter),
mean over ``measure_frames`` evenly spaced frames (the same frames for every candidate); NIQE (MATLAB niqe.m)
on the first ``niqe_frames`` of them.

Writes ``rd.json`` (points, Pareto fronts, BD-rates), ``rd.md`` (tables) and ``rd.png`` (RD plot). BD-rate
of each family's front against the plain front over their overlap: the ``bjontegaard`` package, pchip
interpolation of log-rate over PSNR-Y (negative = bits saved at equal PSNR-Y).

Library functions print nothing: results are returned, progress goes through the ``progress`` object passed
in (``bbmr_stream.progress``); the ``bbmr-bench`` command is :mod:`packager.study_cli`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from bbmr_stream.errors import InputError, ManifestError
from bbmr_stream.family import (
    BBMR,
    FAMILIES,
    REFINE_METHOD,
    Plain,
    PlainSR,
    Uniform,
    base_family,
    by_client_needs,
    rendition_label,
)
from bbmr_stream.imageio import write_text_atomic
from bbmr_stream.progress import Progress
from models.adapt import AdaptConfig
from models.hcd import HCDConfig
from packager.config import PackageConfig
from packager.ladder import Point, candidate_specs, choose, pareto, points_json, read_study, shortfall, study_container

PLAIN = Plain.name  # the anchor of every BD-rate of the study
BBMR_VS = (PlainSR.name, Uniform.name)  # the other client-SR families, anchors of BBMR's own BD-rates
COLOURS = {Plain.name: "tab:blue", PlainSR.name: "tab:green", Uniform.name: "tab:orange", BBMR.name: "tab:red",
           f"{PlainSR.name}+{REFINE_METHOD}": "tab:olive", f"{Uniform.name}+{REFINE_METHOD}": "tab:brown"}


def load_stream(path: str | Path):
    """The stream directory's manifest; a bad or missing one is a one-line InputError."""
    from bbmr_stream.manifest import load

    try:
        return load(path)
    except ManifestError as e:
        raise InputError(str(e)) from None


def bd(anchor: list[Point], test: list[Point]) -> dict:
    """BD-rate (%) and BD-PSNR (dB) of ``test`` against ``anchor`` (both fronts) over their PSNR overlap."""
    import bjontegaard

    if len(anchor) < 2 or len(test) < 2:
        return {"bd_rate_pct": None, "bd_psnr_db": None, "note": "fewer than 2 front points"}
    lo = max(min(p.psnr_y for p in anchor), min(p.psnr_y for p in test))
    hi = min(max(p.psnr_y for p in anchor), max(p.psnr_y for p in test))
    if hi <= lo:
        return {"bd_rate_pct": None, "bd_psnr_db": None, "note": "no PSNR-Y overlap"}
    args = ([p.kbps for p in anchor], [p.psnr_y for p in anchor], [p.kbps for p in test], [p.psnr_y for p in test])
    out = {"overlap_psnr_db": [round(lo, 3), round(hi, 3)]}
    for key, fn in (("bd_rate_pct", bjontegaard.bd_rate), ("bd_psnr_db", bjontegaard.bd_psnr)):
        try:
            v = float(fn(*args, method="pchip", require_matching_points=False, min_overlap=0.0))
            out[key] = round(v, 2) if math.isfinite(v) else None
        except Exception as e:  # the package rejects curves it cannot interpolate: report, do not guess
            out[key] = None
            out["note"] = f"{e.__class__.__name__}: {e}"
    return out


def below_front(test: list[Point], anchor: list[Point]) -> float | None:
    """Largest PSNR-Y shortfall (dB) of ``test`` points under the ``anchor`` front, interpolated linearly in
    log-rate, over the anchor's rate range (None: no test point inside it)."""
    a = sorted(anchor, key=lambda p: p.kbps)
    gaps = [g for g in (shortfall(p, a) for p in test) if g is not None]
    return round(max(gaps), 4) if gaps else None


def lower_half(rungs: list[Point]) -> list[Point]:
    """The rungs in the lower half of a ladder's rate range (kbps at most the geometric middle of its lowest
    and highest rung), the part of the ladder the BBMR target is stated on."""
    if not rungs:
        return []
    lo, hi = min(p.kbps for p in rungs), max(p.kbps for p in rungs)
    return [p for p in rungs if p.kbps <= math.sqrt(lo * hi)]


def rate_at(front: list[Point], psnr: float) -> float | None:
    """kbps at which a front (by rate) reaches ``psnr``, interpolated linearly in log rate (None: outside it)."""
    for u, v in zip(front, front[1:]):
        if u.psnr_y <= psnr <= v.psnr_y:
            t = 0.0 if v.psnr_y == u.psnr_y else (psnr - u.psnr_y) / (v.psnr_y - u.psnr_y)
            return math.exp(math.log(u.kbps) + t * math.log(v.kbps / u.kbps))
    return None


def study(points: list[Point]) -> dict:
    """Fronts of every family (and of all points), BD-rates against the plain front (and BBMR against the other
    client-SR families), the auto ladder of these points and its largest shortfall under the plain front."""
    fams = by_client_needs({p.family for p in points})
    fronts = {f: pareto([p for p in points if p.family == f]) for f in fams}
    fronts["all"] = pareto(points)
    bds = {f: bd(fronts[PLAIN], fronts[f]) for f in fams if f != PLAIN and PLAIN in fronts}
    bds["all"] = bd(fronts[PLAIN], fronts["all"]) if PLAIN in fronts else {}
    for f in fams:  # a refined family against its unrefined self
        if base_family(f) != f and base_family(f) in fronts:
            bds[f"{f}_vs_{base_family(f)}"] = bd(fronts[base_family(f)], fronts[f])
    for anchor in BBMR_VS:  # BBMR against the other client-SR families as anchors
        if BBMR.name in fronts and anchor in fronts:
            bds[f"{BBMR.name}_vs_{anchor}"] = bd(fronts[anchor], fronts[BBMR.name])
    auto = choose(points)
    return {"fronts": {k: [p.name for p in v] for k, v in fronts.items()}, "bd_vs_plain": bds,
            "auto_ladder": [p.name for p in auto],
            "auto_below_plain_front_db": below_front(auto, fronts.get(PLAIN, [])) if PLAIN in fronts else None}


def markdown(points: list[Point], res: dict, meta: dict) -> str:
    """rd.md: the settings, every point, the BD-rates and the auto ladder."""
    src = meta["source"]
    s = meta["settings"]
    front_all = set(res["fronts"]["all"])
    lines = [f"# Rate-quality study: {src['file']} ({src['width']}x{src['height']}, {src['frames']} frames)", "",
             f"x264 {s['preset']} ({s['codec']}), {s['segment_s']} s closed GOPs, "
             f"{CONTAINER_TEXT[study_container(meta)]} HLS segments; rate = "
             "(segment bytes as shipped + model bytes) * 8 / duration (upscaler `+title`: a per-title model, "
             "its bytes in the rate). PSNR-Y: " + meta["conventions"]["psnr_y"] +
             f"; frames {meta['conventions'].get('measured_frames')}. NIQE: MATLAB niqe.m, first measured frames. "
             f"BBMR: scorer {s['scorer']}, allocator {s['allocator']}, layout {s['layout']}, overall x{s['overall']}, "
             f"scales {s['scales']}, rate lambda {s.get('rate_lambda', 0)}.", "",
             "| rung | family | coded | CRF | kbps | ES kbps | PSNR-Y | NIQE | upscaler | on front |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for p in sorted(points, key=lambda p: (p.family, p.kbps)):
        es = "" if p.es_kbps is None else f"{p.es_kbps:.0f}"
        lines.append(f"| {p.rung} | {p.family} | {p.width}x{p.height} | {p.crf:g} | {p.kbps:.0f} | {es} | "
                     f"{p.psnr_y:.2f} | "
                     f"{'' if p.niqe is None else f'{p.niqe:.2f}'} | {p.upscaler} | "
                     f"{'yes' if p.name in front_all else ''} |")
    lines += ["", "BD vs the plain front (bjontegaard, pchip; negative BD-rate = fewer bits at equal PSNR-Y):", "",
              "| family front | BD-rate % | BD-PSNR dB | PSNR overlap | note |", "|---|---|---|---|---|"]
    for k, v in res["bd_vs_plain"].items():
        lines.append(f"| {k} | {v.get('bd_rate_pct')} | {v.get('bd_psnr_db')} | {v.get('overlap_psnr_db')} | "
                     f"{v.get('note', '')} |")
    by = {p.name: p for p in points}
    lines += ["", "Auto ladder (`packager.ladder.choose` on these points): " +
              ", ".join(f"{n} ({by[n].kbps:.0f} kbps, {by[n].psnr_y:.2f} dB)" for n in res["auto_ladder"]),
              f"; largest shortfall under the plain front: {res['auto_below_plain_front_db']} dB", ""]
    return "\n".join(lines)


def plot(points: list[Point], res: dict, title: str, path: Path, container: str = "fmp4") -> None:
    """rd.png: every point, each family's front and the auto ladder, rate on a log axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    by = {p.name: p for p in points}
    for fam in by_client_needs({p.family for p in points}):
        c = COLOURS.get(fam, "tab:gray")
        pts = [p for p in points if p.family == fam]
        ax.scatter([p.kbps for p in pts], [p.psnr_y for p in pts], s=14, color=c, alpha=0.45)
        fr = [by[n] for n in res["fronts"][fam]]
        ax.plot([p.kbps for p in fr], [p.psnr_y for p in fr], "-o", ms=4, color=c, label=f"{fam} front")
    auto = [by[n] for n in res["auto_ladder"]]
    ax.plot([p.kbps for p in auto], [p.psnr_y for p in auto], "k*", ms=11, label="auto ladder")
    ax.set_xscale("log")
    ax.set_xlabel(f"kbps ({CONTAINER_TEXT[container]} segments as shipped)")
    ax.set_ylabel("PSNR-Y dB (source Y plane, psnr_luma)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


# --- the study ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyConfig:
    """One study (``bbmr-bench rd``). ``frames``: package the first N frames of the clip; the encoder,
    measurement and BBMR options are those of :class:`packager.config.PackageConfig` (same names)."""

    clip: str
    out: str  # directory for rd.json, rd.md, rd.png
    frames: int = 60
    measure_frames: int = 10  # PSNR-Y on this many evenly spaced frames
    niqe_frames: int = 2
    families: tuple[str, ...] = tuple(FAMILIES)
    scorer: str = "light"
    device: str = "auto"
    backend: str | None = None
    preset: str = "medium"
    rate_lambda: float = 0.0  # BBMR allocation's rate weight (PackageConfig.rate_lambda)
    segment: float = 2.0  # segment (closed GOP) seconds
    container: str = "fmp4"  # HLS segment format whose bytes are the rates (PackageConfig.container)
    upscaler: str = "auto"  # client upscaler of the SR families (auto: each family's first)
    reuse: bool = False  # take the points of OUT/rd.json (same clip): only recompute fronts, BD-rates, table, plot
    anchor: str | None = None  # rd.json of a study of the same clip: its points of the families not measured join
    crfs: tuple[float, ...] | None = None  # the CRFs of every family (None: packager.ladder's grid)
    fractions: tuple[float, ...] | None = None  # plain's sizes as fractions of the source (None: the ladder's)
    adapt: AdaptConfig | None = None  # per-title models for the SR candidates (bytes counted in their rates)
    refine: HCDConfig | None = None  # refined variants of the refinable candidates (--refine hcd), family +hcd

    def package_config(self) -> PackageConfig:
        """The packaging run every candidate is measured in (:func:`packager.ladder.measure_candidates` sets
        its output, sample and measurement switches)."""
        return PackageConfig(input=self.clip, out=str(Path(self.out) / "stream"), max_frames=self.frames,
                             scorer=self.scorer, device=self.device, backend=self.backend, preset=self.preset,
                             segment=self.segment, container=self.container, measure_frames=self.measure_frames,
                             niqe_frames=self.niqe_frames, upscaler=self.upscaler, rate_lambda=self.rate_lambda,
                             adapt=self.adapt, refine=self.refine or HCDConfig())


@dataclass
class StudyResult:
    """What :func:`run_study` measured and wrote."""

    points: list[Point]
    meta: dict  # the manifest's source and conventions, the settings
    result: dict  # :func:`study` of the points (fronts, BD-rates, auto ladder)
    markdown: str  # rd.md
    out: Path  # the directory holding rd.json, rd.md, rd.png


def run_study(config: StudyConfig, progress: Progress | None = None) -> StudyResult:
    """Measure every candidate of ``config.families`` (or reuse OUT/rd.json), add the anchor's points, and
    write rd.json, rd.md and rd.png to ``config.out``."""
    from bbmr_stream.decode import probe
    from packager.ladder import measure_candidates

    info = probe(config.clip)
    grid = {k: v for k, v in (("plain_crfs", config.crfs), ("block_crfs", config.crfs),
                              ("fractions", config.fractions)) if v}
    specs = candidate_specs(info.width, info.height, tuple(config.families), **grid, refine=config.refine is not None,
                            refine_all=True)
    if not specs:
        raise InputError("--families selects no candidate")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if config.reuse:
        points, meta = read_study(out / "rd.json")
        if meta["source"]["file"] != Path(config.clip).name:
            raise InputError(f"--reuse: {out / 'rd.json'} is a study of {meta['source']['file']}")
        if study_container(meta) != config.container:
            raise InputError(f"--reuse: {out / 'rd.json'} measured {study_container(meta)} segments, not "
                             f"{config.container}")
    else:
        points, meta = measure_candidates(config.package_config(), specs, progress, workdir=out,
                                          adapt=config.adapt is not None)
    if config.anchor:
        anchor_points, anchor_meta = read_study(Path(config.anchor))
        if anchor_meta["source"]["file"] != Path(config.clip).name:
            raise InputError(f"--anchor {config.anchor} is a study of {anchor_meta['source']['file']}")
        if study_container(anchor_meta) != study_container(meta):
            raise InputError(f"--anchor {config.anchor} measured {study_container(anchor_meta)} segments, this study "
                             f"{study_container(meta)}: their rates are not comparable")
        measured = {p.family for p in points}
        points += [p for p in anchor_points if p.family not in measured]
    res = study(points)
    write_text_atomic(out / "rd.json", json.dumps({"meta": meta, "points": points_json(points), **res}, indent=1))
    md = markdown(points, res, meta)
    write_text_atomic(out / "rd.md", md)
    plot(points, res, f"{meta['source']['file']} ({meta['source']['frames']} frames)", out / "rd.png",
         study_container(meta))
    return StudyResult(points, meta, res, md, out)


# --- reports from studies ------------------------------------------------------------------------------------


CONTAINER_TEXT = {"fmp4": "fMP4", "mpegts": "MPEG-TS"}


def check_ladder(stream: str | Path, study_file: str | Path) -> dict:
    """A packaged ladder (stream directory with measured PSNR-Y) against the plain front of a study of the same
    title and frames: each rung's shortfall under it and BD-rates of the ladder (``bbmr-bench ladder-check``)."""
    man = load_stream(stream)
    points, meta = read_study(study_file)
    src = meta["source"]
    if (src["file"], src["frames"]) != (man.source["file"], man.source["frames"]):
        raise InputError(f"the study is of {src['file']} ({src['frames']} frames), the stream of "
                         f"{man.source['file']} ({man.source['frames']} frames)")
    if study_container(meta) != man.container:
        raise InputError(f"the study measured {study_container(meta)} segments, the stream is {man.container}")
    if meta["conventions"].get("measured_frames") != man.conventions.get("measured_frames"):
        raise InputError("the stream and the study measured PSNR-Y on different frames (--measure-frames)")
    plain = pareto([p for p in points if p.family == PLAIN])
    rungs = [Point(r.name, r.name, rendition_label(r), r.lr_width, r.lr_height, r.crf, r.bitrate_kbps, r.psnr_y, r.niqe,
                   r.psnr_y_upscaler, r.es_kbps) for r in man.renditions if r.psnr_y is not None]
    plain_es = es_front([p for p in points if p.family == PLAIN])
    rows = [{"rung": p.name, "family": p.family, "coded": f"{p.width}x{p.height}", "crf": p.crf, "kbps": p.kbps,
             "es_kbps": p.es_kbps, "psnr_y": p.psnr_y,
             "below_plain_front_db": None if (s := shortfall(p, plain)) is None else round(s, 4),
             "below_plain_front_es_db": es_shortfall(p, plain_es)}
            for p in sorted(rungs, key=lambda p: p.kbps)]
    plain_ladder = choose([p for p in points if p.family == PLAIN])  # the same rule on plain candidates only
    return {"stream": str(stream), "study": str(study_file), "container": man.container, "rungs": rows,
            "max_below_plain_front_db": below_front(rungs, plain), "bd_vs_plain": bd(plain, pareto(rungs)),
            "plain_only_ladder": [p.name for p in plain_ladder],
            "bd_vs_plain_only_ladder": bd(plain_ladder, pareto(rungs)),
            "bd_vs_plain_lower_half": bd(plain, pareto(lower_half(rungs)))}


def es_front(points: list[Point]) -> list[Point] | None:
    """The Pareto front of ``points`` with elementary-stream rates as their rate (None: a point lacks one)."""
    if not points or any(p.es_kbps is None for p in points):
        return None
    return pareto([dataclasses.replace(p, kbps=p.es_kbps) for p in points])


def es_shortfall(p: Point, front: list[Point] | None) -> float | None:
    """:func:`shortfall` of ``p`` under an :func:`es_front`, both at elementary-stream rates."""
    if front is None or p.es_kbps is None:
        return None
    s = shortfall(dataclasses.replace(p, kbps=p.es_kbps), front)
    return None if s is None else round(s, 4)


def check_table(res: dict) -> str:
    """The Markdown table and summary line of a :func:`check_ladder` result."""
    def cell(v) -> str:
        return "" if v is None else f"{v:+.3f}"

    lines = ["| rung | family | coded | CRF | kbps | ES kbps | PSNR-Y | below plain front (dB) | same, ES rates |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in res["rungs"]:
        es = r.get("es_kbps")
        lines.append(f"| {r['rung']} | {r['family']} | {r['coded']} | {r['crf']:g} | {r['kbps']:.0f} | "
                     f"{'' if es is None else f'{es:.0f}'} | {r['psnr_y']:.2f} | {cell(r['below_plain_front_db'])} | "
                     f"{cell(r.get('below_plain_front_es_db'))} |")
    lines.append(f"\nlargest shortfall under the plain front: {res['max_below_plain_front_db']} dB; BD vs the plain "
                 f"front (all plain candidates): {res['bd_vs_plain']}; BD vs the plain-only ladder of the same rule "
                 f"({', '.join(res['plain_only_ladder'])}): {res['bd_vs_plain_only_ladder']}")
    return "\n".join(lines)


SUMMARY_KEYS = [PlainSR.name, Uniform.name, BBMR.name, "all"] + [f"{BBMR.name}_vs_{a}" for a in BBMR_VS]


def _bd_cell(v: dict) -> str:
    return "n/a" if v.get("bd_rate_pct") is None else f"{v['bd_rate_pct']:+.1f} % ({v['bd_psnr_db']:+.2f} dB)"


def summary_page(dirs: list[str | Path], intro: str | None = None) -> str:
    """One Markdown page from several studies (each directory holds rd.json and optionally check.json from
    :func:`check_ladder`); the plots are referenced as ``img/rd_NAME.png`` (:func:`write_summary` copies them)."""
    parts = [intro.rstrip() + "\n"] if intro is not None else []
    fams = SUMMARY_KEYS
    head = ["", "## BD-rate against the plain front, all clips", "",
            "Negative = fewer bits than the plain ladder at equal PSNR-Y (bjontegaard, pchip, over the PSNR-Y overlap "
            "of the two fronts; `bbmr_vs_plain-sr` and `bbmr_vs_uniform` have plain-sr and uniform as the anchor). "
            "BD-PSNR in brackets.", "",
            "| clip | " + " | ".join(fams) + " |", "|---" * (len(fams) + 1) + "|"]
    body = []
    for d in map(Path, dirs):
        r = json.loads((d / "rd.json").read_text())
        src = r["meta"]["source"]
        name = d.name
        head.append(f"| {name} | " + " | ".join(_bd_cell(r["bd_vs_plain"].get(f, {})) for f in fams) + " |")
        body += ["", f"## {name}: {src['file']} ({src['width']}x{src['height']}, {src['frames']} frames)", "",
                 f"![RD plot of {name}](img/rd_{name}.png)", "",
                 f"Command: `bbmr-bench rd ../shared/data/video/{src['file']} --out bench/results/rd/{name} "
                 f"--frames {src['frames']}`; full table: `bench/results/rd/{name}/rd.md`.", ""]
        points = {p["name"]: p for p in r["points"]}
        body += ["Front of each family (kbps / PSNR-Y dB):", "", "| family | front points |", "|---|---|"]
        for f, names in r["fronts"].items():
            body.append(f"| {f} | " + ", ".join(f"{points[n]['rung']} {points[n]['kbps']:.0f}/{points[n]['psnr_y']:.2f}"
                                                 for n in names) + " |")
        chk = d / "check.json"
        if chk.is_file():
            c = json.loads(chk.read_text())
            body += ["", "Auto ladder as packaged (`bbmr-package CLIP --ladder auto --study rd.json --max-frames "
                     f"{src['frames']} --measure-frames {len(r['meta']['conventions']['measured_frames'])}`, then "
                     "`bbmr-bench ladder-check`):", "",
                     "| rung | family | coded | CRF | kbps | PSNR-Y | below plain front (dB) |",
                     "|---|---|---|---|---|---|---|"]
            for row in c["rungs"]:
                gap = row["below_plain_front_db"]
                body.append(f"| {row['rung']} | {row['family']} | {row['coded']} | {row['crf']:g} | "
                            f"{row['kbps']:.0f} | {row['psnr_y']:.2f} | "
                            f"{'outside its range' if gap is None else f'{gap:+.3f}'} |")
            bdv, bdl = c["bd_vs_plain"], c.get("bd_vs_plain_only_ladder", {})
            plain_front = pareto([Point(**p) for p in r["points"] if p["family"] == PLAIN])
            half = lower_half([Point(row["rung"], row["rung"], row["family"], 0, 0, row["crf"], row["kbps"],
                                     row["psnr_y"], None, None) for row in c["rungs"]])
            bdh = bd(plain_front, pareto(half))
            body += ["", f"Largest shortfall under the plain front within its rate range: "
                     f"{c['max_below_plain_front_db']} dB. BD-rate of the auto ladder against the plain front (all 25 "
                     f"plain candidates): {bdv.get('bd_rate_pct')} % (BD-PSNR {bdv.get('bd_psnr_db')} dB); against "
                     f"the plain-only ladder the same rule picks ({', '.join(c.get('plain_only_ladder', []))}): "
                     f"{bdl.get('bd_rate_pct')} % (BD-PSNR {bdl.get('bd_psnr_db')} dB); its lower half (the "
                     f"{len(half)} rungs up to the geometric middle of its rate range) against the plain front: "
                     f"{bdh.get('bd_rate_pct')} % "
                     f"(BD-PSNR {bdh.get('bd_psnr_db')} dB)."]
    return "\n".join(parts + head + body) + "\n"


def write_summary(dirs: list[str | Path], out: str | Path, intro: str | Path | None = None) -> Path:
    """:func:`summary_page` written to ``out`` (``intro``: a Markdown file put at the top), each study's rd.png
    copied to ``img/rd_NAME.png`` beside it (``bbmr-bench rd-summary``)."""
    out = Path(out)
    img = out.parent / "img"
    img.mkdir(parents=True, exist_ok=True)
    page = summary_page(dirs, Path(intro).read_text() if intro else None)
    for d in map(Path, dirs):
        shutil.copyfile(d / "rd.png", img / f"rd_{d.name}.png")
    write_text_atomic(out, page)
    return out


def compare_table(clips: list[str], before: str | Path, after: str | Path, keys: list[str]) -> str:
    """BD-rates (entries of rd.json's ``bd_vs_plain``) of two sets of studies of the same clips, e.g. before
    and after a lever: one Markdown table, ``before -> after`` in each cell (``bbmr-bench rd-compare``)."""

    def cell(d: Path, clip: str, key: str) -> str:
        f = d / clip / "rd.json"
        if not f.is_file():
            raise InputError(f"{f}: no such study")
        return _bd_cell(json.loads(f.read_text())["bd_vs_plain"].get(key, {}))

    lines = ["| clip | " + " | ".join(keys) + " |\n" + "|---" * (len(keys) + 1) + "|"]
    for clip in clips:
        lines.append(f"| {clip} | " + " | ".join(f"{cell(Path(before), clip, k)} -> {cell(Path(after), clip, k)}"
                                                 for k in keys) + " |")
    return "\n".join(lines)


def shortfall_table(dirs: list[str | Path], family: str = BBMR.name) -> str:
    """Each point of ``family`` against the plain front of its study (dB under it at the point's rate), and the
    rate at which the plain front reaches the family's best (``bbmr-bench rd-shortfall``)."""
    lines = [f"| clip | {family} points: CRF, kbps, PSNR-Y dB, dB under the plain front | best | plain front reaches "
             "it at |\n|---|---|---|---|"]
    for d in map(Path, dirs):
        points, _ = read_study(d / "rd.json")
        plain = pareto([p for p in points if p.family == PLAIN])
        fam = sorted((p for p in points if p.family == family), key=lambda p: p.kbps)
        if not fam:
            raise InputError(f"{d / 'rd.json'} has no {family} points")
        cells = []
        for p in fam:
            gap = shortfall(p, plain)
            cells.append(f"CRF {p.crf:g}: {p.kbps:.0f}, {p.psnr_y:.2f}, "
                         + ("outside" if gap is None else f"{gap:.2f}"))
        best = max(fam, key=lambda p: p.psnr_y)
        r = rate_at(plain, best.psnr_y)
        lines.append(f"| {d.name} | {'; '.join(cells)} | {best.psnr_y:.2f} dB at {best.kbps:.0f} kbps | "
                     f"{'n/a' if r is None else f'{r:.0f} kbps'} |")
    return "\n".join(lines)
