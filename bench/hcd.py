"""Collaborative LR (``--refine hcd``) against the plain H.264 ladder and against unrefined plain-sr.

``python -m bench.hcd NAME --study S/rd.json [--plain P/rd.json] --out bench/results/hcd/NAME``

Input: a `bbmr-bench rd --families plain-sr --refine hcd` study of one title (plain-sr candidates with and
without refinement, family ``plain-sr`` and ``plain-sr+hcd``; or ``--family uniform``), with the plain
candidates joined by ``--anchor`` or taken from ``--plain`` (a study of the same title, frames, measured frames
and container).
Reported (rate = fMP4 segments + init bytes * 8 / duration, kbps; video PSNR-Y, the study's convention; BD with
``bjontegaard``, pchip, over the PSNR overlap):

- before the codec, per refined picture (factor): the refinement's loss before and after as PSNR-Y of the mean
  MSE (the SR output of the float LR against the source frame, Y on [0, 255]) and its seconds per frame;
- after the codec, per CRF: the unrefined and refined rung's kbps and PSNR-Y and each one's dB above (+) or
  under (-) the plain front at its rate;
- BD of the refined plain-sr front against the unrefined one (the acceptance figure), of both against the
  plain front, and the auto ladder (``packager.ladder.choose``) of plain + plain-sr with and without the
  refined candidates: BD-rate of its lower half against the plain front and its largest shortfall.
"""

from __future__ import annotations

import argparse
import math

from bench.common import write_report
from bench.title_sr import front_gap, ladder, same_frames
from packager.ladder import Point, pareto, read_study
from packager.study import bd


def psnr_of_mse(mse: float) -> float:
    return round(10 * math.log10(255.0**2 / mse), 3)


def before_codec(meta: dict) -> list[dict]:
    loss = meta["conventions"].get("refine", {}).get("loss", {})
    return [{"picture": k, "frames": v["frames"], "s_per_frame": v["s_per_frame"], "upscaler": v["upscaler"],
             "psnr_before": psnr_of_mse(v["mse_y_before"]), "psnr_after": psnr_of_mse(v["mse_y_after"]),
             "gain_db": round(psnr_of_mse(v["mse_y_after"]) - psnr_of_mse(v["mse_y_before"]), 3)}
            for k, v in sorted(loss.items())]


def rung_rows(points: list[Point], front: list[Point], family: str) -> list[dict]:
    by = {p.rung: p for p in points}
    rows = []
    for p in sorted((q for q in points if q.family == family), key=lambda q: (-q.width, q.crf)):
        r = by.get(p.rung + ":hcd")
        if r is None:
            continue
        rows.append({"rung": p.rung, "crf": p.crf, "kbps": p.kbps, "psnr_y": p.psnr_y,
                     "vs_front_db": front_gap(p, front),
                     "refined_kbps": r.kbps, "refined_psnr_y": r.psnr_y, "refined_vs_front_db": front_gap(r, front),
                     "rate_change_pct": round(100 * (r.kbps / p.kbps - 1), 2),
                     "psnr_change_db": round(r.psnr_y - p.psnr_y, 3)})
    return rows


def run(name: str, study_file: str, plain_file: str | None = None, family: str = "plain-sr") -> dict:
    pts, meta = read_study(study_file)
    if plain_file:
        ppts, pmeta = read_study(plain_file)
        if not same_frames(meta, pmeta):
            raise SystemExit(f"{plain_file} is not a study of the same title, frames, measured frames and container")
        pts = [p for p in pts if p.family != "plain"] + [p for p in ppts if p.family == "plain"]
    refined_family = f"{family}+hcd"
    plain = [p for p in pts if p.family == "plain"]
    sr = [p for p in pts if p.family == family]
    refined = [p for p in pts if p.family == refined_family]
    if not plain or not sr or not refined:
        raise SystemExit(f"{study_file}: needs plain, {family} and {refined_family} points (got {len(plain)}, "
                         f"{len(sr)}, {len(refined)})")
    front = pareto(plain)
    return {"title": name, "family": family, "source": meta["source"], "study": study_file,
            "plain": plain_file or "anchored",
            "refine": meta["conventions"].get("refine", {}).get("config"),
            "measured_frames": len(meta["conventions"].get("measured_frames", [])),
            "before_codec": before_codec(meta), "rungs": rung_rows(pts, front, family),
            "bd_refined_vs_unrefined": bd(pareto(sr), pareto(refined)),
            "bd_vs_plain": {family: bd(front, pareto(sr)), refined_family: bd(front, pareto(refined))},
            "ladder_without": ladder(plain + sr, front), "ladder_with": ladder(plain + sr + refined, front)}


