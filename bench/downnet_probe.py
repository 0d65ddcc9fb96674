"""``python -m bench.downnet_probe CLIP --weights RUN/model.safetensors --out DIR``: a Down-Net's LR (models/downnet.py)
against the bicubic LR for one plain-sr picture size of a clip, through x264 (the probe of bench.hcd_probe: the
same encoding, measurement and BD conventions; PSNR-Y of the upscaler's output against the decoded source frame,
BT.601, crop 0; kbps = H.264 packet bytes, no container).

Does a learned downscaler survive the codec: its PSNR-Y gain before the codec, and its BD-rate / BD-PSNR against
the bicubic pictures at the same CRFs (the rung's rate-quality curve with the same upscaler). Seconds per frame of
the Down-Net on this CPU beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from bbmr_stream.resize import downscale
from bench.common import write_report
from bench.hcd_probe import bd, measure, variant_table
from bench.prefilter import read_clip


def load_downnet(path: str):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from models.downnet import DownNet, DownNetConfig

    with safe_open(path, "pt") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    net = DownNet(DownNetConfig(**meta["config"]))
    net.load_state_dict(load_file(path))
    return net.eval(), meta


def markdown(r: dict) -> str:
    return "\n".join([f"## {r['clip']}: x{r['factor']} ({r['upscaler']}), {r['frames']} frames, x264 {r['preset']}", "",
                      f"Down-Net: {r['weights']} ({r['iterations']} iterations against {r['trained_with']})", ""]
                     + variant_table(r["variants"], "LR", "bicubic")) + "\n"


def main(argv: list[str] | None = None) -> int:
    from models.factory import make_upscaler

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clip")
    ap.add_argument("--weights", required=True, help="a bbmr-train downnet run's model.safetensors")
    ap.add_argument("--out", required=True)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--upscaler", default="fast")
    ap.add_argument("--crfs", default="18,23,28,33,38")
    ap.add_argument("--preset", default="medium")
    a = ap.parse_args(argv)
    net, meta = load_downnet(a.weights)
    k = net.cfg.scale
    frames, fps = read_clip(a.clip, a.frames)
    h, w = frames[0].shape[-2:]
    frames = [y[..., : h // (2 * k) * 2 * k, : w // (2 * k) * 2 * k] for y in frames]
    f = make_upscaler(a.upscaler, (k,), torch.device("cpu")).models[k]
    crfs = [float(c) for c in a.crfs.split(",")]
    res = {"clip": Path(a.clip).name, "factor": k, "upscaler": a.upscaler, "frames": len(frames), "preset": a.preset,
           "weights": a.weights, "iterations": meta.get("iterations"),
           "trained_with": meta.get("upscaler", {}).get("id"),
           "threads": torch.get_num_threads(), "variants": []}
    for name in ("bicubic", "downnet"):
        t = time.perf_counter()
        with torch.no_grad():
            lrs = [downscale(y, k) if name == "bicubic" else net(y) for y in frames]
        sec = (time.perf_counter() - t) / len(frames)
        pre, rows = measure(frames, lrs, f, crfs, fps, a.preset)
        v = {"variant": name, "s_per_frame": round(sec, 3), "pre_codec_psnr_y": pre, "rows": rows}
        v["bd"] = bd(res["variants"][0]["rows"], rows) if res["variants"] else {}
        res["variants"].append(v)
        print(json.dumps(v), file=sys.stderr)
    write_report(a.out, "downnet_probe", res, markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
