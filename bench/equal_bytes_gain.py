"""BBMR's PSNR-Y gain over uniform x4 at equal bytes, from one or more stream manifests of the same clip.

Each BBMR rung is compared with the uniform-x4 rate curve at the same bitrate: PSNR-Y linearly interpolated in
log bitrate between the two nearest uniform rungs (no extrapolation: a BBMR rung outside the uniform bitrate range
gets no figure). PSNR-Y is whatever the manifests measured (bbmr-package: BT.601 Y, crop 0, mean over frames).

usage: python -m bench.equal_bytes_gain MANIFEST.json [MANIFEST.json ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from bench.common import emit


def interpolate(curve: list[tuple[float, float]], kbps: float) -> float | None:
    """PSNR-Y of a (kbps, psnr) curve at ``kbps``, linear in log bitrate; None outside the curve."""
    pts = sorted(curve)
    for (r0, p0), (r1, p1) in zip(pts, pts[1:]):
        if r0 <= kbps <= r1:
            t = 0.0 if r1 == r0 else (math.log(kbps) - math.log(r0)) / (math.log(r1) - math.log(r0))
            return p0 + t * (p1 - p0)
    return None


def gains(manifests: list[dict]) -> dict:
    rungs = [r for m in manifests for r in m["renditions"] if r.get("psnr_y") is not None]
    uniform = [(r["bitrate_kbps"], r["psnr_y"]) for r in rungs if r["kind"] == "uniform"]
    rows = []
    for r in sorted((r for r in rungs if r["kind"] == "bbmr"), key=lambda r: r["bitrate_kbps"]):
        u = interpolate(uniform, r["bitrate_kbps"])
        rows.append({"rendition": r["name"], "kbps": r["bitrate_kbps"], "psnr_y": r["psnr_y"],
                     "upscaler": r.get("psnr_y_upscaler"), "uniform_psnr_y_at_kbps": u,
                     "gain_db": None if u is None else r["psnr_y"] - u})
    return {"uniform": [{"kbps": k, "psnr_y": p} for k, p in sorted(uniform)], "bbmr": rows,
            "convention": "uniform-x4 PSNR-Y interpolated linearly in log bitrate; PSNR-Y as in the manifests"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifests", nargs="+")
    ap.add_argument("--json")
    a = ap.parse_args()
    res = gains([json.loads(Path(p).read_text()) for p in a.manifests])
    emit(res, a.json)
    for r in res["bbmr"]:
        g = "n/a (outside the uniform curve)" if r["gain_db"] is None else f"{r['gain_db']:+.2f} dB"
        print(f"# {r['rendition']}: {r['kbps']:.0f} kbps {r['psnr_y']:.2f} dB -> {g} over uniform x4 at equal bytes")


if __name__ == "__main__":
    main()
