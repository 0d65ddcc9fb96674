"""Replay the hull search (packager.hull) on a dense plain study instead of encoding: every point the search
asks for is looked up in the study, so its choices and cost can be compared with the dense front offline.

``python -m bench.hull_replay DENSE/rd.json [...] [--margin 0.3] [--probe 26,38] [--json OUT]``

Per study: points measured (and their cost in source-size encodes: coded pixels / source pixels, summed), the
ladder chosen from them, each rung's shortfall under the dense plain front at its rate (dB), and the same for
the ladder of today's fixed grid (CRF 18-38 step 5 at 1, 2/3, 1/2, 1/3, 1/4) chosen from the same study.
"""

from __future__ import annotations

import argparse
import json
import sys

from bbmr_stream.imageio import write_text_atomic
from packager.hull import HullConfig, lines_of, search
from packager.ladder import (
    DENSE_FRACTIONS,
    HULL_RATIO,
    PLAIN_CRFS,
    PLAIN_FRACTIONS,
    candidate_specs,
    choose,
    pareto,
    read_study,
    shortfall,
)


def replay(path: str, config: HullConfig, max_rungs: int = 8) -> dict:
    points, meta = read_study(path)
    src = meta["source"]
    w, h = src["width"], src["height"]
    table = {(p.width, p.height, int(p.crf)): p for p in points}
    full = (w + w % 2, h + h % 2)

    def look(spec):
        s = spec.size or full
        return table[(s[0], s[1], int(spec.crf))]

    def measure(specs):
        return [look(s) for s in specs]

    front = pareto(points)
    lines = lines_of(candidate_specs(w, h, ("plain",), plain_crfs=(0,), fractions=DENSE_FRACTIONS))
    res = search(lines, measure, config)
    picks = choose(res.points, max_rungs, ratio=HULL_RATIO, allowed={p.name for p in res.rungs})
    cost = sum(p.width * p.height for p in res.points) / (w * h)
    grid = [look(s) for s in candidate_specs(w, h, ("plain",), plain_crfs=PLAIN_CRFS, fractions=PLAIN_FRACTIONS)]
    old = choose(grid, max_rungs)
    old_cost = sum(p.width * p.height for p in grid) / (w * h)

    def rows(ps):
        return [{"rung": p.rung, "kbps": round(p.kbps, 1), "psnr_y": round(p.psnr_y, 3),
                 "below_dense_db": None if (s := shortfall(p, front)) is None else round(s, 3)} for p in ps]

    return {"study": path, "points": len(res.points), "rounds": res.rounds, "per_round": res.measured_per_round,
            "cost_encodes": round(cost, 2), "open_targets": res.open_targets, "min_kbps": res.min_kbps,
            "ladder": rows(picks),
            "grid_points": len(grid), "grid_cost_encodes": round(old_cost, 2), "grid_ladder": rows(old)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("studies", nargs="+")
    ap.add_argument("--margin", type=float, default=HullConfig.margin_db)
    ap.add_argument("--probe", default=",".join(map(str, HullConfig.probe_crfs)))
    ap.add_argument("--rivals", type=int, default=HullConfig.rivals)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    cfg = HullConfig(margin_db=a.margin, rivals=a.rivals, probe_crfs=tuple(int(c) for c in a.probe.split(",")))
    out = []
    for s in a.studies:
        r = replay(s, cfg)
        out.append(r)
        worst = max((x["below_dense_db"] or 0) for x in r["ladder"])
        gworst = max((x["below_dense_db"] or 0) for x in r["grid_ladder"])
        print(f"{s}: {r['points']} points in {r['rounds']} rounds {r['per_round']}, cost {r['cost_encodes']} "
              f"(grid {r['grid_points']} points, {r['grid_cost_encodes']}); worst below dense {worst:.3f} dB "
              f"(grid ladder {gworst:.3f})")
        for x in r["ladder"]:
            print(f"   {x['rung']:24s} {x['kbps']:8.1f} {x['psnr_y']:7.3f} {x['below_dense_db']}")
    if a.json:
        write_text_atomic(a.json, json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
