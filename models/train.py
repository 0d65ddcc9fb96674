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

import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bbmr_stream.device import pick_device
from bbmr_stream.errors import InputError
from bbmr_stream.imageio import list_images, read_image
from bbmr_stream.metrics import psnr_y_torch
from bbmr_stream.resize import downscale, quantize
from models.archs import get_arch, sr_presets
from models.omnisr import OmniSR, count_params


def build_sr_net(arch: str, scale: int) -> tuple[torch.nn.Module, dict]:
    """The untrained network of ``bbmr-train sr --arch`` (a preset of a per-scale architecture, models/archs.py:
    ``omnisr``, ``omnisr-light``, ``fastsr``) and its config (saved in the weights' metadata)."""
    spec, fields = sr_presets()[arch]
    cfg = spec.config_cls(scale=scale, **fields)
    return spec.net_cls(cfg), cfg.to_dict()


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
    amp: str = "auto"  # "auto" | "bf16" (autocast) | "fp16" (CUDA) | "none"
    device: str = "auto"
    threads: int = 0
    ckpt_minutes: float = 5.0
    val_every: int = 1000
    log_every: int = 50
    max_minutes: float = 0.0  # stop (with a checkpoint) after this long; 0 = no limit
    channels_last: bool = False
    compile: bool = False  # torch.compile the forward (about 1.3x faster on this CPU after ~2-4 min warm-up)
    # JointSR only
    branches: list[str] = field(default_factory=list)  # "k=CKPT_DIR_OR_REGISTRY_ID" per scale
    grid: int = 3  # HR crops of grid x grid blocks
    block: int = 128
    band: int = 4
    init: str | None = None  # warm start: registry id, run directory or .safetensors (see init_state_dict)
    codec_crfs: list[float] = field(default_factory=list)  # sr: codec-aware LR (x264 at these CRFs); [] = clean
    margin: int = 4  # jointsr: LR context pixels around each branch tile (0 = the paper's tile-only branches)
    upsample_lr_mult: float = 0.1  # jointsr: learning rate of the Upsamples relative to --lr (0 = frozen)
    train_branches: bool = False  # default: branches frozen (their features need no backward pass)


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
        lr = quantize(downscale(hr, self.scale))
        return hr, lr


