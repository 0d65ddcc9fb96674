"""Per-title adaptation probe (issue 23): how many dB does fine-tuning the client SR model on the title buy at a
coded plain-sr rung, per CPU-minute, and how many bytes does the adapted model cost?

``.venv/bin/python -m bench.adapt_probe CLIP --factor 4 --crf 29 --ckpt DIR`` (``--code DIR`` with
``PYTHONPATH=DIR``: another copy of the project runs the packager and provides the modules imported here)

Steps (each resumable: finished stages are in the result JSON, training in checkpoints under ``--ckpt``):

1. the rung exactly as shipped: ``python -m packager.cli CLIP --out DIR --ladder plain-sr:K:CRF --no-measure
   --device cpu [--max-frames N]`` (run in ``--code``, the project copy whose modules this script imports);
   its segments are decoded back (bbmr_stream.demux.segment_frames, bbmr_stream.colour.frame_to_rgb with the
   source's matrix/range): the LR pictures the client decodes. HR = the source frames (bbmr_stream.decode).
   Rate = segment bytes as shipped * 8 / (frames / fps), kbps (1000 bit/s).
2. baselines: bicubic, generic ``fastsr-xK`` and ``omnisr-light-xK`` (models.registry.load_model, eager torch
   fp32, run through models.upscalers.OmniSRUpscaler.sr_plane and PlainSR.reconstruct_float as the player).
3. fine-tuning a copy of the generic model on the title (warm start): random LR/HR patch pairs (LR patch P px,
   HR patch K*P px from the source frame at the same place), L1 on RGB in [0, 1], Adam, linear warm-up then a
   constant learning rate (a step-based schedule, so the model after step n is deterministic for a seed and
   does not depend on the machine's speed; the CPU-time budget only says where to stop). Protocol ``a``: patches
   from the even segments (0, 2, ...; ``--segment`` s each), measured on the odd ones; protocol ``b``: patches
   from all segments, measured on all (what would ship). A short learning-rate sweep (``--sweep``) on protocol a
   picks the rate (note: picked on the measured frames of protocol a, a mild optimistic bias for a).
4. model bytes: the adapted weights as fp16 safetensors (file size), and deltas against the generic weights:
   the top p % of |adapted - generic| (over all float parameters) as fp16 values plus indices (uint16 when the
   model has < 65536 parameters, else int32; or a 1-bit-per-parameter mask when smaller), written as a
   safetensors file (file size, header included); PSNR-Y of each (generic + fp16 delta). kbps = bytes * 8 /
   clip duration / 1000 (the clip as packaged, i.e. ``--max-frames`` frames).
5. break-even length: the duration at which the model's bits equal the rate its dB gain is worth on the clip's
   plain H.264 front (``--rd``, rd.json of `bbmr-bench rd`): r = d ln(kbps) / d PSNR-Y of the plain front,
   piecewise linear in (PSNR-Y, ln kbps) between front points, averaged over [generic, adapted] PSNR; rate the
   gain is worth dR = R_rung * (exp(r * gain) - 1) kbps, with R_rung the rung's shipped kbps; break-even
   T = 8 * model_bytes / (1000 * dR) seconds. The gain is protocol b's (adapted - generic, same frames).

PSNR-Y convention (the project's, bbmr_stream.family.Family.luma): the source's decoded 8-bit Y plane vs the
luma (bbmr_stream.colour.luma, source matrix and range, unrounded) of the reconstruction's unrounded RGB
output clamped to [0, 1], peak 255, no crop, mean of per-frame PSNR (bbmr_stream.metrics.psnr_plane) over the
measured frames. Measured frames: ``--eval-per-segment`` evenly spaced frames per segment over the clip
(packager.pipeline.measured_frames); OmniSR-light, slow on a CPU, is measured on every ``--omni-eval-stride``-th of
them, with its own generic and FastSR numbers on the same frames beside it. CPU time = process CPU seconds
(time.process_time; torch and OMP/MKL at ``--threads`` threads), training steps only unless marked ``eval``.
"""

from __future__ import annotations

import os
import sys

# A project copy on PYTHONPATH (``--code``) must win over the current directory (``python -m`` puts the cwd
# first). ``bench`` itself is already imported from the cwd.
for _p in reversed([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]):
    while _p in sys.path:
        sys.path.remove(_p)
    sys.path.insert(0, _p)

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shlex  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

NOTES_MARK = "<!-- notes: kept by write_readme -->"
MODELS = {"fastsr": "fastsr-x{k}", "omnisr": "omnisr-light-x{k}"}
DELTA_PCTS = (1, 5, 20, 100)


# ----------------------------------------------------------------------------------------------- utilities
def now() -> str:
    return time.strftime("%H:%M:%S")


def log(*a) -> None:
    print(f"[{now()}]", *a, file=sys.stderr, flush=True)


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


def mean(vals) -> float | None:
    vals = list(vals)
    return round(float(np.mean(vals)), 4) if vals else None


