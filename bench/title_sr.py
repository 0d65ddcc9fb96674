"""Per-title SR against the plain H.264 ladder (issue 23): what the per-title models buy, model bytes included.

``python -m bench.title_sr NAME --title T/rd.json --out bench/results/title_sr/NAME``

Input: a `bbmr-bench rd` study of one title at its full length: plain-sr candidates with per-title models
(``--adapt``; their rate = segments + model bytes, and the generic weights' PSNR-Y on the same frames beside
each: ``psnr_y_generic``) with the plain candidates joined by ``--anchor``, or taken from ``--plain`` (a study of
the same title, frames and measured frames). ``--generic``: optionally a study of
the same plain-sr candidates with the shipped weights (same title, frames and measured frames) to take the
generic figures from instead. Reported (rate = bytes as shipped * 8 / duration, kbps; video PSNR-Y, the study's
convention; BD-rate with ``bjontegaard``, pchip, over the PSNR overlap):

- per plain-sr rung: generic and per-title PSNR-Y, the gain, the model's kbps and share of the rung's rate, the
  dB above (+) or under (-) the plain front at the rung's rate with and without the model bytes, and the
  break-even length: the title length from which the rung with its model is on the plain front (``8 * model
  bytes / (front kbps at the rung's PSNR-Y - the rung's segment kbps)``; None when its segments alone cost
  more than the front at that quality); and the length from which the model pays for itself against the
  generic weights: ``8 * model bytes / (segment kbps * w)``, w = the plain front's rate at the per-title PSNR-Y
  over its rate at the generic PSNR-Y, less 1 (the share of bits the gain is worth; None outside the front);
- the auto ladder (``packager.ladder.choose``, as the study) of plain + generic SR and of plain + generic SR +
  per-title SR: BD-rate of its lower half (rungs up to the geometric middle of its rate range) against the
  plain front, the largest shortfall of any rung under the plain front.
"""

from __future__ import annotations

import argparse
import dataclasses

from bench.common import write_report
from packager.ladder import TITLE_MARK, Point, choose, pareto, read_study, shortfall, study_container
from packager.study import bd, below_front, lower_half, rate_at


def front_gap(p: Point, front: list[Point]) -> float | None:
    """dB above (+) or under (-) the front at ``p``'s rate."""
    s = shortfall(p, front)
    return None if s is None else round(-s, 3)


def rung_rows(title: list[Point], generic: dict[str, Point], front: list[Point], models: dict, duration_s: float):
    rows = []
    for p in sorted(title, key=lambda q: (q.width, q.crf)):
        nbytes = sum(m["bytes"] for m in models.get(p.name, []))
        model_kbps = nbytes * 8 / duration_s / 1000
        seg = dataclasses.replace(p, kbps=p.kbps - model_kbps)
        g = generic.get(p.name)
        need = rate_at(front, p.psnr_y)
        spare = None if need is None else need - seg.kbps
        # what the gain over the generic weights is worth: the front's rate ratio between the two qualities
        was = rate_at(front, g.psnr_y) if g else None
        worth = need / was - 1 if need and was else None
        rows.append({"rung": p.name, "crf": p.crf, "kbps": round(p.kbps, 2), "model_kbps": round(model_kbps, 2),
                     "model_share": round(model_kbps / p.kbps, 4), "model_bytes": nbytes,
                     "psnr_generic": g.psnr_y if g else None, "psnr_title": p.psnr_y,
                     "gain_db": round(p.psnr_y - g.psnr_y, 3) if g else None,
                     "vs_front_db": front_gap(p, front), "vs_front_without_model_db": front_gap(seg, front),
                     "generic_vs_front_db": front_gap(g, front) if g else None,
                     "break_even_s": round(8 * nbytes / 1000 / spare, 1) if spare and spare > 0 else None,
                     "pays_vs_generic_s": round(8 * nbytes / 1000 / (seg.kbps * worth), 1)
                     if worth and worth > 0 else None})
    return rows


def ladder(points: list[Point], front: list[Point]) -> dict:
    rungs = choose(points)
    half = lower_half(rungs)
    return {"rungs": [{"rung": p.name, "family": p.family, "upscaler": p.upscaler, "kbps": round(p.kbps, 2),
                       "psnr_y": p.psnr_y} for p in rungs],
            "lower_half": [p.name for p in half], "bd_lower_half": bd(front, pareto(half)),
            "bd_all": bd(front, pareto(rungs)), "max_below_plain_front_db": below_front(rungs, front)}


def same_frames(a: dict, b: dict) -> bool:
    """The two studies' metas: the same title, frames, measured frames and segment container (comparable rates)."""
    key = lambda m: (m["source"]["file"], m["source"]["frames"], m["conventions"].get("measured_frames"),  # noqa: E731
                     study_container(m))
    return key(a) == key(b)


