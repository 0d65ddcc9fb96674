"""``bbmr-train``: train (``sr``, ``jointsr``, ``downnet``) and ship (``publish``) the models; the loops are in
:mod:`models.train` (and :mod:`models.train_downnet`), the registry entries in :mod:`models.publish`."""

from __future__ import annotations

import argparse
import json
import sys

from bbmr_stream.cli import add_device, run_cli
from bbmr_stream.errors import InputError, WeightsError
from models.archs import sr_presets
from models.publish import publish
from models.train import TrainConfig, train_jointsr, train_sr


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bbmr-train", description="Train the BBMR SR models on CPU or CUDA.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sr = sub.add_parser("sr", help="train an OmniSR model at one scale")
    d = TrainConfig()
    sr.add_argument("--arch", choices=list(sr_presets()), default=d.arch)
    sr.add_argument("--scale", type=int, choices=(2, 4, 8), default=d.scale)
    sr.add_argument("--data", nargs="+", required=True, help="training image files or directories")
    sr.add_argument("--val", nargs="*", default=[], help="validation images (PSNR-Y, crop = scale)")
    sr.add_argument("--out", required=True, help="checkpoint directory")
    for name in ("iters", "batch", "patch", "decay_every", "seed", "threads", "val_every", "log_every"):
        sr.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(d, name))
    for name in ("lr", "weight_decay", "ckpt_minutes", "max_minutes"):
        sr.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(d, name))
    sr.add_argument("--amp", choices=("auto", "bf16", "fp16", "none"), default=d.amp,
                    help="mixed precision (auto: fp16 on CUDA, bf16 on a CPU with native bf16, else fp32)")
    add_device(sr, d.device)
    sr.add_argument("--channels-last", action="store_true")
    sr.add_argument("--compile", action="store_true", help="torch.compile the model (faster after warm-up)")
    sr.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if present")
    sr.add_argument("--codec-crfs", type=lambda t: [float(v) for v in t.split(",")], default=[],
                    help="codec-aware training: LR through x264 at these CRFs (e.g. 18,23,28,33,38; an I frame at "
                         "CRF+3 stands for the P/B frames); validation at the middle one")
    sr.add_argument("--init", help="warm start from a registry id (e.g. omnisr-light-x4, the shipped weights), a "
                                   "run directory or a .safetensors file (fresh optimizer and schedule)")
    js = sub.add_parser("jointsr", help="train JointSR on top of trained per-scale OmniSR branches")
    js.add_argument("--branches", nargs="+", required=True, metavar="K=CKPT_OR_ID",
                    help="per-scale OmniSR: a bbmr-train sr checkpoint dir or a registry id, e.g. 2=runs/light_x2")
    js.add_argument("--data", nargs="+", required=True)
    js.add_argument("--val", nargs="*", default=[])
    js.add_argument("--out", required=True)
    for name, default in (("iters", 20_000), ("batch", 4), ("grid", 3), ("block", 128), ("band", 4),
                          ("margin", d.margin), ("decay_every", 5_000), ("seed", d.seed), ("threads", 0),
                          ("val_every", 500), ("log_every", 20)):
        js.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)
    for name in ("lr", "weight_decay", "ckpt_minutes", "max_minutes"):
        js.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(d, name))
    js.add_argument("--amp", choices=("auto", "bf16", "fp16", "none"), default=d.amp,
                    help="mixed precision (auto: fp16 on CUDA, bf16 on a CPU with native bf16, else fp32)")
    add_device(js, d.device)
    js.add_argument("--train-branches", action="store_true", help="fine-tune the branches too (slower)")
    js.add_argument("--upsample-lr-mult", type=float, default=d.upsample_lr_mult,
                    help="learning rate of the per-branch and final Upsamples relative to --lr (0 = frozen)")
    js.add_argument("--init", help="warm start from a trained JointSR (registry id jointsr, run directory or "
                                   ".safetensors), re-synchronised to --branches (newer per-scale models)")
    js.add_argument("--compile", action="store_true")
    js.add_argument("--resume", action="store_true")
    dn = sub.add_parser("downnet", help="train a Down-Net (learned downscaler) against a shipped upscaler, frozen")
    dn.add_argument("--scale", type=int, choices=(2, 4, 8), default=4)
    dn.add_argument("--upscaler", help="registry id of the client upscaler (default fastsr-xSCALE)")
    dn.add_argument("--data", nargs="+", required=True)
    dn.add_argument("--val", nargs="*", default=[])
    dn.add_argument("--out", required=True)
    for name, default in (("iters", 20_000), ("batch", 16), ("patch", 48), ("decay_every", 10_000),
                          ("seed", d.seed), ("threads", 0), ("val_every", 500), ("log_every", 50)):
        dn.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)
    for name in ("lr", "weight_decay", "ckpt_minutes", "max_minutes"):
        dn.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(d, name))
    dn.add_argument("--amp", choices=("auto", "bf16", "fp16", "none"), default="none")
    add_device(dn, d.device)
    dn.add_argument("--resume", action="store_true")
    pb = sub.add_parser("publish", help="copy a trained model into models/weights and register it with metrics")
    pb.add_argument("--ckpt", required=True, help="checkpoint directory of `bbmr-train sr` or `bbmr-train jointsr`")
    pb.add_argument("--id", required=True, help="registry id, e.g. omnisr-light-x4")
    pb.add_argument("--val", nargs="+", required=True, metavar="NAME=DIR",
                    help="validation sets for _metrics, e.g. Set5=../shared/data/val/Set5")
    pb.add_argument("--data", nargs="+", required=True, help="the training directories (recorded with licences)")
    cm = sub.add_parser("coded-metrics", help="add PSNR-Y on x264-coded LR to a shipped model's registry entry")
    cm.add_argument("--id", required=True, help="registry id, e.g. omnisr-light-x4")
    cm.add_argument("--val", nargs="+", required=True, metavar="NAME=DIR")
    return ap


def val_sets(items: list[str]) -> dict[str, str]:
    """``--val NAME=DIR ...`` as {name: dir}; anything else is a one-line error."""
    sets = dict(v.split("=", 1) for v in items if "=" in v)
    if len(sets) != len(items):
        raise InputError("--val takes NAME=DIR pairs")
    return sets


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        if args.cmd == "sr":
            fields = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
            train_sr(TrainConfig(**fields), resume=args.resume)
        elif args.cmd == "jointsr":
            fields = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
            train_jointsr(TrainConfig(arch="jointsr", scale=0, **fields), resume=args.resume)
        elif args.cmd == "downnet":
            from models.train_downnet import train_downnet

            fields = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
            train_downnet(TrainConfig(arch="downnet", **fields), args.upscaler or f"fastsr-x{args.scale}",
                          resume=args.resume)
        elif args.cmd == "coded-metrics":
            from models.publish import add_coded_metrics

            sets = val_sets(args.val)
            print(json.dumps(add_coded_metrics(args.id, sets).to_dict()["_metrics"], indent=2))
        elif args.cmd == "publish":
            sets = val_sets(args.val)
            try:  # an sr or a jointsr run: by the architecture its metadata records
                e = publish(args.ckpt, args.id, sets, args.data)
            except WeightsError as err:  # an architecture this package does not know
                raise InputError(str(err)) from None
            print(json.dumps(e.to_dict(), indent=2))
        return 0

    return run_cli("bbmr-train", run)


if __name__ == "__main__":
    sys.exit(main())