# ------------------------------------------------------------------------------------------------ stage 1
def package(args, res, ck: Path) -> Path:
    """The rung as shipped, in ``ck/stream`` (skipped when its manifest is there)."""
    out = ck / "stream"
    if (out / "manifest.json").exists() and "package" in res:
        return out
    cmd = [sys.executable, "-m", "packager.cli", str(Path(args.clip).resolve()), "--out", str(out), "--force",
           "--ladder", f"plain-sr:{args.factor}:{args.crf:g}", "--no-measure", "--device", "cpu"]
    if args.max_frames:
        cmd += ["--max-frames", str(args.max_frames)]
    env = dict(os.environ, PYTHONPATH=str(Path(args.code).resolve()), OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    log("packaging:", " ".join(shlex.quote(c) for c in cmd))
    t0, c0 = time.time(), os.times()
    subprocess.run(cmd, check=True, cwd=str(Path(args.code).resolve()), env=env, stdout=subprocess.DEVNULL)
    c1 = os.times()
    res["package"] = {"command": f"cd {args.code} && PYTHONPATH={args.code} "
                                 + " ".join(shlex.quote(c) for c in cmd),
                      "wall_s": round(time.time() - t0, 1),
                      "cpu_s": round((c1.children_user - c0.children_user)
                                     + (c1.children_system - c0.children_system), 1)}
    return out


def load_rung(args, stream: Path):
    """(info, manifest rendition, LR pictures (N, h, w, 3) uint8, HR frames (N, H', W', 3) uint8 padded as the
    family pads, source Y planes (N, H, W) uint8, segment index per frame)."""
    from bbmr_stream.colour import frame_to_rgb
    from bbmr_stream.decode import frames, probe
    from bbmr_stream.demux import init_path, segment_frames
    from bbmr_stream.manifest import load

    man = load(str(stream))
    rend = man.renditions[0]
    info = probe(args.clip)
    lr, seg_of = [], []
    for si, seg in enumerate(rend.segments):
        n = 0
        for frs, _ in segment_frames(stream / seg.file, len(rend.pictures), init_path(stream, rend)):
            lr.append(frame_to_rgb(frs[0], info.matrix, info.full_range)[0])
            seg_of.append(si)
            n += 1
        if n != seg.frames:
            raise RuntimeError(f"segment {seg.file}: decoded {n} frames, manifest says {seg.frames}")
    n = len(lr)
    k = args.factor
    h, w = lr[0].shape[:2]
    H, W = info.height, info.width
    hr = np.empty((n, h * k, w * k, 3), np.uint8)
    ys = np.empty((n, H, W), np.uint8)
    i = -1
    for i, fr in enumerate(frames(info, n, strict=True)):
        hr[i, :H, :W] = fr.rgb
        hr[i, H:, :W] = fr.rgb[-1:]  # replicate padding, as PlainSR.pictures
        hr[i, :, W:] = hr[i, :, W - 1:W]
        ys[i] = fr.y
    if i + 1 != n:
        raise RuntimeError(f"source gave {i + 1} frames, the rung {n}")
    return info, man, rend, np.stack(lr), hr, ys, np.asarray(seg_of)


# ------------------------------------------------------------------------------------------------ eval
class Evaluator:
    """Per-frame video PSNR-Y of a reconstruction (the project's functions, see the module docstring)."""

    def __init__(self, info, factor, crf, lr, ys):
        from bbmr_stream.blocks import BlockGrid
        from bbmr_stream.family import Geometry, RungSpec, make_family

        self.info, self.k, self.lr, self.ys = info, factor, lr, ys
        geo = Geometry(BlockGrid(info.height, info.width, 128), (2, 4, 8), 4, "planes")
        self.fam = make_family(RungSpec("plain-sr", crf, factor=factor), geo)

    def upscaler(self, model):
        from bbmr_stream.upscale import BicubicUpscaler
        from models.upscalers import OmniSRUpscaler

        if model is None:
            return BicubicUpscaler()
        return OmniSRUpscaler({self.k: model.eval()}, torch.device("cpu"))

    def psnr(self, model, idxs) -> dict[int, float]:
        from bbmr_stream.colour import luma
        from bbmr_stream.metrics import psnr_plane

        up = self.upscaler(model)
        out = {}
        for i in idxs:
            x = self.fam.reconstruct_float([self.lr[i]], None, up)
            y = luma(x[0].permute(1, 2, 0).double().cpu().numpy() * 255.0, self.info.matrix, self.info.full_range)
            out[int(i)] = round(psnr_plane(self.ys[i], y), 4)
        return out


def timed_eval(ev, model, idxs):
    c = time.process_time()
    r = ev.psnr(model, idxs)
    return r, round(time.process_time() - c, 1)


# ------------------------------------------------------------------------------------------------ training
class Patches:
    """Random (LR, HR) patch pairs from the frames ``pool`` (deterministic for the generator's state): a
    :class:`models.adapt.PatchPool` of those frames."""

    def __init__(self, lr, hr, pool, k, patch, valid_hw):
        from models.adapt import PatchPool

        self.p = patch
        self.pool = PatchPool(lr[np.asarray(pool)], hr[np.asarray(pool)], k, valid_hw)

    def batch(self, rng: np.random.Generator, n: int):
        return self.pool.batch(rng, n, self.p)


def load_generic(name, k):
    from models.registry import load_model

    return load_model(MODELS[name].format(k=k), "cpu")


def trainable_names(model, trainable: str) -> list[str]:
    """Parameters fine-tuned: ``all``; or a structural subset that ships as its fp16 values with no index:
    ``last`` / ``first`` (that layer's weight and bias), ``bias`` (every bias, BitFit-style)."""
    names = [n for n, _ in model.named_parameters()]
    sel = {"all": names, "last": names[-2:], "first": names[:2],
           "bias": [n for n in names if n.endswith("bias")]}
    if trainable not in sel:
        raise SystemExit(f"trainable subset {trainable!r}: one of {', '.join(sel)}")
    return sel[trainable]


def adapt(name, k, data: Patches, lr_rate, warmup, batch, budget_s, seed, ckpt: Path, monitor, max_steps=None,
          ckpt_every_s=120.0, init_from: Path | None = None, trainable: str = "all"):
    """Fine-tune a copy of the generic ``name`` xk on ``data`` until ``budget_s`` training CPU seconds (or
    ``max_steps``); ``monitor(model) -> dict`` every ``monitor.every_s`` CPU seconds. Resumes from ``ckpt``
    (or starts from ``init_from``'s checkpoint). Only :func:`trainable_names` move. Returns (model, state
    dict of the run's log)."""
    model = load_generic(name, k)
    keep = set(trainable_names(model, trainable))
    params = []
    for n_, p_ in model.named_parameters():
        p_.requires_grad_(n_ in keep)
        if n_ in keep:
            params.append(p_)
    opt = torch.optim.Adam(params, lr=lr_rate)
    st = {"step": 0, "cpu_s": 0.0, "curve": [], "losses": [], "next_eval": 0.0}
    rng = np.random.default_rng(seed)
    src = ckpt if ckpt.exists() else init_from
    if src is not None and src.exists():
        c = torch.load(src, map_location="cpu", weights_only=False)
        model.load_state_dict(c["model"])
        opt.load_state_dict(c["opt"])
        st = c["state"]
        rng.bit_generator.state = c["rng"]
        log(f"{ckpt.name}: resumed from {src.name} at step {st['step']}, {st['cpu_s']:.0f} CPU-s")

    def save():
        tmp = ckpt.with_name(ckpt.name + ".tmp")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": st,
                    "rng": rng.bit_generator.state}, tmp)
        tmp.replace(ckpt)

    last_save = st["cpu_s"]
    if st["step"] == 0:
        m = monitor(model)
        st["curve"].append({"step": 0, "cpu_min": 0.0, **m})
        log(f"{ckpt.name}: step 0 {m}")
        st["next_eval"] = monitor.every_s
    run_loss = []
    while st["cpu_s"] < budget_s and (max_steps is None or st["step"] < max_steps):
        c0 = time.process_time()
        model.train()
        x, y = data.batch(rng, batch)
        for g in opt.param_groups:
            g["lr"] = lr_rate * min(1.0, (st["step"] + 1) / warmup)
        loss = torch.nn.functional.l1_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        st["step"] += 1
        run_loss.append(loss.item())
        st["cpu_s"] += time.process_time() - c0
        done = st["cpu_s"] >= budget_s or (max_steps is not None and st["step"] >= max_steps)
        if st["cpu_s"] >= st["next_eval"] or done:
            model.eval()
            m = monitor(model)
            st["curve"].append({"step": st["step"], "cpu_min": round(st["cpu_s"] / 60, 3),
                                "train_l1": round(float(np.mean(run_loss)), 5), **m})
            run_loss = []
            log(f"{ckpt.name}: {st['curve'][-1]}")
            st["next_eval"] = st["cpu_s"] + monitor.every_s
        if st["cpu_s"] - last_save >= ckpt_every_s or done:
            save()
            last_save = st["cpu_s"]
    if not ckpt.exists():
        save()
    return model.eval(), st


