"""``bbmr-train downnet``: a Down-Net (models/downnet.py) trained end to end with a shipped client upscaler, frozen.

Loss (the BBMR paper's Eq. 6): ``(1/2^k) L1(LR', LR_bicubic) + L1(SR(Q(LR')), HR)``, k the scale factor, Q the
8-bit rounding the packager applies to every picture, passed straight through (forward rounded, backward
identity). Batches are random HR crops (flips, 90/270 rotations) of ``patch * scale`` pixels from the training
images, as ``bbmr-train sr`` draws them. Validation: PSNR-Y (BT.601, crop = scale) of the upscaler on the
Down-Net's 8-bit LR of each validation image, beside the same upscaler on the bicubic LR (logged once at the
start): the gain is what the learned downscaler buys before any codec. The shared loop of models/train.py
(AdamW, step decay, amp, checkpoints every few minutes and on SIGTERM, exact ``--resume``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from bbmr_stream.device import pick_device
from bbmr_stream.metrics import psnr_y_torch
from bbmr_stream.resize import downscale, quantize
from models.downnet import DownNet, DownNetConfig
from models.omnisr import count_params
from models.registry import get_entry, load_model
from models.train import CropSampler, TrainConfig, crop_to_multiple, load_images, run_training


def straight_through_8bit(x: torch.Tensor) -> torch.Tensor:
    """``x`` rounded to 8-bit levels in the forward pass, the identity in the backward pass."""
    return x + (quantize(x) - x).detach()


@torch.no_grad()
def evaluate_downnet(net: DownNet | None, up, images: list[np.ndarray], scale: int, device) -> float:
    """Mean PSNR-Y (dB, BT.601, crop = scale) of ``up`` on the 8-bit LR of each image: the Down-Net's (``net``)
    or bicubic (None)."""
    vals = []
    for im in images:
        hr = torch.from_numpy(crop_to_multiple(im, scale)).permute(2, 0, 1)[None].float().div(255.0).to(device)
        lr = quantize(net(hr) if net is not None else downscale(hr, scale))
        sr = quantize(up(lr).clamp(0, 1))
        vals.append(float(psnr_y_torch(sr.float(), hr, crop=scale)[0]))
    return float(np.mean(vals))


def train_downnet(cfg: TrainConfig, upscaler: str, resume: bool = False, log=print) -> dict:
    """Run (or continue) one Down-Net training at ``cfg.scale`` against the registry's ``upscaler`` (frozen);
    returns the last log record."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    entry = get_entry(upscaler)
    up = load_model(upscaler, device)
    if getattr(up, "scale", None) != cfg.scale:
        from bbmr_stream.errors import InputError

        raise InputError(f"--upscaler {upscaler} is x{getattr(up, 'scale', '?')}, not x{cfg.scale}")
    for p in up.parameters():
        p.requires_grad_(False)
    net_cfg = DownNetConfig(scale=cfg.scale)
    net = DownNet(net_cfg).to(device)
    sampler = CropSampler(load_images(cfg.data), cfg.scale, cfg.patch)
    val_images = [crop_to_multiple(im, cfg.scale) for im in load_images(cfg.val)] if cfg.val else []
    n_params = count_params(net)
    log(f"downnet x{cfg.scale} with {upscaler}: {n_params} params, {len(sampler.images)} training images, device "
        f"{device}, threads {torch.get_num_threads()}")
    if val_images:
        base = evaluate_downnet(None, up, val_images, cfg.scale, device)
        log(f"validation PSNR-Y of {upscaler} on bicubic LR: {base:.3f}")
    weight = 1.0 / 2 ** cfg.scale

    def sample(g):
        return sampler.batch(cfg.batch, g)[0].to(device)

    def loss_fn(hr):
        lr = net(hr, clamp=False)
        sr = up(straight_through_8bit(lr.clamp(0.0, 1.0)))
        return weight * F.l1_loss(lr.float(), downscale(hr, cfg.scale)) + F.l1_loss(sr.float(), hr)

    def meta(it, record):
        return {"arch": "downnet", "config": net_cfg.to_dict(), "iterations": it, "num_params": n_params,
                "upscaler": {"id": upscaler, "sha256": entry.sha256}, "loss": "eq6+8bit-ste", "last": record}

    validate = (lambda: evaluate_downnet(net, up, val_images, cfg.scale, device)) if val_images else None
    return run_training(cfg, net, list(net.parameters()), sample, loss_fn, validate, meta, resume, log, device)
