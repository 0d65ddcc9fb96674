"""The per-title ladder search against the fixed grid and a dense plain front, one clip per run.

``python -m bench.ladder_search CLIP --dense DENSE/rd.json --out DIR [--frames 60] [--fast]``

In one process, back to back on the same title and settings, ``--ladder auto`` is run twice: with the hull
search (``--auto-search hull``, packager.hull) and with the fixed grid of 45 candidates (``--auto-search grid``,
CRF 18-38 step 5 at 1, 2/3, 1/2, 1/3, 1/4 and the SR families). For each: the seconds and points of the search,
the ladder it ships (packaged and measured on the same frames as the dense study), every rung's shortfall under
the dense plain front at its rate (``bbmr-bench ladder-check``: segment bytes as shipped (``--container``), and
elementary-stream bytes beside them), and the BD-rate of the hull ladder against the grid ladder (bjontegaard,
pchip, as shipped; negative = fewer bits at equal PSNR-Y). The dense study is ``bbmr-bench rd CLIP --dense
--frames N --niqe-frames 0`` (CRF 18-51 step 1 at 1, 3/4, 2/3, 1/2, 3/8, 1/3, 1/4: 238 plain points).

Writes DIR/ladder_search.json and DIR/ladder_search.md; the streams go to DIR/hull and DIR/grid (not kept in git).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bbmr_stream.imageio import write_text_atomic
from bbmr_stream.progress import Progress
from bench.common import write_report
from packager.config import CONTAINERS, AutoLadder, PackageConfig
from packager.ladder import Point, auto_ladder, pareto
from packager.pipeline import prepare, write_rungs
from packager.study import bd, check_ladder


class Notes(Progress):
    """Keeps the notes (the search's rounds and points)."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)


def run(clip: str, out: Path, search: str, frames: int, measure_frames: int, fast: bool, dense: str,
        sample_segments: int, container: str = "fmp4") -> dict:
    cfg = PackageConfig(clip, str(out / search), force=True, max_frames=frames, measure_frames=measure_frames,
                        container=container)
    auto = AutoLadder(fast=fast, search=search, measure_frames=measure_frames, sample_segments=sample_segments)
    prog = Notes()
    stream, info = prepare(cfg, prog)
    t0 = time.perf_counter()
    specs = auto_ladder(cfg, auto, info, prog)
    t1 = time.perf_counter()
    write_rungs(cfg, specs, info, stream, prog)
    t2 = time.perf_counter()
    chk = check_ladder(stream, dense)
    return {"search": search, "search_s": round(t1 - t0, 1), "package_s": round(t2 - t1, 1), "notes": prog.notes,
            "check": chk}


def grid_from(check: str, dense: str) -> dict:
    """The grid ladder of an earlier ladder-check (same title and frames) against the dense front."""
    from packager.ladder import read_study, shortfall, study_container

    chk = json.loads(Path(check).read_text())
    dense_container = study_container(read_study(dense)[1])
    if chk.get("container", "mpegts") != dense_container:
        raise SystemExit(f"--grid-from {check} measured {chk.get('container', 'mpegts')} segments, the dense study "
                         f"{dense_container}")
    rows = chk["rungs"]
    front = pareto([p for p in read_study(dense)[0] if p.family == "plain"])
    for r in rows:
        s = shortfall(Point(r["rung"], r["rung"], r["family"], 0, 0, r["crf"], r["kbps"], r["psnr_y"]), front)
        r["below_plain_front_db"] = None if s is None else round(s, 4)
        r.setdefault("es_kbps", None)
    gaps = [r["below_plain_front_db"] for r in rows if r["below_plain_front_db"] is not None]
    return {"search": "grid", "search_s": None, "package_s": None, "notes": [f"--ladder auto: from {check}"],
            "check": {"rungs": rows, "max_below_plain_front_db": max(gaps) if gaps else None}}


def points(chk: dict, rate: str = "kbps") -> list[Point]:
    return [Point(r["rung"], r["rung"], r["family"], 0, 0, r["crf"], r[rate], r["psnr_y"])
            for r in chk["rungs"] if r.get(rate) is not None]


def markdown(res: dict) -> str:
    lines = [f"## {Path(res['clip']).name} ({res['frames']} frames)", "",
             "| search | seconds | points | rungs (kbps as shipped / PSNR-Y dB / dB under the dense front, ES rates "
             "in brackets) | worst dB under |", "|---|---|---|---|---|"]
    for r in (res["hull"], res["grid"]):
        pts = next((n for n in r["notes"] if " points measured in " in n or n.startswith("--ladder auto: measuring")),
                   "")
        rungs = "; ".join(f"{x['rung']} {x['kbps']:.0f}/{x['psnr_y']:.2f}/{_f(x['below_plain_front_db'])} "
                          f"({_f(x.get('below_plain_front_es_db'))})" for x in r["check"]["rungs"])
        lines.append(f"| {r['search']} | {r['search_s']} | {pts.replace('--ladder auto: ', '')} | {rungs} | "
                     f"{_f(r['check']['max_below_plain_front_db'])} |")
    b, e = res["bd_hull_vs_grid"], res["bd_hull_vs_grid_es"]
    lines += ["", f"Search seconds, hull / grid: {res['cost_ratio']}. BD-rate of the hull ladder against the grid "
              f"ladder: {b.get('bd_rate_pct')} % (BD-PSNR {b.get('bd_psnr_db')} dB) as shipped, "
              f"{e.get('bd_rate_pct')} % at elementary-stream rates.", ""]
    return "\n".join(lines)


def _f(v) -> str:
    return "n/a" if v is None else f"{v:+.3f}"


INTRO = """# The per-title ladder against a dense search

`--ladder auto` searches the rate-quality hull (packager/hull.py, docs/packager.md) instead of measuring the old
fixed grid of 45 candidates. Here both run on the same title, back to back in one process (`python -m
bench.ladder_search`), and each shipped ladder is checked against a **dense plain front**: `bbmr-bench rd CLIP
--dense --frames N --niqe-frames 0` (libx264 medium, 2 s closed GOPs, CRF 18-51 step 1 at 1, 3/4, 2/3, 1/2, 3/8,
1/3, 1/4 of the source: 238 plain points), the same frames, PSNR-Y on the same 10 evenly spaced frames (the
packager's convention). Rates: HLS segment bytes as shipped, in the container of the dense study (the runs below:
MPEG-TS); the same shortfall at elementary-stream rates (coded video only, no container) in brackets. BD-rate:
`bjontegaard`, pchip, hull ladder against grid ladder (negative = fewer bits at equal PSNR-Y). Seconds: the
search alone (probe to chosen rungs), this 2-core CPU, both searches measuring 10 frames per point; the machine
is shared, so compare the ratio.
"""


def summary(dirs: list[str], out: str) -> None:
    """docs/ladder.md from several OUT directories of this benchmark."""
    rows = ["| clip | frames | search s hull / grid | points hull / grid | worst dB under the dense front, hull | "
            "grid | BD-rate hull vs grid | hull rungs (families) |", "|---|---|---|---|---|---|---|---|"]
    body = []
    for d in map(Path, dirs):
        r = json.loads((d / "ladder_search.json").read_text())
        h, g = r["hull"], r["grid"]
        npts = next((n.split(" points")[0].split()[-1] for n in h["notes"] if " points measured in " in n), "?")
        gpts = next((n.split("measuring ")[1].split()[0] for n in g["notes"]
                     if n.startswith("--ladder auto: measuring")), "?")
        fams: dict = {}
        for x in h["check"]["rungs"]:
            fams[x["family"]] = fams.get(x["family"], 0) + 1
        b = r["bd_hull_vs_grid"].get("bd_rate_pct")
        cost = "n/a" if g["search_s"] is None else f"{h['search_s'] / g['search_s']:.2f}x"
        rows.append(f"| {d.name} | {r['frames']} | {h['search_s']} / {g['search_s'] or 'not run'} ({cost}) | "
                    f"{npts} / {gpts} | "
                    f"{_f(h['check']['max_below_plain_front_db'])} | {_f(g['check']['max_below_plain_front_db'])} | "
                    f"{'n/a' if b is None else f'{b:+.1f} %'} | "
                    f"{len(h['check']['rungs'])}: {', '.join(f'{v} {k}' for k, v in fams.items())} |")
        body += ["", (d / "ladder_search.md").read_text().rstrip(),
                 f"\nCommand: `python -m bench.ladder_search {r['clip']} --dense {r['dense']} --out {d} "
                 f"--frames {r['frames']}" + (f" --sample-segments {r['sample_segments']}"
                                              if r["sample_segments"] != AutoLadder.sample_segments else "") + "`"]
    write_text_atomic(Path(out), INTRO + "\n" + "\n".join(rows) + "\n" + "\n".join(body) + "\n")


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "summary":
        sp = argparse.ArgumentParser(prog="ladder_search summary")
        sp.add_argument("dirs", nargs="+")
        sp.add_argument("--out", required=True)
        b = sp.parse_args(argv[1:])
        summary(b.dirs, b.out)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clip")
    ap.add_argument("--dense", required=True, help="rd.json of `bbmr-bench rd CLIP --dense` on the same frames")
    ap.add_argument("--out", required=True)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--measure-frames", type=int, default=10)
    ap.add_argument("--sample-segments", type=int, default=AutoLadder.sample_segments)
    ap.add_argument("--fast", action="store_true")
    ap.add_argument("--container", choices=CONTAINERS, default="fmp4",
                    help="HLS segments of the packaged ladders (the --dense study's own; default %(default)s)")
    ap.add_argument("--only", choices=("hull", "grid"), help="run one search (the other from OUT's last JSON)")
    ap.add_argument("--grid-from", help="no grid run: its ladder is the check.json of `bbmr-bench ladder-check` of "
                    "the grid ladder packaged on the same frames (e.g. bench/results/rd/CLIP/check.json), re-checked "
                    "against the dense front; no seconds")
    a = ap.parse_args(argv)
    from packager.ladder import read_study, study_container

    if study_container(read_study(a.dense)[1]) != a.container:  # before any search: rates must be comparable
        raise SystemExit(f"--dense {a.dense} measured {study_container(read_study(a.dense)[1])} segments; "
                         f"pass --container {study_container(read_study(a.dense)[1])}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    prev = json.loads((out / "ladder_search.json").read_text()) if a.only else {}
    if a.only and prev.get("container", "mpegts") != a.container:
        raise SystemExit(f"--only: {out / 'ladder_search.json'} was made with {prev.get('container', 'mpegts')} "
                         "segments")
    res = {"clip": a.clip, "frames": a.frames, "measure_frames": a.measure_frames, "fast": a.fast,
           "sample_segments": a.sample_segments, "dense": a.dense, "container": a.container}
    if a.grid_from:
        res["grid"] = grid_from(a.grid_from, a.dense)
    for search in ("hull", "grid"):
        if search in res:
            continue
        if a.only and search != a.only:
            res[search] = prev[search]
            continue
        res[search] = run(a.clip, out, search, a.frames, a.measure_frames, a.fast, a.dense, a.sample_segments,
                          a.container)
        print(f"{search}: {res[search]['search_s']} s, worst {res[search]['check']['max_below_plain_front_db']}",
              file=sys.stderr)
    h, g = res["hull"]["check"], res["grid"]["check"]
    res["bd_hull_vs_grid"] = bd(pareto(points(g)), pareto(points(h)))
    res["bd_hull_vs_grid_es"] = bd(pareto(points(g, "es_kbps")), pareto(points(h, "es_kbps")))
    gs = res["grid"]["search_s"]
    res["cost_ratio"] = "n/a (grid not run)" if gs is None else \
        f"{res['hull']['search_s']} / {gs} = {res['hull']['search_s'] / max(gs, 1e-9):.2f}"
    write_report(out, "ladder_search", res, markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
