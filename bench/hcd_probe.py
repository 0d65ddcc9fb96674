"""``python -m bench.hcd_probe CLIP --out DIR``: HCD variants (steps, step length, stages, warm start, rate
term, codec in the loop) on one plain-sr picture size of a clip, through x264, against the unrefined pictures.

Each variant refines the first ``--frames`` frames at 1/``--factor`` through the ``--upscaler``'s network
(models/hcd.py), then the pictures are encoded at every ``--crfs`` (x264 ``--preset``, yuv420p, one closed GOP
of all the frames, in memory: ``bench.prefilter.encode_decode``). Reported per variant: seconds per frame of the
refinement on this CPU, PSNR-Y before the codec (the 8-bit LR through the network), per CRF kbps (H.264 packet
bytes * 8 / duration, no container) and PSNR-Y after the codec, and BD-rate / BD-PSNR (``bjontegaard``, pchip)
against the unrefined variant (``steps=0``, always measured). PSNR-Y: BT.601 Y of RGB on [0, 255] against the
decoded source frame, crop 0, mean over the frames (not the study's video convention: a relative figure).

Variants are ``;``-separated lists of ``key=value`` (:class:`models.hcd.HCDConfig` fields; ``codec=1``: the LR
stage per segment with the codec in the loop at the middle CRF, :func:`models.hcd.refine_segment`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bbmr_stream.metrics import psnr_y_torch
from bbmr_stream.resize import downscale
from bench.common import write_report
from bench.prefilter import encode_decode, read_clip


def parse_variant(text: str) -> tuple[dict, bool]:
    kw, codec = {}, False
    for item in filter(None, (t.strip() for t in text.split(","))):
        k, _, v = item.partition("=")
        if k == "codec":
            codec = v not in ("0", "")
        elif k in ("hr", "warm"):
            kw[k] = v not in ("0", "false")
        elif k == "steps":
            kw[k] = int(v)
        else:
            kw[k] = float(v)
    return kw, codec


def refine(frames, f, k, kw: dict, codec_crf: float | None, fps: float, preset: str) -> list[torch.Tensor]:
    from models.hcd import FrameRefiner, HCDConfig, Objective, hr_stage, refine_segment

    cfg = HCDConfig(**kw)
    if not cfg.steps:
        return [downscale(y, k) for y in frames]
    if codec_crf is None:
        ref = FrameRefiner(f, k, cfg, 30.0)
        return [ref(y) for y in frames]
    # the HR stage per frame (warm), then the LR stage over the segment with the codec in the loop
    xs, prev = [], None
    for y in frames:
        t = hr_stage(y, k, Objective(f, y, k, codec_crf, cfg.rate), cfg, prev if cfg.warm else None)[0] if cfg.hr \
            else None
        prev = t.delta if t else None
        xs.append(downscale(t.x if t else y, k))

    def codec(pics):
        return encode_decode([p.clamp(0, 1) for p in pics], codec_crf, fps, len(pics), preset)[1]

    return refine_segment(frames, xs, f, k, cfg, codec_crf, codec)[0]


def measure(frames, lrs, f, crfs, fps, preset) -> tuple[float, list[dict]]:
    with torch.no_grad():
        pre = float(np.mean([float(psnr_y_torch(f((x * 255).round() / 255).clamp(0, 1), y)[0])
                             for x, y in zip(lrs, frames)]))
    rows = []
    for crf in crfs:
        nb, dec = encode_decode(lrs, crf, fps, len(frames), preset)
        with torch.no_grad():
            p = float(np.mean([float(psnr_y_torch(f(d).clamp(0, 1), y)[0]) for d, y in zip(dec, frames)]))
        rows.append({"crf": crf, "kbps": round(nb * 8 / (len(frames) / fps) / 1000, 2), "psnr_y": round(p, 4)})
    return round(pre, 4), rows


def bd(a: list[dict], b: list[dict]) -> dict:
    import bjontegaard

    args = ([r["kbps"] for r in a], [r["psnr_y"] for r in a], [r["kbps"] for r in b], [r["psnr_y"] for r in b])
    out = {}
    for key, fn in (("bd_rate_pct", bjontegaard.bd_rate), ("bd_psnr_db", bjontegaard.bd_psnr)):
        try:
            out[key] = round(float(fn(*args, method="pchip", require_matching_points=False, min_overlap=0.0)), 2)
        except Exception as e:  # report, do not guess
            out[key], out["note"] = None, f"{e.__class__.__name__}: {e}"
    return out


def markdown(r: dict) -> str:
    head = f"## {r['clip']}: x{r['factor']} ({r['upscaler']}), {r['frames']} frames, x264 {r['preset']}"
    return "\n".join([head, ""] + variant_table(r["variants"], "variant", "unrefined")) + "\n"


def variant_table(variants: list[dict], first: str, base: str) -> list[str]:
    """Markdown rows of probe variants (the first is the ``base`` every BD figure is against)."""
    lines = [f"| {first} | s/frame | PSNR-Y before codec | gain dB | BD-rate % vs {base} | BD-PSNR dB | "
             "kbps / PSNR-Y per CRF |", "|---|---|---|---|---|---|---|"]
    ref = variants[0]["pre_codec_psnr_y"]
    for v in variants:
        rows = ", ".join(f"{w['kbps']:.0f}/{w['psnr_y']:.2f}" for w in v["rows"])
        lines.append(f"| {v['variant'] or base} | {v['s_per_frame']} | {v['pre_codec_psnr_y']} | "
                     f"{v['pre_codec_psnr_y'] - ref:+.3f} | {v['bd'].get('bd_rate_pct')} | "
                     f"{v['bd'].get('bd_psnr_db')} | {rows} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    from models.factory import make_upscaler

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clip")
    ap.add_argument("--out", required=True)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--factor", type=int, default=2)
    ap.add_argument("--upscaler", default="fast")
    ap.add_argument("--crfs", default="26,28,30,32,34")
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--variants", default="steps=1")
    a = ap.parse_args(argv)
    frames, fps = read_clip(a.clip, a.frames)
    k = a.factor
    h, w = frames[0].shape[-2:]
    frames = [y[..., : h // (2 * k) * 2 * k, : w // (2 * k) * 2 * k] for y in frames]
    f = make_upscaler(a.upscaler, (k,), torch.device("cpu")).models[k]
    for p in f.parameters():
        p.requires_grad_(False)
    crfs = [float(c) for c in a.crfs.split(",")]
    res = {"clip": Path(a.clip).name, "factor": k, "upscaler": a.upscaler, "frames": len(frames), "preset": a.preset,
           "threads": torch.get_num_threads(), "variants": []}
    for text in ["steps=0"] + [v for v in a.variants.split(";") if v.strip() and v.strip() != "steps=0"]:
        kw, codec = parse_variant(text)
        t = time.perf_counter()
        lrs = refine(frames, f, k, kw, crfs[len(crfs) // 2] if codec else None, fps, a.preset)
        sec = (time.perf_counter() - t) / len(frames)
        pre, rows = measure(frames, lrs, f, crfs, fps, a.preset)
        v = {"variant": "" if text == "steps=0" else text, "s_per_frame": round(sec, 3), "pre_codec_psnr_y": pre,
             "rows": rows}
        v["bd"] = bd(res["variants"][0]["rows"], rows) if res["variants"] else {}
        res["variants"].append(v)
        print(json.dumps(v), file=sys.stderr)
    write_report(a.out, "hcd_probe", res, markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
