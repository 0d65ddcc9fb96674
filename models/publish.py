"""Publish a trained checkpoint into the package: ``models/weights/<id>.safetensors`` + a registry entry
with the measured metrics (``bbmr-train publish``).

Metrics (``_metrics``): PSNR-Y in dB, BT.601 Y unrounded, HR cropped to a multiple of the scale, LR by
:func:`bbmr_stream.resize.downscale` rounded to 8 bits, SR rounded to 8 bits, border crop = scale; the
bicubic baseline under the same convention is stored beside each figure.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from bbmr_stream.metrics import psnr_y_torch
from bbmr_stream.resize import downscale, quantize, upscale
from models import registry
from models.archs import arch_of
from models.omnisr import count_params
from models.registry import WeightsEntry, load_state_dict_file, read_metadata, sha256_file
from models.train import crop_to_multiple, evaluate_sr, load_images

METRIC_CONVENTION = ("PSNR-Y dB: BT.601 Y (16+65.481R+128.553G+24.966B, RGB in [0,1]) unrounded, peak 255, "
                     "HR cropped to a multiple of the scale, LR = torch antialiased bicubic (bbmr_stream.resize) "
                     "rounded to 8 bits, SR rounded to 8 bits, border crop = scale")

LICENCES = {
    "SunHays80": "research use (Sun & Hays, ICCP'12)",
    "BSD68": "research use (Berkeley BSDS)",
    "Kodak24": "unrestricted (Kodak PhotoCD)",
    "mate_nature": "GPL-2+ (Debian mate-backgrounds)",
}
UNRECORDED = "licence not recorded (add it to models.publish.LICENCES)"


def bicubic_psnr(images: list[np.ndarray], scale: int) -> float:
    vals = []
    for im in images:
        hr = torch.from_numpy(crop_to_multiple(im, scale)).permute(2, 0, 1)[None].float().div(255)
        lr = quantize(downscale(hr, scale))
        sr = quantize(upscale(lr, scale))
        vals.append(float(psnr_y_torch(sr, hr, crop=scale)[0]))
    return float(np.mean(vals))


CODED_CONVENTION = ("coded_psnr_y[CRF]: the same, with the 8-bit LR coded as one x264 I frame at CRF + 3 "
                    "(models.degrade.code_picture: the I frame stands for the P/B frames of a stream at CRF)")
CODED_CRFS = (23, 28, 33, 38)  # the ladder's CRF range for SR rungs (packager/ladder.py)


def measure(model: torch.nn.Module, scale: int, val_sets: dict[str, str], crfs=CODED_CRFS) -> dict:
    """Clean-LR PSNR-Y on each set (with bicubic beside it) and coded-LR PSNR-Y at each CRF of ``crfs``."""
    out = {"convention": METRIC_CONVENTION, "coded_convention": CODED_CONVENTION}
    cpu = torch.device("cpu")
    for name, path in val_sets.items():
        imgs = load_images([path])
        out[name] = {"psnr_y": round(evaluate_sr(model, imgs, scale, cpu), 3),
                     "bicubic_psnr_y": round(bicubic_psnr(imgs, scale), 3), "images": len(imgs)}
        out[name].update(coded_metrics(model, imgs, scale, crfs))
    return out


class _Bicubic(torch.nn.Module):
    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upscale(x, self.scale)


def coded_metrics(model: torch.nn.Module, imgs: list, scale: int, crfs=CODED_CRFS) -> dict:
    """PSNR-Y of ``model`` and of bicubic on LR coded at each CRF of ``crfs`` (CODED_CONVENTION)."""
    cpu = torch.device("cpu")
    return {"coded_psnr_y": {str(c): round(evaluate_sr(model, imgs, scale, cpu, code_crf=c), 3) for c in crfs},
            "bicubic_coded_psnr_y": {str(c): round(evaluate_sr(_Bicubic(scale), imgs, scale, cpu, code_crf=c), 3)
                                     for c in crfs}}


def add_coded_metrics(weights_id: str, val_sets: dict[str, str]) -> WeightsEntry:
    """Measure a shipped model on coded LR (its file and sha256 unchanged) and record it in the registry."""
    from models.registry import get_entry, load_model

    entry = get_entry(weights_id)
    model = load_model(weights_id)
    scale = entry.scales[0]
    metrics = dict(entry.metrics)
    metrics["coded_convention"] = CODED_CONVENTION
    for name, path in val_sets.items():
        metrics.setdefault(name, {}).update(coded_metrics(model, load_images([path]), scale))
    entry = WeightsEntry(**{**entry.__dict__, "metrics": metrics})
    write_entry(entry)
    return entry


def publish(ckpt_dir: str, weights_id: str, val_sets: dict[str, str], data_dirs: list[str]) -> WeightsEntry:
    """Publish a `bbmr-train` run: a per-scale architecture's (``sr``) by :func:`publish_omnisr`, a multi-scale
    one's (``jointsr``) by :func:`publish_jointsr` (the architecture recorded in the run's metadata)."""
    meta = read_metadata(Path(ckpt_dir) / "model.safetensors")
    fn = publish_omnisr if arch_of(meta.get("arch", "omnisr")).per_scale else publish_jointsr
    return fn(ckpt_dir, weights_id, val_sets, data_dirs)


def publish_omnisr(ckpt_dir: str, weights_id: str, val_sets: dict[str, str], data_dirs: list[str]) -> WeightsEntry:
    """Publish a `bbmr-train sr` run (any per-scale architecture: OmniSR, FastSR)."""
    ck = Path(ckpt_dir)
    meta = read_metadata(ck / "model.safetensors")
    spec = arch_of(meta.get("arch", "omnisr"))  # the run records its --arch preset (omnisr-light -> omnisr)
    arch = spec.name
    net = spec.load(meta["config"], load_state_dict_file(ck / "model.safetensors"))
    net.eval()
    scale = spec.scales(meta["config"])[0]
    log = [json.loads(line) for line in (ck / "log.jsonl").read_text().splitlines() if line.strip()]
    registry.WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    dst = registry.WEIGHTS_DIR / f"{weights_id}.safetensors"
    from models.train import save_weights

    save_weights(net, dst, {"id": weights_id, "arch": arch, "config": meta["config"], "input_range": "0,1"})
    sets = [Path(d).name for d in data_dirs]
    entry = WeightsEntry(
        id=weights_id, file=dst.name, arch=arch, config=meta["config"], scales=(scale,),
        num_params=count_params(net), input_range="0,1", sha256=sha256_file(dst),
        training={"data": {s: LICENCES.get(s, UNRECORDED) for s in sets},
                  "licence_note": "trained on research-use-only images (SunHays80, BSD68): research use only"
                  if {"SunHays80", "BSD68"} & set(sets) else "openly licensed training data",
                  "iterations": int(meta["iterations"]), "wall_time_s": round(log[-1]["elapsed_s"], 1) if log else None,
                  "it_per_s": round(float(np.mean([r["it_per_s"] for r in log[-20:]])), 3) if log else None,
                  "recipe": "random HR crops, flips + 90/270 rotations, L1, AdamW 5e-4 step decay, bf16 autocast (CPU)"
                  + (f"; codec-aware: LR coded by x264 (I frame at CRF + 3) at CRF {meta['codec_crfs']}"
                     if meta.get("codec_crfs") else "; clean LR")
                  + (f"; warm start from {meta['init']}" if meta.get("init") else ""),
                  "codec_crfs": meta.get("codec_crfs") or [],
                  "batch": None, "lr_patch": None},
        metrics=measure(net, scale, val_sets))
    cfg_file = ck / "last.pt"
    if cfg_file.exists():
        c = torch.load(cfg_file, map_location="cpu", weights_only=True)["config"]
        entry.training["batch"], entry.training["lr_patch"] = c["batch"], c["patch"]
    write_entry(entry)
    return entry


def write_entry(entry: WeightsEntry, path: Path | None = None) -> None:
    path = path or registry.REGISTRY_FILE
    reg = json.loads(path.read_text()) if path.exists() else {"version": 1, "weights": []}
    reg["weights"] = [w for w in reg["weights"] if w["id"] != entry.id] + [entry.to_dict()]
    reg["weights"].sort(key=lambda w: w["id"])
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(reg, indent=2) + "\n")
    os.replace(tmp, path)


JOINT_CONVENTION = ("PSNR-Y dB: BT.601 Y unrounded, crop 0, whole image (padded to 128-px blocks, padding cut), "
                    "scale map = optimal allocation under the bicubic scorer at the uniform-x4 LR budget, LR tiles by "
                    "bbmr_stream.downscale (frame mode, 8-bit), SR rounded to 8 bits; omnisr_o = uniform x4 through "
                    "the x4 branch's OmniSR on the same images; stitched = each block by its scale's OmniSR alone "
                    "(paper's case 3); omnisr_context = each scale's OmniSR on the whole plane, neighbours resampled "
                    "in; all with the per-scale models JointSR was initialised from")


def publish_jointsr(ckpt_dir: str, weights_id: str, val_sets: dict[str, str], data_dirs: list[str]) -> WeightsEntry:
    from bbmr_stream.blocks import BlockGrid
    from models.registry import load_run
    from models.train import evaluate_jointsr, load_branch, optimal_maps

    ck = Path(ckpt_dir)
    model, meta = load_run(ck)
    cfg = model.cfg
    registry.WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    dst = registry.WEIGHTS_DIR / f"{weights_id}.safetensors"
    from models.train import save_weights

    save_weights(model, dst, {"id": weights_id, "arch": "jointsr", "config": cfg.to_dict(), "input_range": "0,1"})
    from bbmr_stream.evaluate import rescale
    from bbmr_stream.metrics import psnr_y
    from models.registry import SRModel
    from models.upscalers import OmniSRUpscaler

    branches = meta.get("branches", {})
    nets = {int(k): SRModel(load_branch(v).eval(), int(k)) for k, v in branches.items()} \
        if set(map(int, branches)) == set(cfg.scales) else {}
    metrics: dict = {"convention": JOINT_CONVENTION}

    def mean_psnr(imgs, maps, up) -> float:
        return round(float(np.mean([psnr_y(im, rescale(im, f, up, cfg.block).image)
                                    for im, f in zip(imgs, maps)])), 3)

    for name, path in val_sets.items():
        imgs = load_images([path])
        maps = optimal_maps(imgs, cfg.scales, cfg.block)
        row = {"psnr_y": round(evaluate_jointsr(model, imgs, maps, torch.device("cpu")), 3), "images": len(imgs)}
        if nets:  # the per-scale models JointSR was initialised from, on the same maps / uniform x4
            uni = [np.full(BlockGrid(im.shape[0], im.shape[1], cfg.block).n_blocks, 4, np.uint8) for im in imgs]
            row["omnisr_o_psnr_y"] = mean_psnr(imgs, uni, OmniSRUpscaler(nets, torch.device("cpu")))
            row["stitched_psnr_y"] = mean_psnr(imgs, maps, OmniSRUpscaler(nets, torch.device("cpu"), "tile"))
            row["omnisr_context_psnr_y"] = mean_psnr(imgs, maps, OmniSRUpscaler(nets, torch.device("cpu")))
        metrics[name] = row
    log = [json.loads(line) for line in (ck / "log.jsonl").read_text().splitlines() if line.strip()]
    sets = [Path(d).name for d in data_dirs]
    entry = WeightsEntry(
        id=weights_id, file=dst.name, arch="jointsr", config=cfg.to_dict(), scales=tuple(cfg.scales),
        num_params=count_params(model), input_range="0,1", sha256=sha256_file(dst),
        training={"data": {s: LICENCES.get(s, UNRECORDED) for s in sets},
                  "licence_note": "trained on research-use-only images (SunHays80, BSD68): research use only"
                  if {"SunHays80", "BSD68"} & set(sets) else "openly licensed training data",
                  "iterations": int(meta["iterations"]), "wall_time_s": round(log[-1]["elapsed_s"], 1) if log else None,
                  "branches": meta.get("branches"), "warm_start": _warm_start(meta.get("init")),
                  "recipe": "frozen OmniSR branches, function-preserving init "
                  "(step 0 == the per-scale models stitched per block); 384-px HR crops = 3x3 blocks, uniformly "
                  "random scale per block; trained: deblock at lr, per-branch and final Upsamples at lr x "
                  f"{meta.get('upsample_lr_mult', 'see log')}; L1, AdamW"},
        metrics=metrics)
    write_entry(entry)
    return entry


def _warm_start(init: str | None) -> dict | None:
    """Where a warm-started JointSR came from and how many iterations that run had (when still readable)."""
    if not init:
        return None
    f = Path(init) / "model.safetensors" if Path(init).is_dir() else Path(init)
    try:
        it = read_metadata(f).get("iterations")
    except (OSError, ValueError, TypeError):
        it = None
    return {"from": str(init), "iterations": it}