def markdown(r: dict) -> str:
    src, c = r["source"], r["refine"] or {}
    lines = [f"## {r['title']}: {src['width']}x{src['height']}, {src['frames']} frames", "",
             f"HCD: {c.get('steps')} steps per stage, eps {c.get('eps')}, alpha {c.get('alpha')} (RMS per value, "
             f"8-bit scale), rate weight {c.get('rate')}, warm start {c.get('warm')}; PSNR-Y on "
             f"{r['measured_frames']} frames; kbps = fMP4 segments + init bytes * 8 / duration.", "",
             "Before the codec (SR of the float LR vs the source, PSNR-Y of the mean MSE):", "",
             "| picture | upscaler | frames | s/frame | PSNR-Y before | after | gain dB |",
             "|---|---|---|---|---|---|---|"]
    for b in r["before_codec"]:
        lines.append(f"| {b['picture']} | {b['upscaler']} | {b['frames']} | {b['s_per_frame']} | {b['psnr_before']} | "
                     f"{b['psnr_after']} | {b['gain_db']} |")
    lines += ["", "After the codec:", "", "| rung | kbps | PSNR-Y | vs plain front dB | refined kbps | PSNR-Y | "
              "vs plain front dB | rate % | dB |", "|---|---|---|---|---|---|---|---|---|"]
    for w in r["rungs"]:
        lines.append(f"| {w['rung']} | {w['kbps']:.1f} | {w['psnr_y']:.3f} | {w['vs_front_db']} | "
                     f"{w['refined_kbps']:.1f} | {w['refined_psnr_y']:.3f} | {w['refined_vs_front_db']} | "
                     f"{w['rate_change_pct']:+.1f} | {w['psnr_change_db']:+.3f} |")
    b = r["bd_refined_vs_unrefined"]
    lines += ["", f"Refined {r['family']} front vs {r['family']} front: BD-rate {b.get('bd_rate_pct')} %, BD-PSNR "
              f"{b.get('bd_psnr_db')} dB (overlap {b.get('overlap_psnr_db')}).", "",
              "| vs the plain front | BD-rate % | BD-PSNR dB |", "|---|---|---|"]
    for k, v in r["bd_vs_plain"].items():
        lines.append(f"| {k} | {v.get('bd_rate_pct')} | {v.get('bd_psnr_db')} |")
    lines += ["", "| auto ladder | rungs | lower-half BD-rate % vs plain front | BD-PSNR dB | largest shortfall dB |",
              "|---|---|---|---|---|"]
    fam = r["family"]
    for key, label in (("ladder_without", f"plain + {fam}"), ("ladder_with", f"plain + {fam} + refined")):
        ld = r[key]
        lines.append(f"| {label} | {', '.join(x['rung'] for x in ld['rungs'])} | "
                     f"{ld['bd_lower_half'].get('bd_rate_pct')} | {ld['bd_lower_half'].get('bd_psnr_db')} | "
                     f"{ld['max_below_plain_front_db']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name")
    ap.add_argument("--study", required=True, help="rd.json: plain-sr with --refine hcd (plain anchored or --plain)")
    ap.add_argument("--plain", help="rd.json whose plain points are the front (default: the study's)")
    ap.add_argument("--family", default="plain-sr", help="the refined family (plain-sr or uniform)")
    ap.add_argument("--out", required=True, help="directory for hcd.json and hcd.md")
    a = ap.parse_args(argv)
    r = run(a.name, a.study, a.plain, a.family)
    write_report(a.out, "hcd", r, markdown(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