class CodedCropSampler(CropSampler):
    """Codec-aware pairs: the LR of every training image (antialiased bicubic, 8 bits) is coded once per CRF of
    ``crfs`` by :func:`models.degrade.code_picture` and cached; a batch takes random crops of a random CRF's
    coded LR with the aligned HR crop (same flips and rotations)."""

    def __init__(self, images: list[np.ndarray], scale: int, patch: int, crfs: list[float], log=print) -> None:
        from bbmr_stream.resize import to_uint8
        from models.degrade import code_picture

        super().__init__([crop_to_multiple(im, scale) for im in images], scale, patch)
        self.crfs = list(crfs)
        self.coded: list[list[torch.Tensor]] = []
        t = time.time()
        for im in self.images:
            lr = to_uint8(quantize(downscale(im[None].float().div(255.0), scale)))
            self.coded.append([torch.from_numpy(code_picture(lr, c)).permute(2, 0, 1).contiguous() for c in crfs])
        log(f"coded the LR of {len(self.images)} images at CRF {self.crfs} (+{_p_offset()}) in {time.time() - t:.0f} s")

    def batch(self, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        s, p = self.scale, self.patch
        idx = torch.multinomial(self.weights, n, replacement=True, generator=g)
        hrs, lrs = [], []
        for i in idx.tolist():
            lr_full = self.coded[i][int(torch.randint(0, len(self.crfs), (1,), generator=g))]
            y = int(torch.randint(0, lr_full.shape[1] - p + 1, (1,), generator=g))
            x = int(torch.randint(0, lr_full.shape[2] - p + 1, (1,), generator=g))
            pair = [self.images[i][:, y * s:(y + p) * s, x * s:(x + p) * s], lr_full[:, y:y + p, x:x + p]]
            if int(torch.randint(0, 2, (1,), generator=g)):
                pair = [c.flip(-1) for c in pair]
            rot = (0, 1, 3)[int(torch.randint(0, 3, (1,), generator=g))]
            hr, lr = (torch.rot90(c, rot, dims=(1, 2)) for c in pair)
            hrs.append(hr)
            lrs.append(lr)
        return torch.stack(hrs).float().div_(255.0), torch.stack(lrs).float().div_(255.0)


def _p_offset() -> float:
    from models.degrade import P_OFFSET

    return P_OFFSET


def load_images(paths: list[str]) -> list[np.ndarray]:
    return [read_image(p) for p in list_images(paths)]


def crop_to_multiple(img: np.ndarray, s: int) -> np.ndarray:
    h, w = img.shape[:2]
    return img[: h - h % s, : w - w % s]


@torch.no_grad()
def evaluate_sr(model: torch.nn.Module, images: list[np.ndarray], scale: int, device: torch.device,
                input_range: str = "0,1", code_crf: float | None = None) -> float:
    """Mean PSNR-Y (dB, BT.601, crop = scale) of ``model`` on HR images (cropped to a multiple of the scale),
    LR made by :func:`downscale` and rounded to 8 bits, then (``code_crf``) through x264 at that CRF."""
    model.eval()
    vals = []
    for im in images:
        hr = torch.from_numpy(crop_to_multiple(im, scale)).permute(2, 0, 1)[None].float().div(255.0).to(device)
        lr = quantize(downscale(hr, scale))
        if code_crf is not None:
            from bbmr_stream.resize import to_tensor, to_uint8
            from models.degrade import code_picture

            lr = to_tensor(code_picture(to_uint8(lr.cpu()), code_crf)).to(device)
        x = lr * 2 - 1 if input_range == "-1,1" else lr
        sr = model(x)
        if input_range == "-1,1":
            sr = (sr + 1) / 2
        sr = quantize(sr)
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


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 matmul/conv run natively (CUDA with bf16, or a CPU with AVX512-BF16/AMX). Elsewhere
    (an AVX2-only CPU) oneDNN emulates bf16 and autocast makes training ~10x slower (measured here: JointSR
    0.05 it/s with bf16 vs ~0.3 fp32 on an AVX2 EPYC)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_amp(amp: str, device: torch.device) -> str:
    """``auto``: fp16 on CUDA, bf16 on a CPU with native bf16, else none (fp32)."""
    if amp != "auto":
        return amp
    if device.type == "cuda":
        return "fp16"
    return "bf16" if native_bf16(device) else "none"


def _amp(cfg: TrainConfig, device: torch.device):
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(resolve_amp(cfg.amp, device))
    use_amp = amp_dtype is not None and not (amp_dtype == torch.float16 and device.type != "cuda")
    return amp_dtype or torch.float32, use_amp


def run_training(cfg: TrainConfig, model: torch.nn.Module, params: list, sample: Callable, loss_fn: Callable,
                 validate: Callable | None, weights_meta: Callable[[int, dict], dict], resume: bool,
                 log=print, device: torch.device | None = None) -> dict:
    """The shared loop: AdamW + step decay, amp, periodic validation, log.jsonl, checkpoints (every
    ``ckpt_minutes``, at the end, on SIGTERM/SIGINT and at ``max_minutes``), exact resume.

    ``sample(g)`` draws a batch with the generator ``g``; ``loss_fn(batch)`` returns the scalar loss;
    ``validate()`` returns the validation PSNR-Y; ``weights_meta(it, record)`` the safetensors metadata.
    """
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "last.pt"
    device = device or pick_device(cfg.device)
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
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
        if sched.step_size != cfg.decay_every:  # a resumed run may shorten the decay period (halves from here)
            log(f"decay period {sched.step_size} -> {cfg.decay_every} iterations")
            sched.step_size = cfg.decay_every
        g.set_state(ck["rng"])
        it = int(ck["iter"])
        elapsed = float(ck.get("elapsed", 0.0))
        log(f"resumed {ckpt_path} at iteration {it}")
    elif resume:
        log(f"no checkpoint in {out}; starting from scratch")

    def checkpoint(record: dict) -> None:
        _atomic_save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                      "rng": g.get_state(), "iter": it, "elapsed": elapsed, "config": asdict(cfg)}, ckpt_path)
        save_weights(model, out / "model.safetensors", weights_meta(it, record))

    amp_dtype, use_amp = _amp(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=(use_amp and amp_dtype == torch.float16))
    # SIGTERM/SIGINT: finish the current step, write a checkpoint, stop (a session end loses nothing)
    signalled: list[int] = []
    old_handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            old_handlers[sig] = signal.signal(sig, lambda n, f: signalled.append(n))
    t_start = t_run = time.time()
    t_ckpt = time.time()
    t_window, loss_window, n_window = time.time(), 0.0, 0
    record: dict = {}
    try:
        with open(out / "log.jsonl", "a") as logf:
            while it < cfg.iters:
                model.train()
                batch = sample(g)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    loss = loss_fn(batch)
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
                    if validate is not None and (it % cfg.val_every == 0 or it == cfg.iters):
                        record["val_psnr_y"] = validate()
                    logf.write(json.dumps(record) + "\n")
                    logf.flush()
                    log(" ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
                stop = bool(signalled) or (cfg.max_minutes and (time.time() - t_run) > cfg.max_minutes * 60)
                if time.time() - t_ckpt > cfg.ckpt_minutes * 60 or stop or it == cfg.iters:
                    elapsed += time.time() - t_start
                    t_start = time.time()
                    checkpoint(record)
                    t_ckpt = time.time()
                if stop:
                    log(f"{'signal' if signalled else 'time budget'}: stopped at iteration {it}; checkpoint written")
                    break
    finally:
        for sig, h in old_handlers.items():
            signal.signal(sig, h)
    return record | {"iter": it}


def init_state_dict(spec: str) -> dict:
    """Weights to warm-start from: a registry id (the shipped, sha256-checked file), a run directory (its
    model.safetensors) or a .safetensors file."""
    from bbmr_stream.errors import WeightsError
    from models.registry import load_registry, load_state_dict_file, sha256_file

    reg = load_registry()
    if spec in reg:
        e = reg[spec]
        if sha256_file(e.path) != e.sha256:
            raise InputError(f"--init {spec}: {e.path} does not match its registry sha256")
        return load_state_dict_file(e.path)
    f = Path(spec)
    f = f / "model.safetensors" if f.is_dir() else f
    if not f.is_file():
        raise InputError(f"--init: {spec} is neither a registry id nor a weights file or run directory")
    try:
        return load_state_dict_file(f)
    except (WeightsError, OSError, ValueError) as e:
        raise InputError(f"--init {spec}: {e}") from None


def train_sr(cfg: TrainConfig, resume: bool = False, log=print) -> dict:
    """Run (or continue) one OmniSR training at one scale; returns the last log record."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.arch not in sr_presets():
        raise InputError(f"--arch must be one of {', '.join(sr_presets())}")
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model, net_config = build_sr_net(cfg.arch, cfg.scale)
    if cfg.init:  # warm start (e.g. from the shipped weights); --resume of an existing run takes precedence
        try:
            model.load_state_dict(init_state_dict(cfg.init))
        except RuntimeError as e:
            raise InputError(f"--init {cfg.init}: not an {cfg.arch} x{cfg.scale} model ({str(e)[:200]})") from None
    model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    fwd = torch.compile(model) if cfg.compile else model  # state dicts always come from `model`
    if cfg.codec_crfs:
        sampler = CodedCropSampler(load_images(cfg.data), cfg.scale, cfg.patch, cfg.codec_crfs, log)
    else:
        sampler = CropSampler(load_images(cfg.data), cfg.scale, cfg.patch)
    val_images = [crop_to_multiple(im, cfg.scale) for im in load_images(cfg.val)] if cfg.val else []
    n_params = count_params(model)
    log(f"{cfg.arch} x{cfg.scale}: {n_params} params, {len(sampler.images)} training images, device {device}, "
        f"amp {resolve_amp(cfg.amp, device)}, threads {torch.get_num_threads()}")

    def sample(g):
        hr, lr = sampler.batch(cfg.batch, g)
        hr, lr = hr.to(device), lr.to(device)
        if cfg.channels_last:
            lr = lr.contiguous(memory_format=torch.channels_last)
        return hr, lr

    def loss_fn(batch):
        hr, lr = batch
        return F.l1_loss(fwd(lr).float(), hr)

    def meta(it, record):
        return {"arch": cfg.arch, "config": net_config, "iterations": it, "input_range": "0,1",
                "num_params": n_params, "init": cfg.init, "codec_crfs": cfg.codec_crfs, "last": record}

    val_crf = cfg.codec_crfs[len(cfg.codec_crfs) // 2] if cfg.codec_crfs else None
    validate = (lambda: evaluate_sr(model, val_images, cfg.scale, device, code_crf=val_crf)) if val_images else None
    return run_training(cfg, model, list(model.parameters()), sample, loss_fn, validate, meta, resume, log, device)


class JointCropSampler:
    """HR crops of grid x grid blocks with a random scale per block (uniform over the set), as the paper's
    JointSR recipe; LR tiles by the packager's frame-mode downscale, 8-bit quantised."""

    def __init__(self, images: list[np.ndarray], scales: tuple[int, ...], block: int, grid: int) -> None:
        self.scales, self.block, self.grid = scales, block, grid
        self.crop = CropSampler(images, 1, block * grid)

    def batch(self, n: int, g: torch.Generator):
        from bbmr_stream.downscale import all_tiles

        hr, _ = self.crop.batch(n, g)
        nb = self.grid * self.grid
        choice = torch.randint(0, len(self.scales), (n * nb,), generator=g)
        tiles, index = {}, {}
        for j, k in enumerate(self.scales):
            idx = torch.nonzero(choice == j).flatten()
            t = torch.cat([all_tiles(hr[i:i + 1], k, self.block, "frame") for i in range(n)])
            tiles[k], index[k] = t[idx], idx
        return hr, tiles, index


def load_branch(spec: str) -> OmniSR:
    """An OmniSR from a `bbmr-train sr` checkpoint directory or a registry id."""
    p = Path(spec)
    if p.is_dir():
        from models.registry import load_state_dict_file, read_metadata

        meta = read_metadata(p / "model.safetensors")
        return get_arch("omnisr").load(meta["config"], load_state_dict_file(p / "model.safetensors"))
    from bbmr_stream.errors import WeightsError
    from models.registry import load_model

    try:
        return load_model(spec).net
    except WeightsError as e:
        raise InputError(str(e)) from None


@torch.no_grad()
def evaluate_jointsr(model, images: list[np.ndarray], maps: list[np.ndarray], device: torch.device) -> float:
    """Mean PSNR-Y (BT.601, crop 0, original unpadded region) of JointSR on images with given maps."""
    from bbmr_stream.blocks import BlockGrid, pad_tensor
    from bbmr_stream.downscale import downscale_blocks
    from bbmr_stream.resize import to_tensor
    from models.jointsr import JointSRUpscaler

    model.eval()
    up = JointSRUpscaler(model, device)
    vals = []
    for im, f in zip(images, maps):
        g = BlockGrid(im.shape[0], im.shape[1], model.cfg.block)
        x = to_tensor(im)
        lr = downscale_blocks(pad_tensor(x, g.block), g, f)
        sr = up(lr)[..., : g.height, : g.width].cpu()
        sr = quantize(sr)
        vals.append(float(psnr_y_torch(sr, x, crop=0)[0]))
    return float(np.mean(vals))


def optimal_maps(images: list[np.ndarray], scales: tuple[int, ...], block: int) -> list[np.ndarray]:
    """Validation scale maps: the optimal allocation under the bicubic scorer (a realistic mix)."""
    from bbmr_stream.allocate import allocate
    from bbmr_stream.blocks import BlockGrid
    from bbmr_stream.resize import to_tensor
    from bbmr_stream.score import BicubicScorer

    sc = BicubicScorer(scales)
    out = []
    for im in images:
        g = BlockGrid(im.shape[0], im.shape[1], block)
        out.append(allocate("optimal", sc.score(to_tensor(im), block), scales, 4, block, weights=g.valid_fraction()))
    return out


def train_jointsr(cfg: TrainConfig, resume: bool = False, log=print) -> dict:
    """Train JointSR's Upsamples, deblock branch and final Upsample on top of per-scale OmniSR branches."""
    from models.jointsr import JointSR, JointSRConfig

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    specs = {}
    for b in cfg.branches:
        k, _, spec = b.partition("=")
        if not k.isdigit() or not spec:
            raise InputError(f"--branches takes SCALE=CKPT_DIR_OR_ID, got {b!r}")
        specs[int(k)] = spec
    if len(specs) < 1:
        raise InputError("--branches: give one trained OmniSR per scale, e.g. 2=runs/light_x2 4=... 8=...")
    scales = tuple(sorted(specs))
    nets = {k: load_branch(v) for k, v in specs.items()}
    shapes = {(n.cfg.res_num, n.cfg.num_feat, n.cfg.window_size) for n in nets.values()}
    if len(shapes) != 1:
        raise InputError(f"branches differ in (res_num, num_feat, window): {sorted(shapes)}")
    res_num, num_feat, window = shapes.pop()
    for k, n in nets.items():
        if n.cfg.scale != k:
            raise InputError(f"branch for x{k} is an x{n.cfg.scale} model")
    torch.manual_seed(cfg.seed)
    jcfg = JointSRConfig(scales=scales, res_num=res_num, num_feat=num_feat, window_size=window, block=cfg.block,
                         band=cfg.band, margin=cfg.margin)
    model = JointSR(jcfg)
    if cfg.init:  # warm start: a trained JointSR re-synchronised to these branches
        try:
            model.load_state_dict(init_state_dict(cfg.init))
        except RuntimeError as e:
            raise InputError(f"--init {cfg.init}: not a JointSR of this configuration ({str(e)[:200]})") from None
        model.load_branches(nets, keep_trained=True)
    else:
        model.load_branches(nets)
    model = model.to(device)
    if not cfg.train_branches:
        model.branches.requires_grad_(False)
    # the function-preserving init starts at the stitched per-scale models: Adam's per-weight steps of ~lr would
    # random-walk the Upsamples away from it, so they train at lr * upsample_lr_mult (0 = frozen) and the
    # deblock branch at lr
    if cfg.upsample_lr_mult == 0:
        model.upsamples.requires_grad_(False)
        model.up.requires_grad_(False)
    slow = {id(p) for p in [*model.upsamples.parameters(), *model.up.parameters()]}
    params = [{"params": [p for p in model.parameters() if p.requires_grad and id(p) not in slow]},
              {"params": [p for p in model.parameters() if p.requires_grad and id(p) in slow],
               "lr": cfg.lr * cfg.upsample_lr_mult}]
    params = [g for g in params if g["params"]]
    fwd = torch.compile(model) if cfg.compile else model
    sampler = JointCropSampler(load_images(cfg.data), scales, cfg.block, cfg.grid)
    val_images = load_images(cfg.val) if cfg.val else []
    val_maps = optimal_maps(val_images, scales, cfg.block) if val_images else []
    n_params = count_params(model)
    n_trained = sum(p.numel() for g in params for p in g["params"])
    log(f"jointsr {scales} res_num {jcfg.res_num}: {n_params} params ({n_trained} trained), "
        f"{len(sampler.crop.images)} training images, device {device}")

    def sample(g):
        hr, tiles, index = sampler.batch(cfg.batch, g)
        return hr.to(device), {k: t.to(device) for k, t in tiles.items()}, index

    def loss_fn(batch):
        hr, tiles, index = batch
        sr = fwd(tiles, index, cfg.grid, cfg.grid, n_frames=hr.shape[0])
        return F.l1_loss(sr.float(), hr)

    def meta(it, record):
        return {"arch": "jointsr", "config": jcfg.to_dict(), "iterations": it, "input_range": "0,1",
                "num_params": n_params, "branches": specs, "upsample_lr_mult": cfg.upsample_lr_mult,
                "init": cfg.init, "last": record}

    validate = (lambda: evaluate_jointsr(model, val_images, val_maps, device)) if val_images else None
    return run_training(cfg, model, params, sample, loss_fn, validate, meta, resume, log, device)
