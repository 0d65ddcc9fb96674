"""``python -m bench.prefilter CLIP --out DIR``: the continuous-picture lever of BBMR, measured against plain rungs.

One picture per rung at 1/``base`` of the source (base 2: the x2 picture, base 1: full size) in which every
128-px block is low-passed to the detail of its own scale k in {base, 2 base, 4 base} (down by k, bicubic back
up to 1/base): the codec sees continuous content (motion compensation works across block edges) and spends
few bits where detail was removed. Each block takes the scale minimising ``SSE_k + lam * h264_lambda(crf) *
R_k`` (SSE of the block after down-up to the source, Y on [0, 255]; R_k the gradient bit proxy of
``bbmr_stream.rate`` on the low-passed block); the client upscales by ``base`` with bicubic. The map is chosen
per frame, or once per GOP (``per_gop``); ``feather`` blends the scales over that many pixels at block edges.

This is an upper bound of what the layout can give BBMR *before* SR: SR of the low-passed blocks would raise
PSNR of every variant, plain included. The comparison is against the plain rung of the same picture size
(same CRFs); against the front of all plain sizes the BD-rate would mostly measure how sparse that front is (a
variant equal to the x2 plain rung scores -5 % against it).

Conventions (both sides the same): frames of the clip decoded with its matrix and range; x264 at the preset,
closed GOPs, yuv420p; rate = H.264 packet bytes (no container) x 8 / duration; PSNR-Y =
BT.601 Y of RGB on [0, 255], crop 0, of the bicubic-upscaled decoded picture vs the decoded source frame, mean
of per-frame PSNR over all frames. BD-rate: ``bjontegaard`` package, pchip, over the PSNR-Y overlap.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bbmr_stream.cli import run_cli
from bbmr_stream.errors import InputError
from bbmr_stream.metrics import psnr_y_torch, rgb_to_y_torch
from bbmr_stream.rate import gradient_bits, h264_lambda
from bbmr_stream.resize import downscale, resize_to, to_uint8, upscale
from bench.common import write_report

BLOCK = 128


@dataclass(frozen=True)
class Variant:
    base: int  # picture at 1/base of the source
    lam: float  # rate weight (x h264_lambda(crf)); 0 = plain picture
    feather: int  # px of blending at block edges in the picture (1 = hard edges)
    per_gop: bool  # map chosen on the GOP's first frame and kept

    @property
    def name(self) -> str:
        return f"cont{self.base}:lam{self.lam:g}:f{self.feather}:{'gop' if self.per_gop else 'frame'}"


def _block_sum(a: torch.Tensor, block: int) -> torch.Tensor:
    """(H, W) -> (grid_h, grid_w) sums over block x block tiles (partial tiles at the edges)."""
    return F.avg_pool2d(a[None, None], block, ceil_mode=True)[0, 0] * block * block


def scale_candidates(hr: torch.Tensor, base: int, crf: float) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Pictures at 1/base with the whole frame low-passed to scale base, 2 base, 4 base; per-block SSE (Y) of
    each after bicubic up to the source, and per-block bit proxy. hr: (1, 3, H, W) in [0, 1]."""
    pics, sse, bits = [], [], []
    for k in (base, 2 * base, 4 * base):
        p = downscale(hr, k)
        p = upscale(p, k // base)
        pics.append(p)
        err = (rgb_to_y_torch(hr) - rgb_to_y_torch(upscale(p, base)))[0] ** 2
        sse.append(_block_sum(err, BLOCK))
        bits.append(_block_sum(gradient_bits(rgb_to_y_torch(p)[0], crf), BLOCK // base))
    return pics, torch.stack(sse), torch.stack(bits)


def blend(pics: list[torch.Tensor], choice: torch.Tensor, base: int, feather: int) -> torch.Tensor:
    """One picture: block b from pics[choice[b]], blended over ``feather`` px at block edges."""
    h, w = pics[0].shape[-2:]
    onehot = torch.stack([(choice == i).float() for i in range(len(pics))])[None]
    mask = F.interpolate(onehot, scale_factor=BLOCK // base, mode="nearest")[..., :h, :w]
    if feather > 1:
        p = feather // 2
        mask = F.avg_pool2d(F.pad(mask, [p, feather - 1 - p, p, feather - 1 - p], mode="replicate"), feather, stride=1)
    return sum(mask[:, i:i + 1] * pics[i] for i in range(len(pics)))


def prefiltered(frames: list[torch.Tensor], v: Variant, crf: float, gop: int) -> tuple[list[torch.Tensor], list[float]]:
    """The variant's pictures for every frame and the share of blocks at each scale."""
    out, counts, choice = [], np.zeros(3), None
    for i, hr in enumerate(frames):
        pics, sse, bits = scale_candidates(hr, v.base, crf)
        if choice is None or not v.per_gop or i % gop == 0:
            choice = torch.argmin(sse + v.lam * h264_lambda(crf) * bits, dim=0)
        counts += np.bincount(choice.flatten().numpy(), minlength=3)
        out.append(blend(pics, choice, v.base, v.feather))
    return out, (counts / counts.sum()).round(4).tolist()


def encode_decode(pictures: list[torch.Tensor], crf: float, fps: float, gop: int, preset: str
                  ) -> tuple[int, list[torch.Tensor]]:
    """x264 (yuv420p, closed GOPs of ``gop``) in memory; returns (packet bytes, decoded pictures)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=round(fps))
        s.height, s.width = pictures[0].shape[-2:]
        s.pix_fmt = "yuv420p"
        s.options = {"crf": f"{crf:g}", "preset": preset, "g": str(gop), "keyint_min": str(gop),
                     "sc_threshold": "0", "open_gop": "0"}
        for p in pictures:
            for pkt in s.encode(av.VideoFrame.from_ndarray(to_uint8(p), format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    buf.seek(0)
    nbytes, dec = 0, []
    with av.open(buf) as c:
        for pkt in c.demux(video=0):
            nbytes += pkt.size
            for f in pkt.decode():
                dec.append(torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1)[None].float() / 255)
    return nbytes, dec


def measure(frames, pictures, crf, fps, gop, preset) -> dict:
    nbytes, dec = encode_decode(pictures, crf, fps, gop, preset)
    h, w = frames[0].shape[-2:]
    ps = [float(psnr_y_torch(f, resize_to(d, h, w))[0]) for f, d in zip(frames, dec)]
    return {"kbps": round(nbytes * 8 / (len(frames) / fps) / 1000, 2), "psnr_y": round(float(np.mean(ps)), 4)}


def read_clip(path: str, n: int) -> tuple[list[torch.Tensor], float]:
    from bbmr_stream.decode import frames, probe

    info = probe(path)
    out = [torch.from_numpy(f.rgb).permute(2, 0, 1)[None].float() / 255 for f in frames(info, n, strict=True)]
    h, w = out[0].shape[-2:]
    if h < BLOCK or w < BLOCK:
        raise InputError(f"{path}: {w}x{h} is smaller than one {BLOCK}-px block")
    return out, float(info.fps)


def bd_rate(anchor: list[dict], test: list[dict]) -> float | None:
    import bjontegaard

    if len(anchor) < 2 or len(test) < 2:
        return None
    try:
        with warnings.catch_warnings():  # "curves do not overlap" is reported as None
            warnings.simplefilter("ignore")
            v = bjontegaard.bd_rate([p["kbps"] for p in anchor], [p["psnr_y"] for p in anchor],
                                    [p["kbps"] for p in test], [p["psnr_y"] for p in test], method="pchip",
                                    require_matching_points=False, min_overlap=0.0)
    except Exception:  # no overlap or a curve the package cannot interpolate
        return None
    return round(float(v), 2) if math.isfinite(v) else None


def plain_sizes(h: int, w: int) -> list[tuple[int, int, int]]:
    """(divisor-label x 10, height, width) of the plain candidates: 1, 1.5, 2, 3, 4 (even sizes)."""
    return [(int(r * 10), int(round(h / r / 2)) * 2, int(round(w / r / 2)) * 2) for r in (1, 1.5, 2, 3, 4)]


def summarise(points: list[dict], variants: list[Variant]) -> list[dict]:
    rows = []
    for v in variants:
        test = sorted((p for p in points if p["kind"] == v.name), key=lambda p: p["crf"])
        same = [p for p in points if p["kind"] == "plain" and p["div10"] == 10 * v.base
                and p["crf"] in {t["crf"] for t in test}]
        rows.append({"variant": v.name, **asdict(v), "bd_rate_vs_same_size_plain_pct": bd_rate(same, test),
                     "points": [(t["crf"], t["kbps"], t["psnr_y"], t["shares"]) for t in test]})
    return rows


def markdown(res: dict) -> str:
    m = res["meta"]
    lines = [f"# Continuous-picture prefilter on {m['clip']} ({m['frames']} frames, {m['width']}x{m['height']})", "",
             "Command: `" + m["command"] + "`. " + m["conventions"], "",
             "| variant | BD-rate vs the plain rung of the same size | CRF: kbps / PSNR-Y (share of blocks at base, "
             "2 base, 4 base) |",
             "|---|---|---|"]
    for r in res["summary"]:
        pts = "; ".join(f"{c:g}: {k:.0f} / {p:.2f} ({', '.join(f'{s:.2f}' for s in sh)})"
                        for c, k, p, sh in r["points"])
        fmt = lambda v: "n/a" if v is None else f"{v:+.1f} %"  # noqa: E731
        lines.append(f"| {r['variant']} | {fmt(r['bd_rate_vs_same_size_plain_pct'])} | {pts} |")
    lines += ["", "Plain candidates (kbps / PSNR-Y):", "",
              "| size | " + " | ".join(f"CRF {c:g}" for c in m["crfs"]) + " |",
              "|---" * (len(m["crfs"]) + 1) + "|"]
    for _, h, w in plain_sizes(m["height"], m["width"]):
        row = {p["crf"]: p for p in res["points"] if p["kind"] == "plain" and (p["height"], p["width"]) == (h, w)}
        lines.append(f"| {w}x{h} | " + " | ".join(f"{row[c]['kbps']:.0f} / {row[c]['psnr_y']:.2f}" if c in row else ""
                                                   for c in m["crfs"]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Exit code 0, or 2 with a one-line message on bad input."""
    return run_cli("python -m bench.prefilter", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.prefilter", description=__doc__.split("\n\n")[0])
    ap.add_argument("clip")
    ap.add_argument("--out", required=True, help="directory for prefilter.json and prefilter.md")
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--crfs", default="28,33,38")
    ap.add_argument("--bases", default="2,1", help="picture sizes to try: 1/base of the source")
    ap.add_argument("--lams", default="0.5,2,8")
    ap.add_argument("--feathers", default="1,16")
    ap.add_argument("--gop", type=int, default=60, help="closed GOP length in frames")
    ap.add_argument("--preset", default="medium")
    a = ap.parse_args(argv)
    try:
        crfs = [float(c) for c in a.crfs.split(",")]
        bases = [int(b) for b in a.bases.split(",")]
        lams = [float(x) for x in a.lams.split(",")]
        feathers = [int(f) for f in a.feathers.split(",")]
    except ValueError as e:
        raise InputError(f"bad list: {e}") from None
    if a.frames < 1 or a.gop < 1 or any(b not in (1, 2) for b in bases) or any(f < 1 for f in feathers):
        raise InputError("--frames and --gop must be >= 1, --bases 1 and/or 2, --feathers >= 1")
    frames, fps = read_clip(a.clip, a.frames)
    h, w = frames[0].shape[-2:]
    torch.set_num_threads(max(1, torch.get_num_threads()))
    points = []
    for div10, ph, pw in plain_sizes(h, w):
        pics = [resize_to(f, ph, pw) for f in frames]
        for crf in crfs:
            points.append({"kind": "plain", "div10": div10, "height": ph, "width": pw, "crf": crf,
                           **measure(frames, pics, crf, fps, a.gop, a.preset)})
            print(json.dumps(points[-1]), flush=True)
    variants = [Variant(b, lam, f, g) for b in bases for f in feathers for g in (False, True) for lam in lams]
    for v in variants:
        for crf in crfs:
            pics, shares = prefiltered(frames, v, crf, a.gop)
            points.append({"kind": v.name, "crf": crf, "shares": shares,
                           **measure(frames, pics, crf, fps, a.gop, a.preset)})
            print(json.dumps(points[-1]), flush=True)
    cmd = "python -m bench.prefilter " + " ".join(argv if argv is not None else sys.argv[1:])
    res = {"meta": {"clip": Path(a.clip).name, "frames": len(frames), "width": w, "height": h, "fps": fps,
                    "crfs": crfs, "gop": a.gop, "preset": a.preset, "command": cmd,
                    "conventions": __doc__.split("Conventions (both sides the same): ")[1].split("\n\n")[0]
                    .replace("\n", " ")},
           "points": points, "summary": summarise(points, variants)}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_report(out, "prefilter", res, markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
