"""``python -m bench.delta_bits CLIP STREAM CKPT --factor K --json OUT``: how many bits a per-title model's delta
to the shipped weights needs.

A FastSR model fine-tuned on a title by ``bench/adapt_probe.py`` (its checkpoint ``CKPT``, the ``"model"`` state
dict; the rung it was trained on: the stream directory ``STREAM`` of that probe, one plain-sr rendition of
``CLIP``) is re-quantized as :func:`models.title.quantize_delta` does: the difference to the shipped
``fastsr-xK`` weights, per output channel, at 8..2 bits, with the absmax scale and (below 8 bits) with the clip
of least squared error of :data:`models.title.INT4_CLIPS`. Each variant's mean PSNR-Y (the probe's
convention: bbmr_stream.family.Family.luma through PlainSR, the source's decoded Y plane, peak 255) on every
``--every``-th frame, beside the generic weights and the unquantized fine-tune; bytes of the quantized values at
``bits`` per value and their zero-order entropy (what an entropy coder could reach).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import torch


def quantize(d: torch.Tensor, bits: int, clip: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, dequantized) of one tensor's delta, per output channel, absmax or least-squares clip
    (:func:`models.title.quantize_delta`)."""
    from models.title import INT4_CLIPS, quantize_delta

    q, s = quantize_delta(d, bits, INT4_CLIPS if clip else (1.0,))
    return q.flatten().float(), (q.float().reshape(s.shape[0], -1) * s[:, None]).reshape(d.shape)


def entropy_bits(values: np.ndarray) -> float:
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.delta_bits", description=__doc__.split("\n\n")[0])
    ap.add_argument("clip")
    ap.add_argument("stream", help="the probe's packaged rung (bench/adapt_probe.py --ckpt DIR/TAG/stream)")
    ap.add_argument("ckpt", help="the probe's fine-tuned checkpoint (DIR/TAG/fastsr_b.pt)")
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--crf", type=float, default=29)
    ap.add_argument("--every", type=int, default=40, help="measure every N-th frame (default %(default)s)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", required=True)
    a = ap.parse_args(argv)
    import bench.adapt_probe as probe

    torch.set_num_threads(a.threads)
    info, _, _, lr, _, ys, _ = probe.load_rung(types.SimpleNamespace(clip=a.clip, factor=a.factor), Path(a.stream))
    idx = list(range(0, len(lr), a.every))
    ev = probe.Evaluator(info, a.factor, a.crf, lr, ys)
    model = probe.load_generic("fastsr", a.factor)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    tuned = torch.load(a.ckpt, map_location="cpu", weights_only=False)["model"]

    def psnr(sd) -> float:
        model.load_state_dict(sd)
        return round(float(np.mean(list(ev.psnr(model, idx).values()))), 4)

    res = {"clip": a.clip, "stream": a.stream, "ckpt": a.ckpt, "factor": a.factor, "frames": idx,
           "params": sum(v.numel() for v in base.values() if v.is_floating_point()),
           "generic": psnr(base), "fine_tuned_fp32": psnr(tuned), "variants": []}
    for bits in (8, 6, 5, 4, 3, 2):
        for clip in (False, True) if bits < 8 else (False,):
            sd, values = {}, []
            for k, v in base.items():
                if not v.is_floating_point():
                    sd[k] = tuned[k]
                    continue
                q, deq = quantize(tuned[k].float() - v.float(), bits, clip)
                sd[k] = v + deq
                values.append(q.numpy())
            vals = np.concatenate(values)
            h = entropy_bits(vals)
            row = {"bits": bits, "scale": "least-squares clip" if clip else "absmax", "psnr_y": psnr(sd),
                   "value_bytes": math.ceil(vals.size * bits / 8), "entropy_bits": round(h, 2),
                   "entropy_bytes": math.ceil(vals.size * h / 8)}
            row["loss_db"] = round(res["fine_tuned_fp32"] - row["psnr_y"], 4)
            res["variants"].append(row)
            print(json.dumps(row), flush=True)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
