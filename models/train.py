"""Training of the SR models (``bbmr-train sr``): resumable, deterministic, CPU-friendly.

Data: random HR crops of ``patch * scale`` pixels from the training images, held in memory as uint8;
augmentation by horizontal flip and 0/90/270 degree rotation; LR = :func:`bbmr_stream.resize.downscale`
(the packager's resize), quantised to 8 bits as a codec would receive it. Loss L1, AdamW (5e-4, betas
0.9/0.999, weight decay 1e-4), learning rate halved every ``decay_every`` iterations. Validation: PSNR-Y
(BT.601, crop = scale) on whole images whose HR is cropped to a multiple of the scale.

Every random draw comes from one ``torch.Generator`` whose state is checkpointed, so ``--resume`` continues
with exactly the batches (and the loss) an uninterrupted run would have seen. Checkpoints are plain
tensors/containers loaded with ``torch.load(weights_only=True)``; the model alone is also written as
safetensors. Files are written to a temp name and renamed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bbmr_stream.imageio import InputError, list_images, read_image
from bbmr_stream.metrics import psnr_y_torch
from bbmr_stream.resize import downscale
from models.omnisr import OmniSR, OmniSRConfig, count_params

ARCHS = {"omnisr": 5, "omnisr-light": 1}


@dataclass
class TrainConfig:
    arch: str = "omnisr-light"
    scale: int = 4
    data: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    out: str = "runs/sr"
    iters: int = 100_000
    batch: int = 16
    patch: int = 48  # LR patch size
    lr: float = 5e-4
    decay_every: int = 25_000
    weight_decay: float = 1e-4
    seed: int = 1234
    amp: str = "bf16"  # "bf16" (CPU autocast) | "fp16" (CUDA) | "none"
    device: str = "auto"
    threads: int = 0
    ckpt_minutes: float = 5.0
    val_every: int = 1000
    log_every: int = 50
    max_minutes: float = 0.0  # stop (with a checkpoint) after this long; 0 = no limit
    channels_last: bool = False


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: CUDA is not available on this machine")
    return torch.device(name)


class CropSampler:
    """Random (HR, LR) training pairs from images held in memory."""

    def __init__(self, images: list[np.ndarray], scale: int, patch: int) -> None:
        self.scale, self.patch = scale, patch
        hr = patch * scale
        self.images = [torch.from_numpy(im).permute(2, 0, 1).contiguous() for im in images
                       if im.shape[0] >= hr and im.shape[1] >= hr]
        if not self.images:
            raise InputError(f"no training image is at least {hr}x{hr} pixels")
        # sample images proportionally to their area, so every pixel is equally likely
        area = torch.tensor([im.shape[1] * im.shape[2] for im in self.images], dtype=torch.float64)
        self.weights = area / area.sum()

    def batch(self, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        hr_size = self.patch * self.scale
        idx = torch.multinomial(self.weights, n, replacement=True, generator=g)
        crops = []
        for i in idx.tolist():
            im = self.images[i]
            y = int(torch.randint(0, im.shape[1] - hr_size + 1, (1,), generator=g))
            x = int(torch.randint(0, im.shape[2] - hr_size + 1, (1,), generator=g))
            c = im[:, y:y + hr_size, x:x + hr_size]
            if int(torch.randint(0, 2, (1,), generator=g)):
                c = c.flip(-1)
            rot = (0, 1, 3)[int(torch.randint(0, 3, (1,), generator=g))]
            crops.append(torch.rot90(c, rot, dims=(1, 2)))
        hr = torch.stack(crops).float().div_(255.0)
        lr = downscale(hr, self.scale).mul_(255.0).round_().div_(255.0)
        return hr, lr


def load_images(paths: list[str]) -> list[np.ndarray]:
    return [read_image(p) for p in list_images(paths)]


def crop_to_multiple(img: np.ndarray, s: int) -> np.ndarray:
    h, w = img.shape[:2]
    return img[: h - h % s, : w - w % s]


@torch.no_grad()
def evaluate_sr(model: torch.nn.Module, images: list[np.ndarray], scale: int, device: torch.device,
                input_range: str = "0,1") -> float:
    """Mean PSNR-Y (dB, BT.601, crop = scale) of ``model`` on HR images (cropped to a multiple of the scale),
    LR made by :func:`downscale` and rounded to 8 bits."""
    model.eval()
    vals = []
    for im in images:
        hr = torch.from_numpy(crop_to_multiple(im, scale)).permute(2, 0, 1)[None].float().div(255.0).to(device)
        lr = downscale(hr, scale).mul(255.0).round().div(255.0)
        x = lr * 2 - 1 if input_range == "-1,1" else lr
        sr = model(x)
        if input_range == "-1,1":
            sr = (sr + 1) / 2
        sr = sr.clamp(0, 1).mul(255.0).round().div(255.0)
        vals.append(float(psnr_y_torch(sr.float(), hr, crop=scale)[0]))
    return float(np.mean(vals))


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_weights(model: torch.nn.Module, path: Path, meta: dict) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    sd = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(tmp), metadata={k: json.dumps(v) for k, v in meta.items()})
    os.replace(tmp, path)


def train_sr(cfg: TrainConfig, resume: bool = False, log=print) -> dict:
    """Run (or continue) one SR training; returns the last log record."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.arch not in ARCHS:
        raise InputError(f"--arch must be one of {', '.join(ARCHS)}")
    device = pick_device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "last.pt"

    torch.manual_seed(cfg.seed)
    mcfg = OmniSRConfig(scale=cfg.scale, res_num=ARCHS[cfg.arch])
    model = OmniSR(mcfg).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.decay_every, gamma=0.5)
    g = torch.Generator().manual_seed(cfg.seed)
    it = 0
    elapsed = 0.0
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ck["config"]["arch"] != cfg.arch or ck["config"]["scale"] != cfg.scale:
            raise InputError(f"{ckpt_path}: checkpoint is {ck['config']['arch']} x{ck['config']['scale']}, "
                             f"not {cfg.arch} x{cfg.scale}")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        g.set_state(ck["rng"])
        it = int(ck["iter"])
        elapsed = float(ck.get("elapsed", 0.0))
        log(f"resumed {ckpt_path} at iteration {it}")
    elif resume:
        log(f"no checkpoint in {out}; starting from scratch")

    sampler = CropSampler(load_images(cfg.data), cfg.scale, cfg.patch)
    val_images = [crop_to_multiple(im, cfg.scale) for im in load_images(cfg.val)] if cfg.val else []
    n_params = count_params(model)
    log(f"{cfg.arch} x{cfg.scale}: {n_params} params, {len(sampler.images)} training images, device {device}, "
        f"amp {cfg.amp}, threads {torch.get_num_threads()}")

    def checkpoint(record: dict) -> None:
        _atomic_save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                      "rng": g.get_state(), "iter": it, "elapsed": elapsed, "config": asdict(cfg)}, ckpt_path)
        meta = {"arch": cfg.arch, "config": mcfg.to_dict(), "iterations": it, "input_range": "0,1",
                "num_params": n_params, "last": record}
        save_weights(model, out / "model.safetensors", meta)

    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
    use_amp = amp_dtype is not None and not (amp_dtype == torch.float16 and device.type != "cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=(use_amp and amp_dtype == torch.float16))
    logf = open(out / "log.jsonl", "a")
    t_start = time.time()
    t_ckpt = time.time()
    t_window, loss_window, n_window = time.time(), 0.0, 0
    record: dict = {}
    try:
        while it < cfg.iters:
            model.train()
            hr, lr = sampler.batch(cfg.batch, g)
            hr, lr = hr.to(device), lr.to(device)
            if cfg.channels_last:
                lr = lr.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=use_amp):
                sr = model(lr)
            loss = F.l1_loss(sr.float(), hr)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            it += 1
            if not math.isfinite(loss.item()):
                raise RuntimeError(f"loss became {loss.item()} at iteration {it}")
            loss_window += loss.item()
            n_window += 1
            if it % cfg.log_every == 0 or it == cfg.iters:
                now = time.time()
                record = {"iter": it, "loss": loss_window / n_window, "lr": sched.get_last_lr()[0],
                          "it_per_s": n_window / (now - t_window), "elapsed_s": elapsed + now - t_start}
                loss_window, n_window, t_window = 0.0, 0, now
                if val_images and (it % cfg.val_every == 0 or it == cfg.iters):
                    record["val_psnr_y"] = evaluate_sr(model, val_images, cfg.scale, device)
                logf.write(json.dumps(record) + "\n")
                logf.flush()
                log(" ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
            stop = cfg.max_minutes and (time.time() - t_start) > cfg.max_minutes * 60
            if time.time() - t_ckpt > cfg.ckpt_minutes * 60 or stop or it == cfg.iters:
                elapsed += time.time() - t_start
                t_start = time.time()
                checkpoint(record)
                t_ckpt = time.time()
            if stop:
                log(f"time budget reached at iteration {it}; checkpoint written")
                break
    finally:
        logf.close()
    return record | {"iter": it}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bbmr-train", description="Train the BBMR SR models on CPU or CUDA.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sr = sub.add_parser("sr", help="train an OmniSR model at one scale")
    d = TrainConfig()
    sr.add_argument("--arch", choices=list(ARCHS), default=d.arch)
    sr.add_argument("--scale", type=int, choices=(2, 4, 8), default=d.scale)
    sr.add_argument("--data", nargs="+", required=True, help="training image files or directories")
    sr.add_argument("--val", nargs="*", default=[], help="validation images (PSNR-Y, crop = scale)")
    sr.add_argument("--out", required=True, help="checkpoint directory")
    for name in ("iters", "batch", "patch", "decay_every", "seed", "threads", "val_every", "log_every"):
        sr.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(d, name))
    for name in ("lr", "weight_decay", "ckpt_minutes", "max_minutes"):
        sr.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(d, name))
    sr.add_argument("--amp", choices=("bf16", "fp16", "none"), default=d.amp)
    sr.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d.device)
    sr.add_argument("--channels-last", action="store_true")
    sr.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if present")
    pb = sub.add_parser("publish", help="copy a trained model into models/weights and register it with metrics")
    pb.add_argument("--ckpt", required=True, help="checkpoint directory of `bbmr-train sr`")
    pb.add_argument("--id", required=True, help="registry id, e.g. omnisr-light-x4")
    pb.add_argument("--val", nargs="+", required=True, metavar="NAME=DIR",
                    help="validation sets for _metrics, e.g. Set5=../shared/data/val/Set5")
    pb.add_argument("--data", nargs="+", required=True, help="the training directories (recorded with licences)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.cmd == "sr":
            fields = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
            train_sr(TrainConfig(**fields), resume=args.resume)
        elif args.cmd == "publish":
            from models.publish import publish_omnisr

            sets = dict(v.split("=", 1) for v in args.val if "=" in v)
            if len(sets) != len(args.val):
                raise InputError("--val takes NAME=DIR pairs")
            e = publish_omnisr(args.ckpt, args.id, sets, args.data)
            print(json.dumps(e.to_dict(), indent=2))
        return 0
    except InputError as e:
        print(f"bbmr-train: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bbmr-train: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