class Monitor:
    def __init__(self, ev, idxs, every_s):
        self.ev, self.idxs, self.every_s = ev, idxs, every_s

    def __call__(self, model):
        r, c = timed_eval(self.ev, model, self.idxs)
        return {"psnr_y": mean(r.values()), "eval_cpu_s": c}


# ------------------------------------------------------------------------------------------------ bytes
def flat_params(model) -> tuple[list[str], torch.Tensor]:
    sd = model.state_dict()
    keys = [k for k, v in sd.items() if v.is_floating_point()]
    return keys, torch.cat([sd[k].detach().float().reshape(-1) for k in keys])


def with_flat(generic_name, k, keys, flat):
    m = load_generic(generic_name, k)
    sd = m.state_dict()
    o = 0
    for key in keys:
        n = sd[key].numel()
        sd[key] = flat[o:o + n].reshape(sd[key].shape).to(sd[key].dtype)
        o += n
    m.load_state_dict(sd)
    return m.eval()


def model_bytes(name, k, adapted, out_dir: Path, tag: str, subset: list[str] | None = None):
    """Files of the adapted model: fp16 full and top-p % deltas (and, when only ``subset`` was trained, the
    fp16 values of those parameters alone). Returns (entries, models to evaluate)."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    entries, models = {}, {}
    if subset:
        asd = adapted.state_dict()
        fsub = out_dir / f"{tag}_subset_fp16.safetensors"
        save_file({kk: asd[kk].detach().half().contiguous() for kk in subset}, str(fsub))
        entries["subset_fp16"] = {"bytes": fsub.stat().st_size, "params": int(sum(asd[kk].numel() for kk in subset)),
                                  "scheme": "fp16 values of the trained layer(s), no index", "file": str(fsub)}
        msub = load_generic(name, k)
        sd = msub.state_dict()
        for kk in subset:
            sd[kk] = asd[kk].detach().half().float()
        msub.load_state_dict(sd)
        models["subset_fp16"] = msub.eval()
    gen = load_generic(name, k)
    keys, g = flat_params(gen)
    _, a = flat_params(adapted)
    n = g.numel()
    f16 = out_dir / f"{tag}_fp16.safetensors"
    save_file({kk: v.detach().half().contiguous() for kk, v in adapted.state_dict().items()}, str(f16))
    entries["fp16_full"] = {"bytes": f16.stat().st_size, "params": n, "file": str(f16)}
    models["fp16_full"] = with_flat(name, k, keys, a.half().float())
    d = a - g
    order = torch.argsort(d.abs(), descending=True, stable=True)
    for pct in DELTA_PCTS:
        m = max(1, int(math.ceil(n * pct / 100)))
        idx = torch.sort(order[:m]).values
        val = d[idx].half()
        tensors = {"value": val.contiguous()}
        if pct == 100:
            scheme = "dense fp16 delta (no index)"
            tensors = {"value": d.half().contiguous()}
        else:
            idx_bytes = (idx.numpy().astype(np.uint16) if n < 65536 else idx.numpy().astype(np.int32)).tobytes()
            mask = np.zeros(n, np.uint8)
            mask[idx.numpy()] = 1
            mask_bytes = np.packbits(mask).tobytes()
            if len(mask_bytes) < len(idx_bytes):
                scheme, ib = "fp16 values + 1-bit mask", mask_bytes
            else:
                scheme, ib = f"fp16 values + {'uint16' if n < 65536 else 'int32'} indices", idx_bytes
            tensors["index"] = torch.frombuffer(bytearray(ib), dtype=torch.uint8)
        f = out_dir / f"{tag}_delta{pct}.safetensors"
        save_file(tensors, str(f), metadata={"scheme": scheme, "params": str(n), "generic": MODELS[name].format(k=k)})
        raw = b"".join(t.numpy().tobytes() for t in tensors.values())
        entries[f"delta{pct}"] = {"bytes": f.stat().st_size, "zlib_bytes": len(zlib.compress(raw, 9)),
                                  "kept": m, "scheme": scheme, "file": str(f)}
        rec = g.clone()
        if pct == 100:
            rec = g + d.half().float()
        else:
            rec[idx] = g[idx] + val.float()
        models[f"delta{pct}"] = with_flat(name, k, keys, rec)
    return entries, models


# ------------------------------------------------------------------------------------------------ break-even
def plain_front(rd_path: Path | None, container: str | None = None):
    """The plain front of a study (rd.json); ``container``: the probe rung's, which the study's must be."""
    from packager.ladder import study_container

    if not rd_path or not rd_path.exists():
        return None
    d = json.loads(rd_path.read_text())
    if container is not None and study_container(d["meta"]) != container:
        raise SystemExit(f"--rd {rd_path} measured {study_container(d['meta'])} segments, the rung is {container}")
    pts = {p["name"]: p for p in d["points"]}
    front = sorted((pts[n]["psnr_y"], pts[n]["kbps"]) for n in d["fronts"]["plain"])
    return {"file": str(rd_path), "points": [[round(q, 3), round(r, 2)] for q, r in front],
            "measured_on": f"{d['meta']['source']['frames']} frames ({d['meta']['source']['duration_s']} s)"}


def manifest_front(dirs: str | None):
    """The plain front of packager runs on the title itself (``--front``: stream directories measured with
    plain rungs): their plain renditions' (PSNR-Y, kbps), Pareto points only (no point with less rate and more
    PSNR-Y). A sparse front: between its points it lies under the true front (a lower bound of the plain
    quality at a rate)."""
    if not dirs:
        return None
    pts, meas = [], set()
    for d in dirs.split(","):
        m = json.loads((Path(d) / "manifest.json").read_text())
        frames = m["conventions"].get("measured_frames", [])
        meas.add(f"{len(frames)} measured of {m['source']['frames']} frames ({m['source']['duration_s']:.1f} s)")
        pts += [(r["psnr_y"], r["bitrate_kbps"], r["name"]) for r in m["renditions"] if r["kind"] == "plain"]
    pts.sort(key=lambda p: p[1])
    front, best = [], -1.0
    for q, r, n in pts:
        if q > best:
            front.append((q, r, n))
            best = q
    return {"file": dirs, "points": [[round(q, 3), round(r, 2)] for q, r, _ in front],
            "rungs": [n for _, _, n in front], "measured_on": "; ".join(sorted(meas))}


def log_rate_slope(front, q0, q1) -> float | None:
    """Mean d ln(kbps) / d PSNR of the plain front over [q0, q1] (piecewise linear between points; the end
    segments extended)."""
    if front is None:
        return None
    q = np.array([p[0] for p in front["points"]])
    lr = np.log([p[1] for p in front["points"]])
    qs = np.linspace(min(q0, q1), max(q0, q1), 21)
    sl = []
    for x in qs:
        i = int(np.clip(np.searchsorted(q, x) - 1, 0, len(q) - 2))
        sl.append((lr[i + 1] - lr[i]) / (q[i + 1] - q[i]))
    return float(np.mean(sl))


def _interp(xs, ys, x):
    """Piecewise-linear y(x) through sorted xs, the end segments extended."""
    i = int(np.clip(np.searchsorted(xs, x) - 1, 0, len(xs) - 2))
    return ys[i] + (ys[i + 1] - ys[i]) * (x - xs[i]) / (xs[i + 1] - xs[i])


def front_kbps(front, q):
    """kbps the plain front needs for PSNR-Y ``q`` (piecewise linear in (PSNR, ln kbps))."""
    q_ = np.array([p[0] for p in front["points"]])
    return float(np.exp(_interp(q_, np.log([p[1] for p in front["points"]]), q)))


def front_psnr(front, kbps):
    """PSNR-Y of the plain front at ``kbps`` (the same interpolation, inverted)."""
    lr = np.log([p[1] for p in front["points"]])
    return float(_interp(lr, np.array([p[0] for p in front["points"]]), math.log(kbps)))


def break_even(front, rung_kbps, q_generic, q_adapted, nbytes):
    """Two break-even lengths of a model file of ``nbytes`` (see the module docstring): ``break_even_s``, where
    the file's bits equal the rate its gain is worth on the plain front's slope; ``vs_front_s``, where the rung
    plus the file costs no more than the plain front at the adapted quality (None: never, the rung alone
    already costs more than the front there)."""
    gain = q_adapted - q_generic
    r = log_rate_slope(front, q_generic, q_adapted)
    if r is None:
        return {"note": "no plain front"}
    dr = rung_kbps * (math.exp(r * gain) - 1.0)
    out = {"gain_db": round(gain, 4), "slope_ln_kbps_per_db": round(r, 4), "rate_worth_kbps": round(dr, 3)}
    out["break_even_s"] = round(8 * nbytes / (1000 * dr), 1) if dr > 0 else None
    # a smoother reading of the slope: least squares of ln kbps on PSNR-Y over the front points within
    # +-1.5 dB of the generic quality (at least the 3 nearest points)
    q = np.array([p[0] for p in front["points"]])
    lk = np.log([p[1] for p in front["points"]])
    near = np.argsort(np.abs(q - q_generic))
    sel = sorted(set(near[:3].tolist()) | set(np.nonzero(np.abs(q - q_generic) <= 1.5)[0].tolist()))
    rs = float(np.polyfit(q[sel], lk[sel], 1)[0]) if len(sel) >= 2 else r
    drs = rung_kbps * (math.exp(rs * gain) - 1.0)
    out.update({"slope_smooth": round(rs, 4), "rate_worth_smooth_kbps": round(drs, 3),
                "break_even_smooth_s": round(8 * nbytes / (1000 * drs), 1) if drs > 0 else None})
    fa = front_kbps(front, q_adapted)
    out["front_kbps_at_adapted"] = round(fa, 2)
    out["vs_front_s"] = round(8 * nbytes / (1000 * (fa - rung_kbps)), 1) if fa > rung_kbps else None
    return out


def finish(args, res, save) -> None:
    """Break-even lengths (protocol b: what would ship) from the result JSON, and the README."""
    rd = plain_front(Path(args.rd) if args.rd else None, res["rung"].get("container", "mpegts"))
    if rd is not None and args.rd_note:
        rd["note"] = args.rd_note
    title = manifest_front(args.front)
    front = title or rd
    res["plain_front"] = front
    res["plain_front_rd_sample"] = rd if title else None
    kb = res["rung"]["kbps"]
    if front is not None:
        fq = front_psnr(front, kb)
        res["rung_vs_front"] = {"front_psnr_at_rung_kbps": round(fq, 3), "generic": {}}
        for bname, b in res.get("baseline", {}).items():
            if b.get("all") is not None:
                res["rung_vs_front"]["generic"][bname] = round(b["all"] - fq, 3)
    be = {}
    for name, r in res.get("adapted", {}).items():
        pb = r.get("protocol_b")
        if not pb or not pb.get("done"):
            continue
        byt = pb["bytes"]
        rows = {}
        for kname, e in byt["files"].items():
            rows[kname] = {"bytes": e["bytes"],
                           **break_even(front, kb, byt["generic_psnr_y"], e["psnr_y"], e["bytes"])}
            if front is not None:
                rows[kname]["psnr_minus_front_at_rung_kbps"] = round(e["psnr_y"] - fq, 3)
        be[name] = rows
    res["break_even"] = be
    res["break_even_method"] = (
        "protocol b; gain = PSNR-Y(generic + model file) - PSNR-Y(generic), same frames; plain front from --rd "
        "(its points: PSNR-Y, kbps), piecewise linear in (PSNR-Y, ln kbps), end segments extended. "
        "break_even_s: r = mean d ln(kbps)/dPSNR of the front over [generic, adapted]; rate worth = rung kbps * "
        "(exp(r * gain) - 1); T = 8 * bytes / (1000 * rate worth). break_even_smooth_s: the same with r from a "
        "least-squares line of ln kbps on PSNR-Y over the front points within 1.5 dB of the generic PSNR-Y (at "
        "least the 3 nearest). vs_front_s: T = 8 * bytes / (1000 * "
        "(front kbps at the adapted PSNR - rung kbps)), None when the rung alone already costs more than the "
        "front at that quality. psnr_minus_front_at_rung_kbps: the rung's PSNR-Y with that model minus the "
        "front's PSNR-Y at the rung's own rate (model bytes not counted).")
    save()
    write_readme(Path(args.results))


# ------------------------------------------------------------------------------------------------ main
def build_parser():
    ap = argparse.ArgumentParser(prog="adapt_probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("clip")
    ap.add_argument("--factor", type=int, choices=(2, 4), required=True)
    ap.add_argument("--crf", type=float, required=True)
    ap.add_argument("--name", help="clip name in the result file (default: the file's stem)")
    ap.add_argument("--max-frames", type=int, help="package only the first N frames")
    ap.add_argument("--code", default=str(Path(__file__).resolve().parents[1]),
                    help="project copy that runs the packager (default: this checkout)")
    ap.add_argument("--ckpt", default="/work/ckpt/adapt_probe", help="checkpoints and the packaged rung")
    ap.add_argument("--results", default="bench/results/adapt_probe", help="result JSON directory")
    ap.add_argument("--rd", help="rd.json of the clip (plain front for the break-even length)")
    ap.add_argument("--front", help="comma list of stream directories packaged from this title with plain rungs "
                    "and measured: their plain front is used instead of --rd's")
    ap.add_argument("--rd-note", help="a note on --rd (e.g. another clip's front used as a proxy)")
    ap.add_argument("--models", default="fastsr,omnisr",
                    help="models to adapt, in order (fastsr, omnisr; NAME+SUBSET fine-tunes only a subset: "
                         "+last, +first, +bias, see trainable_names)")
    ap.add_argument("--baseline-models", default="fastsr,omnisr", help="generic models to measure")
    ap.add_argument("--protocols", default="a,b", help="a: adapt on even segments, measure on odd; b: all/all")
    ap.add_argument("--minutes", type=float, default=5.0, help="training CPU-minutes per protocol (FastSR)")
    ap.add_argument("--omni-minutes", type=float, default=4.0, help="training CPU-minutes per protocol (OmniSR)")
    ap.add_argument("--sweep", default="1e-4,2e-4,5e-4", help="FastSR learning rates tried on protocol a")
    ap.add_argument("--sweep-minutes", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=2e-4, help="FastSR learning rate when there is no sweep")
    ap.add_argument("--omni-lr", type=float, default=2e-4)
    ap.add_argument("--warmup", type=int, default=50, help="linear warm-up steps")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=64, help="LR patch px (FastSR)")
    ap.add_argument("--omni-batch", type=int, default=8)
    ap.add_argument("--omni-patch", type=int, default=48)
    ap.add_argument("--eval-per-segment", type=int, default=2)
    ap.add_argument("--omni-eval-stride", type=int, default=2)
    ap.add_argument("--omni-delta-stride", type=int, default=4, help="OmniSR deltas measured on every Nth frame")
    ap.add_argument("--monitor-every", type=float, default=1.0, help="CPU-minutes between evaluations")
    ap.add_argument("--segment", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--report-only", action="store_true",
                    help="only recompute the break-even lengths and the README from the result JSON")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("MKL_NUM_THREADS", str(args.threads))
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    clip = args.name or Path(args.clip).stem
    tag = f"{clip}_x{args.factor}_crf{args.crf:g}"
    ck = Path(args.ckpt) / tag
    ck.mkdir(parents=True, exist_ok=True)
    out_json = Path(args.results) / f"{tag}.json"
    res = json.loads(out_json.read_text()) if out_json.exists() else {}
    res.setdefault("tag", tag)
    cmd = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "bench.adapt_probe", *sys.argv[1:]])
    res["command"] = cmd
    if not args.report_only and cmd not in res.setdefault("commands", []):
        res["commands"].append(cmd)
    res["env"] = {"PYTHONPATH": os.environ.get("PYTHONPATH"), "threads": args.threads, "torch": torch.__version__}
    if not args.report_only:
        res.setdefault("settings_by_run", {})[cmd] = vars(args)
    res["conventions"] = __doc__
    save = lambda: write_json(out_json, res)  # noqa: E731

    import bbmr_stream
    import models

    res["code"] = {"bbmr_stream": bbmr_stream.__file__, "models": models.__file__}
    if args.report_only:
        finish(args, res, save)
        return 0
    stream = package(args, res, ck)
    save()
    t = time.time()
    info, man, rend, lr, hr, ys, seg_of = load_rung(args, stream)
    n, fps = len(lr), float(info.fps)
    dur = n / fps
    seg_bytes = [s.bytes for s in rend.segments]
    init_bytes = rend.init.bytes if rend.init is not None else 0  # fMP4: the init segment is downloaded too
    res["rung"] = {"name": rend.name, "lr": [int(lr.shape[2]), int(lr.shape[1])], "source": [info.width, info.height],
                   "frames": n, "fps": fps, "duration_s": round(dur, 3), "segments": len(seg_bytes),
                   "segment_bytes": seg_bytes, "init_bytes": init_bytes, "container": man.container,
                   "kbps": round((sum(seg_bytes) + init_bytes) * 8 / dur / 1000, 2),
                   "matrix": info.matrix, "full_range": info.full_range, "load_s": round(time.time() - t, 1)}
    log(f"{tag}: {n} frames, {res['rung']['kbps']} kbps, {len(seg_bytes)} segments")
    save()

    from packager.pipeline import measured_frames

    E = measured_frames(n, args.eval_per_segment * len(seg_bytes))
    E_odd = [i for i in E if seg_of[i] % 2 == 1]
    m = max(2, len(E) // args.omni_eval_stride)  # OmniSR frames: evenly spaced among E (both segment parities)
    EO = sorted({E[int(round(j))] for j in np.linspace(0, len(E) - 1, m)})
    res["eval_frames"] = {"all": E, "omni": EO, "note": "protocol a = those in odd segments"}
    ev = Evaluator(info, args.factor, args.crf, lr, ys)

    def subset(per_frame: dict, idxs):
        return mean(per_frame[str(i)] if str(i) in per_frame else per_frame[i] for i in idxs)

    base = res.setdefault("baseline", {})
    for bname in ["bicubic"] + [m for m in args.baseline_models.split(",") if m]:
        if bname in base:
            continue
        idxs = EO if bname == "omnisr" else E
        model = None if bname == "bicubic" else load_generic(bname, args.factor)
        pf, c = timed_eval(ev, model, idxs)
        base[bname] = {"per_frame": pf, "eval_cpu_s": c}
        log(f"baseline {bname}: all {mean(pf.values())}")
        save()
    for bname, b in base.items():
        pf = {int(i): v for i, v in b["per_frame"].items()}
        b["all"], b["odd"] = mean(pf[i] for i in E if i in pf), mean(pf[i] for i in E_odd if i in pf)
        if bname != "omnisr":
            b["all_omni_frames"] = mean(pf[i] for i in EO)
            b["odd_omni_frames"] = mean(pf[i] for i in EO if seg_of[i] % 2 == 1)
    save()

    segs = sorted(set(seg_of.tolist()))
    even_frames = [i for i in range(n) if seg_of[i] % 2 == 0]
    all_frames = list(range(n))
    H, W = info.height, info.width
    valid = (H // args.factor, W // args.factor)
    protos = [p for p in args.protocols.split(",") if p]
    if "a" in protos and len(segs) < 2:
        protos = [p for p in protos if p != "a"]
        res["protocol_a_note"] = "one segment only: protocol a (even -> odd) impossible, protocol b only"
    ad = res.setdefault("adapted", {})
    every = args.monitor_every * 60
    for mkey in [m for m in args.models.split(",") if m]:
        name, _, trainable = mkey.partition("+")  # fastsr+last: only the last layer is fine-tuned
        trainable = trainable or "all"
        omni = name == "omnisr"
        batch, patch = (args.omni_batch, args.omni_patch) if omni else (args.batch, args.patch)
        budget = (args.omni_minutes if omni else args.minutes) * 60
        idx_all = EO if omni else E
        idx_odd = [i for i in idx_all if seg_of[i] % 2 == 1]
        r = ad.setdefault(mkey, {"batch": batch, "lr_patch": patch, "warmup_steps": args.warmup,
                                 "budget_cpu_min": budget / 60, "seed": args.seed, "trainable": trainable})
        # learning rate: a short sweep on protocol a (FastSR), else the fixed rate
        lr_rate = args.omni_lr
        if not omni and "a" in protos and args.sweep:
            sw = r.setdefault("sweep", {})
            for s in args.sweep.split(","):
                if s in sw:
                    continue
                _, st = adapt(name, args.factor, Patches(lr, hr, even_frames, args.factor, patch, valid), float(s),
                              args.warmup, batch, args.sweep_minutes * 60, args.seed, ck / f"{mkey}_sweep_{s}.pt",
                              Monitor(ev, idx_odd, every), trainable=trainable)
                sw[s] = {"curve": st["curve"], "final_odd": st["curve"][-1]["psnr_y"]}
                save()
            best = max(sw, key=lambda s: sw[s]["final_odd"])
            r["sweep_best"] = best
            lr_rate = float(best)
        elif not omni:
            lr_rate = args.lr
        r["lr"] = lr_rate
        save()
        for proto in protos:
            key = f"protocol_{proto}"
            if key in r and r[key].get("done"):
                continue
            pool = even_frames if proto == "a" else all_frames
            idxs = idx_odd if proto == "a" else idx_all
            init = None
            if proto == "a" and not omni and "sweep_best" in r:
                init = ck / f"{mkey}_sweep_{r['sweep_best']}.pt"  # continue the chosen sweep run (same schedule)
            model, st = adapt(name, args.factor, Patches(lr, hr, pool, args.factor, patch, valid), lr_rate,
                              args.warmup, batch, budget, args.seed, ck / f"{mkey}_{proto}.pt",
                              Monitor(ev, idxs, every), init_from=init, trainable=trainable)
            pf, c = timed_eval(ev, model, idxs)
            gen = subset(base[name]["per_frame"], idxs) if name in base else None
            rr = {"train_frames": "even segments" if proto == "a" else "all segments",
                  "measured_frames": "odd segments" if proto == "a" else "all segments",
                  "n_measured": len(idxs), "steps": st["step"], "cpu_min": round(st["cpu_s"] / 60, 3),
                  "curve": st["curve"], "per_frame": pf, "psnr_y": mean(pf.values()), "generic_psnr_y": gen,
                  "bicubic_psnr_y": subset(base["bicubic"]["per_frame"], idxs),
                  "fastsr_generic_psnr_y": subset(base["fastsr"]["per_frame"], idxs) if "fastsr" in base else None,
                  "eval_cpu_s": c}
            rr["gain_db"] = round(rr["psnr_y"] - gen, 4) if gen is not None else None
            r[key] = rr
            save()
            log(f"{mkey} protocol {proto}: {rr['psnr_y']} vs generic {gen} ({rr['gain_db']} dB)")
            # model bytes
            sub = None if trainable == "all" else trainable_names(model, trainable)
            ents, ms = model_bytes(name, args.factor, model, ck / "models", f"{mkey}_{proto}", sub)
            didx = idxs[:: args.omni_delta_stride // args.omni_eval_stride or 1] if omni else idxs
            ref_adapted = mean(pf[i] for i in didx)
            ref_generic = subset(base[name]["per_frame"], didx)
            for kname, m in ms.items():
                dpf, c = timed_eval(ev, m, didx)
                ents[kname].update({"psnr_y": mean(dpf.values()), "eval_cpu_s": c,
                                    "kbps": round(ents[kname]["bytes"] * 8 / dur / 1000, 3)})
                log(f"  {kname}: {ents[kname]['bytes']} B, {ents[kname]['psnr_y']} dB")
            rr["bytes"] = {"measured_on": len(didx), "adapted_fp32_psnr_y": ref_adapted,
                           "generic_psnr_y": ref_generic, "files": ents}
            rr["done"] = True
            save()
    finish(args, res, save)
    log("done", tag)
    return 0


def _pair(pr) -> str:
    if not pr or pr.get("psnr_y") is None:
        return "-"
    return f"{pr['generic_psnr_y']:.2f} -> {pr['psnr_y']:.2f} ({pr['gain_db']:+.2f})"


def summary_table(runs) -> list[str]:
    """One row per run: the numbers of the issue's first question."""
    out = ["## Summary", "",
           "PSNR-Y dB, generic -> adapted (gain). a: adapted on even segments, measured on odd; b: adapted and "
           "measured on all. FastSR columns on the run's measured frames, OmniSR-light on its every-other subset "
           "(see each run). Model bytes: protocol b, fp16 safetensors of the whole model, and the delta file with "
           "the shortest break-even. Break-even s: fp16 / best delta, on the plain front's slope; 'vs front': the "
           "clip length from which the rung + fp16 model costs no more than the title's plain front at the adapted "
           "quality (never = the rung alone is already above the front's rate there).", "",
           "| run | kbps | bicubic | FastSR a | FastSR b | CPU-min a/b | OmniSR-light generic | OmniSR a | OmniSR b | "
           "fp16 B | best delta | break-even s | vs front |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for res in runs:
        ad, base, be = res.get("adapted", {}), res.get("baseline", {}), res.get("break_even", {})
        fkeys = [k for k in ad if k != "omnisr"] or ["fastsr"]
        for n_row, fkey in enumerate(fkeys):
            f, o = ad.get(fkey, {}), (ad.get("omnisr", {}) if n_row == 0 else {})
            fa, fb = f.get("protocol_a"), f.get("protocol_b")
            cpu = "/".join(f"{p['cpu_min']:.1f}" if p else "-" for p in (fa, fb))
            fb_b = (fb or {}).get("bytes", {}).get("files", {})
            bf = be.get(fkey, {})
            deltas = {k: v for k, v in bf.items() if k != "fp16_full" and v.get("break_even_s")}
            best = min(deltas, key=lambda k: deltas[k]["break_even_s"]) if deltas else None
            fp = bf.get("fp16_full", {})
            bd = f"{best}: {fb_b[best]['bytes']} B, {deltas[best]['gain_db']:+.2f} dB" if best else "-"
            bes = (f"{fp.get('break_even_s')} / {deltas[best]['break_even_s'] if best else '-'} (smooth slope: "
                   f"{fp.get('break_even_smooth_s')} / {deltas[best].get('break_even_smooth_s') if best else '-'})")
            vf = fp.get("vs_front_s") if fp else None
            vfs = "-" if not fp else ("never" if vf is None else f"{vf}")
            label = res["tag"] + ("" if fkey == "fastsr" else f" [{fkey}]")
            og = base.get("omnisr", {}).get("all", "-") if n_row == 0 else ""
            out.append(f"| {label} | {res['rung']['kbps']} | {base.get('bicubic', {}).get('all')} | {_pair(fa)} | "
                       f"{_pair(fb)} | {cpu} | {og} | {_pair(o.get('protocol_a'))} | "
                       f"{_pair(o.get('protocol_b'))} | {fb_b.get('fp16_full', {}).get('bytes', '-')} | {bd} | {bes} | "
                       f"{vfs} |")
    return out + [""]


def write_readme(d: Path) -> None:
    """The Markdown summary of every result JSON in ``d``."""
    lines = ["# Per-title adaptation probe (issue 23)", "",
             "Made by `bench/adapt_probe.py` (conventions in its docstring; every number, setting, command and "
             "per-frame PSNR in the JSON beside this file). PSNR-Y: the project's video PSNR-Y "
             "(bbmr_stream.family.Family.luma), dB; kbps = bytes * 8 / clip duration / 1000; CPU-min = process "
             "CPU time of the training steps at 1 thread. Protocol a: adapt on even 2 s segments, measure on the "
             "odd ones; b: adapt on all, measure on all (what would ship).", ""]
    runs = [json.loads(f.read_text()) for f in sorted(d.glob("*.json"))]
    runs = [r for r in runs if r.get("rung")]
    lines += summary_table(runs)
    for res in runs:
        rung = res["rung"]
        lines += [f"## {res['tag']}", "",
                  f"{rung['source'][0]}x{rung['source'][1]} -> LR {rung['lr'][0]}x{rung['lr'][1]}, {rung['frames']} "
                  f"frames ({rung['duration_s']} s, {rung['segments']} segments), rung {rung['kbps']} kbps as shipped. "
                  "Commands: " + "; ".join(f"`{c}`" for c in res.get("commands", [])), ""]
        if res.get("protocol_a_note"):
            lines += [res["protocol_a_note"], ""]
        base = res.get("baseline", {})
        lines += ["Generic models (no adaptation), mean PSNR-Y:", "",
                  "| frames | bicubic | FastSR | OmniSR-light |", "|---|---|---|---|"]
        ne = res.get("eval_frames", {})
        b = lambda m, k: base.get(m, {}).get(k)  # noqa: E731
        lines += [f"| all ({len(ne.get('all', []))}) | {b('bicubic', 'all')} | {b('fastsr', 'all')} | - |",
                  f"| odd segments | {b('bicubic', 'odd')} | {b('fastsr', 'odd')} | - |",
                  f"| all, OmniSR frames ({len(ne.get('omni', []))}) | {b('bicubic', 'all_omni_frames')} | "
                  f"{b('fastsr', 'all_omni_frames')} | {b('omnisr', 'all')} |",
                  f"| odd, OmniSR frames | {b('bicubic', 'odd_omni_frames')} | {b('fastsr', 'odd_omni_frames')} | "
                  f"{b('omnisr', 'odd')} |", ""]
        rv = res.get("rung_vs_front")
        if rv:
            pf = res.get("plain_front") or {}
            lines += [f"Plain H.264 front ({pf.get('file')}, points (PSNR-Y, kbps) {pf.get('points')}, measured on "
                      f"{pf.get('measured_on')}"
                      f"{'; ' + pf['note'] if pf.get('note') else ''}): {rv['front_psnr_at_rung_kbps']} dB at the "
                      f"rung's {rung['kbps']} kbps; generic models vs that: "
                      + ", ".join(f"{k} {v:+.2f} dB" for k, v in rv["generic"].items()), ""]
        lines += ["| model | protocol | frames | bicubic | generic FastSR | generic | adapted | gain dB | steps | "
                  "CPU-min | lr |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, r in res.get("adapted", {}).items():
            for p in ("a", "b"):
                pr = r.get(f"protocol_{p}")
                if not pr:
                    continue
                lines.append(f"| {name} | {p} | {pr['n_measured']} | {pr['bicubic_psnr_y']} | "
                             f"{pr.get('fastsr_generic_psnr_y')} | {pr['generic_psnr_y']} | {pr['psnr_y']} | "
                             f"{pr['gain_db']:+.3f} | {pr['steps']} | {pr['cpu_min']:.1f} | {r.get('lr')} |")
        lines.append("")
        be = res.get("break_even", {})
        for name, r in res.get("adapted", {}).items():
            pb = r.get("protocol_b", {})
            if not pb.get("bytes"):
                continue
            lines += [f"{name}, protocol b, model files (PSNR-Y on {pb['bytes']['measured_on']} frames; generic "
                      f"{pb['bytes']['generic_psnr_y']}, adapted fp32 {pb['bytes']['adapted_fp32_psnr_y']}):", "",
                      "| file | bytes | kbps over the clip | PSNR-Y | gain dB | rate worth kbps | break-even s | "
                      "break-even s (smooth slope) | vs plain front s | dB vs front at rung kbps |",
                      "|---|---|---|---|---|---|---|---|---|---|"]
            for kname, e in pb["bytes"]["files"].items():
                b = be.get(name, {}).get(kname, {})
                lines.append(f"| {kname} ({e.get('scheme', 'fp16 safetensors')}) | {e['bytes']} | {e.get('kbps')} | "
                             f"{e.get('psnr_y')} | {b.get('gain_db')} | {b.get('rate_worth_kbps')} | "
                             f"{b.get('break_even_s')} | {b.get('break_even_smooth_s')} | {b.get('vs_front_s')} | "
                             f"{b.get('psnr_minus_front_at_rung_kbps')} |")
            lines.append("")
    old = d / "README.md"
    if old.exists() and NOTES_MARK in old.read_text():  # hand-written notes below the mark are kept
        lines += [NOTES_MARK + old.read_text().split(NOTES_MARK, 1)[1]]
    tmp = d / ".README.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(d / "README.md")


if __name__ == "__main__":
    sys.exit(main())
