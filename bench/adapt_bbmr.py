"""Per-title JointSR for a BBMR rung (issue 23, item 6): does fine-tuning the client's multi-scale model on the
title's own BBMR pictures and maps put BBMR on the plain front, with and without the model's bytes?

``.venv/bin/python -m bench.adapt_bbmr CLIP --crf 44 --rd PLAIN_RD_JSON --out DIR [--scorer bicubic]
[--steps N | --minutes M] [--trainable all|head] [--frames 120] [--measure-frames 30] [--crop PX]``

1. The rung as shipped: ``python -m packager.cli CLIP --out DIR/stream --ladder bbmr:CRF --no-measure --device cpu
   --scorer S`` (skipped when DIR/stream/manifest.json is there; the same ``--container`` as the study given
   with ``--rd``). Rate = the rendition's ``bitrate_kbps`` (segments as shipped, init segment and scale-map SEI
   included: bytes * 8 / duration).
2. Its segments are decoded back (bbmr_stream.demux.segment_frames, as the player): every kept frame's
   pictures are unpacked with its scale map into LR blocks (the family's layout); HR = the source frames padded
   to the block grid. Training frames: ``--frames`` evenly spaced over the title (models.adapt.frames_to_keep);
   measured frames: ``--measure-frames`` evenly spaced (packager.pipeline.measured_frames), PSNR-Y by the
   project's convention (bbmr_stream.family.Family.luma: the source's Y plane vs the luma of the unrounded RGB
   reconstruction).
3. Fine-tuning (models.adapt.adapt with a BlockPool): windows of 2x2 blocks of one frame at their coded scales,
   L1 on RGB less ``--crop`` px along the window's border (default 32: a quarter block), Adam at 1e-4 with a
   50-step warm-up, warm start from the shipped ``jointsr`` weights; ``--trainable head`` trains the deblock
   branch and the final Upsample only (53 k of 1.39 M parameters), ``all`` everything.
4. The model as it would ship: the trained tensors' difference to the shipped weights in delta-int4
   (models.title.quantize_delta, 4 bits + a float32 scale per output channel, the least-squares clip); bytes =
   a safetensors file of the trained tensors only (models.title.serialize, header included; a *partial* delta
   file, tensors absent = unchanged, which models/title.py does not read yet: today's format would carry every
   tensor, 0.7 MB for JointSR); its PSNR-Y measured with the dequantized weights. kbps of the model = bytes * 8
   / title duration.
5. The gap to the plain front (``--rd``: its plain front, piecewise linear in (ln kbps, PSNR-Y); a study of the
   same source, frame count, measured frames and container) at the rung's rate before (generic JointSR) and
   after (per-title), without and with the model's bytes in the rate; None outside the front's rate range.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HEAD = ("deblock.", "up.")


def log(*a) -> None:
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def check_stream(stream: Path, args, container: str) -> None:
    """A stream left in DIR by an earlier run must be the rung asked for."""
    from bbmr_stream.manifest import load

    man = load(str(stream))
    r = man.renditions[0]
    if len(man.renditions) != 1 or r.kind != "bbmr" or r.crf != args.crf or man.container != container \
            or man.scorer != args.scorer:
        raise SystemExit(f"{stream}: not the bbmr:{args.crf:g} rung ({args.scorer} scorer, {container}) asked for; "
                         "remove it or use another --out")


def package(args, out: Path, container: str) -> dict:
    cmd = [sys.executable, "-m", "packager.cli", str(Path(args.clip).resolve()), "--out", str(out), "--force",
           "--ladder", f"bbmr:{args.crf:g}", "--no-measure", "--device", "cpu", "--scorer", args.scorer,
           "--container", container]
    log("packaging:", " ".join(shlex.quote(c) for c in cmd))
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ))
    return {"command": " ".join(shlex.quote(c) for c in cmd), "wall_s": round(time.time() - t0, 1)}


def decode(stream: Path, info, keep: list[int], measured: list[int]):
    """(manifest, rendition, family, {frame: LRBlocks} of ``keep``, {frame: (RGB pictures, smap)} of
    ``measured``, {frame: padded HR uint8} of ``keep``, {frame: source Y} of ``measured``)."""
    from bbmr_stream.blocks import pad_tensor
    from bbmr_stream.colour import frame_to_rgb
    from bbmr_stream.decode import frames
    from bbmr_stream.demux import init_path, segment_frames
    from bbmr_stream.family import family_of
    from bbmr_stream.manifest import load
    from bbmr_stream.resize import to_tensor

    man = load(str(stream))
    rend = man.renditions[0]
    fam = family_of(rend, man)
    want_k, want_m = set(keep), set(measured)
    blocks, pics = {}, {}
    for seg in rend.segments:
        for i, (frs, smap) in enumerate(segment_frames(stream / seg.file, len(rend.pictures), init_path(stream, rend))):
            f = seg.first_frame + i
            if f not in want_k and f not in want_m:
                continue
            p = [frame_to_rgb(x, info.matrix, info.full_range)[0] for x in frs]
            if f in want_k:
                blocks[f] = fam._layout.unpack(p, smap, fam.geo.grid, fam._pack_scales(), fam.geo.overall)
            if f in want_m:
                pics[f] = (p, smap)
    hr, ys = {}, {}
    last = max(max(keep), max(measured))
    for fr in frames(info, last + 1, strict=True):
        if fr.index in want_k:
            x = pad_tensor(to_tensor(fr.rgb), fam.geo.grid.block)
            hr[fr.index] = (x[0].permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
        if fr.index in want_m:
            ys[fr.index] = fr.y
    return man, rend, fam, blocks, pics, hr, ys


def psnr(fam, info, pics, ys, model) -> dict[int, float]:
    from bbmr_stream.colour import luma
    from bbmr_stream.metrics import psnr_plane
    from models.jointsr import JointSRUpscaler

    up = JointSRUpscaler(model.eval(), "cpu")
    out = {}
    for f, (p, smap) in sorted(pics.items()):
        x = fam.reconstruct_float(p, smap, up)
        y = luma(x[0].permute(1, 2, 0).double().cpu().numpy() * 255.0, info.matrix, info.full_range)
        out[f] = round(psnr_plane(ys[f], y), 4)
    return out


def shipped(model, base: dict, names: list[str]) -> tuple[torch.nn.Module, int]:
    """(the model with the trained tensors replaced by base + their dequantized delta-int4, file bytes)."""
    import copy

    from models.title import _delta, pack_int4, quantize_delta, serialize

    q_model = copy.deepcopy(model)
    sd = q_model.state_dict()
    tensors = {}
    for k in names:
        q, scale = quantize_delta(sd[k].float() - base[k].float(), 4)
        tensors[k], tensors[k + ".scale"] = pack_int4(q), scale
        sd[k] = base[k].float() + _delta(tensors, k, tuple(sd[k].shape), "delta-int4")  # as the client decodes it
    q_model.load_state_dict(sd)
    data = serialize(tensors, {"format": "bbmr-title-model-1", "arch": "jointsr", "encoding": "delta-int4"})
    return q_model.eval(), len(data)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clip")
    ap.add_argument("--out", required=True)
    ap.add_argument("--crf", type=float, default=44.0)
    ap.add_argument("--rd", required=True, help="rd.json of the title's plain front (bbmr-bench rd)")
    ap.add_argument("--scorer", default="bicubic")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--minutes", type=float)
    ap.add_argument("--trainable", choices=("all", "head"), default="head")
    ap.add_argument("--frames", type=int, default=120, help="training frames, evenly spaced")
    ap.add_argument("--measure-frames", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--crop", type=int, default=32, help="HR px along a training window's border left out of the loss")
    args = ap.parse_args(argv)

    from bbmr_stream.decode import probe
    from bench.adapt_probe import front_psnr, plain_front
    from models.adapt import AdaptConfig, BlockPool, adapt, frames_to_keep
    from models.registry import load_model
    from packager.ladder import study_container
    from packager.pipeline import measured_frames

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rd = json.loads(Path(args.rd).read_text())
    container = study_container(rd["meta"])
    front = plain_front(Path(args.rd), container)
    info = probe(args.clip)
    src = rd["meta"]["source"]
    n = info.frames
    measured = measured_frames(n, args.measure_frames)
    if (src["file"], src["frames"], rd["meta"]["conventions"].get("measured_frames")) != \
            (Path(args.clip).name, n, measured):
        raise SystemExit(f"--rd {args.rd}: not a study of {Path(args.clip).name}'s {n} frames measured on the same "
                         f"{len(measured)} frames (--measure-frames)")
    res: dict = {"clip": Path(args.clip).name, "crf": args.crf, "scorer": args.scorer, "container": container,
                 "trainable": args.trainable, "crop": args.crop, "threads": torch.get_num_threads()}
    stream = out / "stream"
    if (stream / "manifest.json").exists():
        check_stream(stream, args, container)
    else:
        res["package"] = package(args, stream, container)
    keep = frames_to_keep(n, AdaptConfig(frames=args.frames), 1)
    t0 = time.time()
    man, rend, fam, blocks, pics, hr, ys = decode(stream, info, keep, measured)
    res["decode_s"] = round(time.time() - t0, 1)
    kbps = rend.bitrate_kbps
    if man.source["frames"] != n:
        raise SystemExit(f"{stream}: {man.source['frames']} frames packaged, the clip has {n}")
    dur = man.source["frames"] * man.source["fps"][1] / man.source["fps"][0]
    res |= {"rendition": rend.name, "kbps": kbps, "parts_kbps": rend.parts_kbps, "duration_s": dur,
            "training_frames": len(keep), "measured_frames": measured}

    model = load_model("jointsr", "cpu")
    base = {k: v.clone() for k, v in model.state_dict().items()}
    t0 = time.process_time()
    gen = psnr(fam, info, pics, ys, model)
    res["eval_cpu_s_per_frame"] = round((time.process_time() - t0) / len(gen), 2)
    res["psnr_generic"] = round(float(np.mean(list(gen.values()))), 4)
    log("generic", res["psnr_generic"])

    pool = BlockPool([blocks[f] for f in keep], np.stack([hr[f] for f in keep]), crop=args.crop)
    del blocks, hr
    cfg = AdaptConfig(minutes=args.minutes, steps=args.steps, seed=args.seed)
    train = (lambda name: name.startswith(HEAD)) if args.trainable == "head" else None
    r = adapt(model, pool, cfg, "jointsr", 60.0 * (args.minutes or 6.0), trainable=train)
    names = [k for k, p in model.named_parameters() if train is None or train(k)]
    res["adapt"] = r.to_dict() | {"trained_params": int(sum(model.state_dict()[k].numel() for k in names)),
                                  "all_params": int(sum(p.numel() for p in model.parameters()))}
    log("adapted", res["adapt"])
    res["psnr_title_fp32"] = round(float(np.mean(list(psnr(fam, info, pics, ys, model).values()))), 4)
    q_model, nbytes = shipped(model, base, names)
    res["psnr_title"] = round(float(np.mean(list(psnr(fam, info, pics, ys, q_model).values()))), 4)
    res["model_bytes"] = nbytes
    res["model_kbps"] = round(nbytes * 8 / dur / 1000, 2)
    with_model = kbps + res["model_kbps"]
    if front is not None:
        lo, hi = front["points"][0][1], front["points"][-1][1]

        def gap(q: float, rate: float) -> float | None:
            return round(q - front_psnr(front, rate), 3) if lo <= rate <= hi else None

        res["front"] = front
        res["gap_db"] = {"generic": gap(res["psnr_generic"], kbps),
                         "title_without_model_bytes": gap(res["psnr_title"], kbps),
                         "title_with_model_bytes": gap(res["psnr_title"], with_model)}
    res["gain_db"] = round(res["psnr_title"] - res["psnr_generic"], 3)
    path = out / f"adapt_bbmr_{args.trainable}_crop{args.crop}.json"
    path.write_text(json.dumps(res, indent=1) + "\n")
    log("wrote", path, json.dumps({k: res[k] for k in ("kbps", "psnr_generic", "psnr_title", "model_kbps")}),
        json.dumps(res.get("gap_db")))
    return 0 if math.isfinite(res["psnr_title"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