def run(name: str, title_file: str, generic_file: str | None = None, plain_file: str | None = None) -> dict:
    tpts, tmeta = read_study(title_file)
    src = tmeta["source"]
    if plain_file:
        ppts, pmeta = read_study(plain_file)
        if not same_frames(tmeta, pmeta):
            raise SystemExit(f"{plain_file} is not a study of the same title, frames, measured frames and container")
        tpts = [p for p in tpts if p.family != "plain"] + [p for p in ppts if p.family == "plain"]
    plain = [p for p in tpts if p.family == "plain"]
    front = pareto(plain)
    title = [p for p in tpts if p.family != "plain" and (p.upscaler or "").endswith(TITLE_MARK)]
    if generic_file:
        gpts, gmeta = read_study(generic_file)
        if not same_frames(tmeta, gmeta):
            raise SystemExit("the two studies are not of the same title, frames, measured frames and container")
        generic = [p for p in gpts if p.family != "plain" and not (p.upscaler or "").endswith(TITLE_MARK)]
    else:  # the generic variant of each adapted rung: its segments alone, the generic weights' PSNR-Y
        gen = tmeta.get("psnr_y_generic", {})
        models = tmeta.get("models", {})
        generic = [dataclasses.replace(p, kbps=p.kbps - sum(m["bytes"] for m in models.get(p.name, [])) * 8
                                       / src["duration_s"] / 1000, psnr_y=gen[p.name],
                                       upscaler=p.upscaler.removesuffix(TITLE_MARK))
                   for p in title if p.name in gen]
    rows = rung_rows(title, {p.name: p for p in generic}, front, tmeta.get("models", {}), src["duration_s"])
    # the per-title variant of a rung gets its own name so that choose() sees both variants
    titled = [dataclasses.replace(p, name=p.name + TITLE_MARK) for p in title]
    return {"title": name, "source": src, "container": study_container(tmeta),
            "measured_frames": len(tmeta["conventions"].get("measured_frames", [])),
            "adapt": tmeta["conventions"].get("adapt", {}).get("config"),
            "adapt_runs": tmeta["conventions"].get("adapt", {}).get("renditions"),
            "studies": {"title": title_file, "generic": generic_file or "psnr_y_generic of the title study",
                        "plain": plain_file or "the title study's anchored plain points"},
            "plain_points": len(plain), "rungs": rows,
            "bd_vs_plain": {"generic": bd(front, pareto(generic)), "title": bd(front, pareto(title))},
            "ladder_generic": ladder(plain + generic, front),
            "ladder_title": ladder(plain + generic + titled, front)}


def markdown(r: dict) -> str:
    src = r["source"]
    lines = [f"## {r['title']}: {src['width']}x{src['height']}, {src['frames']} frames ({src['duration_s']:.1f} s)",
             "", f"Plain front: {r['plain_points']} plain points; PSNR-Y on {r['measured_frames']} frames. "
             f"kbps = ({r.get('container', 'mpegts')} segments + model files "
             f"({(r.get('adapt') or {}).get('encoding')})) bytes * 8 / duration.", "",
             "| rung | CRF | kbps | model kbps (share) | PSNR-Y generic | per-title | gain dB | generic vs front dB | "
             "per-title vs front dB (without model) | break-even s | pays vs generic from s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for w in r["rungs"]:
        lines.append(f"| {w['rung']} | {w['crf']:g} | {w['kbps']:.1f} | {w['model_kbps']:.1f} "
                     f"({100 * w['model_share']:.1f} %) | {w['psnr_generic']} | {w['psnr_title']} | {w['gain_db']} | "
                     f"{w['generic_vs_front_db']} | {w['vs_front_db']} ({w['vs_front_without_model_db']}) | "
                     f"{w['break_even_s']} | {w.get('pays_vs_generic_s')} |")
    lines += ["", "| ladder | rungs | lower-half BD-rate % vs plain front | BD-PSNR dB | all-rungs BD-rate % | "
              "largest shortfall dB |", "|---|---|---|---|---|---|"]
    for key, label in (("ladder_generic", "plain + generic SR"), ("ladder_title", "plain + generic + per-title SR")):
        ld = r[key]
        names = ", ".join(x["rung"] if x["family"] == "plain" else f"{x['rung']} ({x['upscaler']})"
                          for x in ld["rungs"])
        lines.append(f"| {label} | {names} | "
                     f"{ld['bd_lower_half'].get('bd_rate_pct')} | {ld['bd_lower_half'].get('bd_psnr_db')} | "
                     f"{ld['bd_all'].get('bd_rate_pct')} | {ld['max_below_plain_front_db']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name")
    ap.add_argument("--title", required=True, help="rd.json: plain-sr --adapt, plain anchored")
    ap.add_argument("--generic", help="rd.json: the same plain-sr with the shipped weights (default: the title "
                    "study's psnr_y_generic)")
    ap.add_argument("--plain", help="rd.json whose plain points are the front (default: the title study's)")
    ap.add_argument("--out", required=True, help="directory for title_sr.json and title_sr.md")
    a = ap.parse_args(argv)
    r = run(a.name, a.title, a.generic, a.plain)
    write_report(a.out, "title_sr", r, markdown(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
