"""``bbmr-eval``: the paper's image experiment on the user's own images.

``bbmr-eval images DIR_OR_FILES... --allocators uniform,paper,optimal --scorer bicubic --upscaler bicubic``
rescales every image with each allocator at the same LR pixel budget (uniform ``--overall``), reconstructs
it and reports PSNR-Y (BT.601, unrounded Y, measured on the original unpadded image, crop 0) and, with
``--niqe``, NIQE (MATLAB niqe.m semantics, Y rounded, crop 0). ``bbmr-eval niqe FILES...`` reports NIQE only.
Exit code 2 with a one-line message on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Callable, Sequence

import numpy as np

from bbmr_stream.allocate import DEFAULT_OVERALL, DEFAULT_SCALES
from bbmr_stream.cli import run_cli
from bbmr_stream.device import pick_device
from bbmr_stream.downscale import MODES
from bbmr_stream.evaluate import SAMPLE_IMAGES, eval_image, parse_scales, sample_image
from bbmr_stream.imageio import list_images, read_image, write_text_atomic
from bbmr_stream.errors import InputError
from bbmr_stream.metrics import niqe
from bbmr_stream.upscale import BORDER_MODES
from models.factory import make_scorer, make_upscaler


def _mean(images: list[dict], key: str, allocators: Sequence[str]) -> dict:
    return {a: float(np.mean([im[key][a] for im in images])) for a in allocators}


def cmd_images(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    allocators = [a.strip() for a in args.allocators.split(",") if a.strip()]
    from bbmr_stream.allocate import ALLOCATORS

    for a in allocators:
        if a not in ALLOCATORS:
            raise InputError(f"unknown allocator {a!r} (choose from {', '.join(ALLOCATORS)})")
    scales = parse_scales(args.scales)
    device = pick_device(args.device)
    inputs: list[tuple[str, Callable[[], np.ndarray]]] = []
    if args.sample:
        inputs += [(f"skimage:{n}", lambda n=n: sample_image(n)) for n in SAMPLE_IMAGES]
    if args.paths or not args.sample:
        inputs += [(p.name, lambda p=p: read_image(p)) for p in list_images(args.paths)]
    scorer = make_scorer(args.scorer, scales, device, args.mode, args.border)
    upscaler = make_upscaler(args.upscaler, scales, device, args.border)
    console = Console(stderr=True, emoji=False, markup=False, highlight=False)
    images = []
    t0 = time.time()
    for name, load in inputs:
        img = load()
        try:
            r = eval_image(img, allocators, scorer, upscaler, args.overall, scales, args.block, args.mode,
                           args.niqe, device)
        except ValueError as e:
            raise InputError(f"{name}: {e}") from None
        images.append({"name": name} | r)
        console.log(f"{name}: " + ", ".join(f"{a} {r['psnr_y'][a]:.2f} dB" for a in allocators))
    out = {"scorer": args.scorer, "upscaler": args.upscaler, "overall": args.overall, "scales": list(scales),
           "block": args.block, "downscale_mode": args.mode, "border": args.border,
           "conventions": {"psnr_y": "BT.601 Y (16+65.481R+128.553G+24.966B, RGB in [0,1]), unrounded, "
                                     "original unpadded image, crop 0, peak 255",
                           "niqe": "MATLAB niqe.m via BasicSR 1.4.2 semantics, Y rounded, crop 0",
                           "resize": "torch bicubic antialias (bbmr_stream.resize)"},
           "images": images,
           "mean": {"psnr_y": _mean(images, "psnr_y", allocators)},
           "seconds": time.time() - t0}
    if args.niqe:
        out["mean"]["niqe"] = _mean(images, "niqe", allocators)
    table = Table(title=f"PSNR-Y (dB), scorer {args.scorer}, upscaler {args.upscaler}, overall x{args.overall}")
    table.add_column("image")
    table.add_column("size")
    for a in allocators:
        table.add_column(a, justify="right")
        if a != "uniform" and "uniform" in allocators:
            table.add_column(f"{a}-uniform", justify="right")
    rows = images + [{"name": "mean", "width": None, "psnr_y": out["mean"]["psnr_y"]}]
    for im in rows:
        cells = [im["name"], f"{im['width']}x{im['height']}" if im["width"] else ""]
        for a in allocators:
            cells.append(f"{im['psnr_y'][a]:.2f}")
            if a != "uniform" and "uniform" in allocators:
                cells.append(f"{im['psnr_y'][a] - im['psnr_y']['uniform']:+.2f}")
        table.add_row(*cells)
    Console(emoji=False).print(table)
    if args.niqe:
        Console(emoji=False).print("mean NIQE: " + ", ".join(f"{a} {v:.4f}" for a, v in out["mean"]["niqe"].items()))
    if args.json:
        write_text_atomic(args.json, json.dumps(out, indent=2))
    return 0


def cmd_niqe(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    res = []
    for p in list_images(args.paths):
        img = read_image(p)
        try:
            v = niqe(img, crop=args.crop)
        except ValueError as e:
            raise InputError(f"{p}: {e}") from None
        res.append({"name": p.name, "niqe": v})
    table = Table(title=f"NIQE (MATLAB niqe.m semantics, Y, crop {args.crop}; lower is better)")
    table.add_column("image")
    table.add_column("NIQE", justify="right")
    for r in res:
        table.add_row(r["name"], f"{r['niqe']:.5f}")
    Console(emoji=False).print(table)
    if args.json:
        write_text_atomic(args.json, json.dumps({"crop": args.crop, "images": res}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bbmr-eval", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    im = sub.add_parser("images", help="rescale images with each allocator and report PSNR-Y (and NIQE)")
    im.add_argument("paths", nargs="*", help="image files or directories")
    im.add_argument("--sample", action="store_true",
                    help=f"also use the sample photos that ship with scikit-image ({', '.join(SAMPLE_IMAGES)})")
    im.add_argument("--allocators", default="uniform,paper,optimal")
    im.add_argument("--scorer", default="bicubic", help="bicubic | light | full")
    im.add_argument("--upscaler", default="bicubic", help="bicubic | omnisr | jointsr")
    im.add_argument("--overall", type=int, default=DEFAULT_OVERALL)
    im.add_argument("--scales", default=",".join(map(str, DEFAULT_SCALES)))
    im.add_argument("--block", type=int, default=128)
    im.add_argument("--mode", choices=MODES, default="frame", help="per-block downscale: whole frame or per block")
    im.add_argument("--border", choices=BORDER_MODES, default="context",
                    help="reconstruct each scale as a whole plane (context) or every tile alone (tile)")
    im.add_argument("--niqe", action="store_true", help="also report NIQE of every reconstruction")
    im.add_argument("--device", default="auto", help="auto | cpu | cuda")
    im.add_argument("--json", help="write the results as JSON here")
    nq = sub.add_parser("niqe", help="NIQE of image files")
    nq.add_argument("paths", nargs="+")
    nq.add_argument("--crop", type=int, default=0, help="pixels cut at every border before NIQE")
    nq.add_argument("--json")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("bbmr-eval", lambda: cmd_images(args) if args.cmd == "images" else cmd_niqe(args))


if __name__ == "__main__":
    sys.exit(main())
